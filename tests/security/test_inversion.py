"""Model inversion of smashed data: SSIM against Wang et al.'s definition written out with loops
and against hand-worked values, PSNR by hand, and the attack on held-out digits against the
random-decoder baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_digits
from torch import nn

from tinylarge.errors import TinylargeError
from tinylarge.security.inversion import class_prior, invert, psnr, ssim, train_decoder


def slow_ssim(a: np.ndarray, b: np.ndarray, *, data_range: float) -> float:
    """Wang et al. (2004), Eq. (13)-(15) with an 11 x 11 Gaussian window of sigma 1.5, per
    pixel of each (H, W) image, borders mirrored (edge pixel repeated), then averaged."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    r = 5
    offsets = range(-r, r + 1)
    w = np.array([[math.exp(-(u * u + v * v) / (2 * 1.5**2)) for v in offsets] for u in offsets])
    w /= w.sum()
    maps = []
    for x, y in zip(a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:]), strict=True):
        px, py = np.pad(x, r, mode="symmetric"), np.pad(y, r, mode="symmetric")
        for i in range(x.shape[0]):
            for j in range(x.shape[1]):
                wx, wy = (
                    px[i : i + 2 * r + 1, j : j + 2 * r + 1],
                    py[i : i + 2 * r + 1, j : j + 2 * r + 1],
                )
                mx, my = (w * wx).sum(), (w * wy).sum()
                vx = (w * (wx - mx) ** 2).sum()
                vy = (w * (wy - my) ** 2).sum()
                cxy = (w * (wx - mx) * (wy - my)).sum()
                maps.append(
                    (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
                )
    return float(np.mean(maps))


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 3),
    channels=st.integers(1, 2),
    side=st.integers(6, 12),
    seed=st.integers(0, 2**31 - 1),
)
def test_ssim_matches_definition(n: int, channels: int, side: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.uniform(size=(n, channels, side, side))
    b = np.clip(a + rng.normal(scale=0.2, size=a.shape), 0, 1)
    assert ssim(a, b, data_range=1.0) == pytest.approx(slow_ssim(a, b, data_range=1.0), abs=1e-9)


def test_ssim_hand_values() -> None:
    # Constant images: no variance, so SSIM is the luminance term (2ab + C1) / (a^2 + b^2 + C1)
    # with C1 = (0.01 * 1)^2: (0.25 + 1e-4) / (0.3125 + 1e-4) = 0.2501 / 0.3126.
    a, b = np.full((2, 8, 8), 0.5), np.full((2, 8, 8), 0.25)
    assert ssim(a, b, data_range=1.0) == pytest.approx(0.2501 / 0.3126, abs=1e-12)
    # Same on a 0..255 scale: C1 = 2.55^2 = 6.5025; 2 * 200 * 100 = 40000, 200^2 + 100^2 = 50000.
    a, b = np.full((1, 1, 9, 9), 200.0), np.full((1, 1, 9, 9), 100.0)
    assert ssim(a, b, data_range=255.0) == pytest.approx(40006.5025 / 50006.5025, abs=1e-12)


def test_ssim_identity_symmetry_and_layouts() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.uniform(size=(4, 1, 8, 8)), rng.uniform(size=(4, 1, 8, 8))
    assert ssim(a, a, data_range=1.0) == pytest.approx(1.0, abs=1e-12)
    assert ssim(a, b, data_range=1.0) == pytest.approx(ssim(b, a, data_range=1.0), abs=1e-12)
    assert ssim(a[:, 0], b[:, 0], data_range=1.0) == pytest.approx(
        ssim(a, b, data_range=1.0), abs=1e-12
    )
    assert ssim(a, b, data_range=1.0) < 0.5


def test_psnr_hand_values() -> None:
    a = np.zeros((2, 1, 4, 4))
    assert psnr(a, a, data_range=1.0) == math.inf
    assert psnr(a, a + 0.1, data_range=1.0) == pytest.approx(20.0, abs=1e-9)  # 10 log10(1/0.01)
    # 8-bit scale, off by one everywhere: 20 log10(255) = 48.1308 dB
    assert psnr(a, a + 1.0, data_range=255.0) == pytest.approx(48.130803608679, abs=1e-9)
    # MSE over the whole batch: half the pixels off by 0.2 -> MSE 0.02 -> 16.9897 dB
    b = a.copy()
    b[0] = 0.2
    assert psnr(a, b, data_range=1.0) == pytest.approx(10 * math.log10(50), abs=1e-9)


@pytest.mark.parametrize("fn", [ssim, psnr])
def test_metrics_refuse_bad_input(fn: object) -> None:
    assert callable(fn)
    with pytest.raises(TinylargeError, match="differ in shape"):
        fn(np.zeros((1, 8, 8)), np.zeros((1, 8, 7)), data_range=1.0)
    with pytest.raises(TinylargeError, match="batch"):
        fn(np.zeros((8, 8)), np.zeros((8, 8)), data_range=1.0)
    with pytest.raises(TinylargeError, match="data_range"):
        fn(np.zeros((1, 8, 8)), np.zeros((1, 8, 8)), data_range=0.0)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's 8 x 8 digits in [0, 1] as (N, 1, 8, 8): the server's auxiliary set and the
    victim's held-out images."""
    x = (load_digits().images / 16.0).astype(np.float32)[:, None]
    return x[:1200], x[1200:]


def client(*layers: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), *layers)


def test_inversion_beats_random_decoder_at_a_shallow_cut(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    aux, victim = digits
    part = client()
    before = [p.detach().clone() for p in part.parameters()]
    decoder = train_decoder(part, aux, epochs=10, batch_size=64, lr=3e-3, seed=0)
    result = invert(part, decoder, victim, data_range=1.0)
    # measured: SSIM 0.989 against 0.024, PSNR 27.4 dB against 5.4 dB
    assert result.ssim > result.baseline_ssim + 0.3
    assert result.ssim > 0.9
    assert result.psnr > result.baseline_psnr + 10.0
    assert all(torch.equal(p, q) for p, q in zip(before, part.parameters(), strict=True))
    assert part.training  # the client part's mode is left as it was


@pytest.mark.parametrize("tail", [[nn.MaxPool2d(2)], [nn.MaxPool2d(2), nn.Flatten()]])
def test_inversion_through_pooling_and_flat_smashed_data(
    digits: tuple[np.ndarray, np.ndarray], tail: list[nn.Module]
) -> None:
    aux, victim = digits
    part = client(*tail)
    decoder = train_decoder(part, aux, epochs=5, batch_size=64, lr=3e-3, seed=0)
    result = invert(part, decoder, victim, data_range=1.0)
    assert result.ssim > result.baseline_ssim + 0.3
    assert result.psnr > result.baseline_psnr


def test_decoder_is_deterministic_in_its_seed(digits: tuple[np.ndarray, np.ndarray]) -> None:
    aux, _ = digits
    part = client()

    def weights(seed: int) -> list[torch.Tensor]:
        dec = train_decoder(part, aux[:256], epochs=2, batch_size=64, lr=3e-3, seed=seed)
        return [p.detach() for p in dec.parameters()]

    first, again, other = weights(1), weights(1), weights(2)
    assert all(torch.equal(p, q) for p, q in zip(first, again, strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(first, other, strict=True))


def test_no_auxiliary_data_is_refused() -> None:
    with pytest.raises(TinylargeError, match="auxiliary"):
        train_decoder(client(), np.zeros((0, 1, 8, 8)), epochs=1, batch_size=8, lr=1e-3, seed=0)


def test_class_prior_guesses_the_mean_auxiliary_image_of_the_victims_class() -> None:
    one, two = np.zeros((1, 4, 4)), np.zeros((1, 4, 4))
    one[0, 1:3, 1:3] = 1.0
    two[0, 0, :] = 1.0
    aux = np.stack([one, one, two])
    # each class has one distinct image: the victims drawn from them are guessed exactly
    s, db = class_prior(aux, np.array([3, 3, 7]), aux[[2, 0]], np.array([7, 3]), data_range=1.0)
    assert (s, db) == (pytest.approx(1.0), math.inf)
    # a class the attacker holds no image of: the mean of all of them
    s, db = class_prior(aux, np.array([3, 3, 7]), two[None], np.array([5]), data_range=1.0)
    mean = (2 * one + two) / 3
    assert s == pytest.approx(ssim(mean[None], two[None], data_range=1.0))
    assert db == pytest.approx(psnr(mean[None], two[None], data_range=1.0))
    # two images of one class: their average, on the transform's scale
    s, _ = class_prior(
        aux, np.array([3, 7, 7]), (one + two)[None] / 2, np.array([7]), data_range=1.0,
        transform=lambda v: v / 2,
    )  # fmt: skip
    assert s == pytest.approx(1.0)
    with pytest.raises(TinylargeError, match="labelled"):
        class_prior(aux, np.array([3, 3]), aux, np.array([3, 3, 7]), data_range=1.0)
