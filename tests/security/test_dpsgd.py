"""DP-SGD: clipping and noise against a per-example reference, seeds, refusals, costs."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from tinylarge.data.images import load_digits
from tinylarge.errors import TinylargeError
from tinylarge.models.profiler import profile_model
from tinylarge.models.zoo import build_model
from tinylarge.security.dpsgd import (
    CLIP_OPS_PER_PARAM,
    NOISE_OPS_PER_PARAM,
    DpSgdSpec,
    PrivateTraining,
    check_supported,
    dpsgd_backward_factor,
    dpsgd_extra_macs,
    dpsgd_memory,
    make_private,
    per_sample_grad_bytes,
    poisson_sample_rate,
    steps_per_epoch,
)

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")


def mlp(seed: int = 1, hidden: int = 16) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=hidden)


def toy_data(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def one_step(p: PrivateTraining, xb: torch.Tensor, yb: torch.Tensor) -> None:
    p.optimizer.zero_grad()
    nn.functional.cross_entropy(p.model(xb), yb).backward()
    p.optimizer.step()


def clipped_mean_reference(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, clip: float
) -> torch.Tensor:
    """Abadi et al.'s clipped mean gradient written out: one backward per example, clip the
    whole gradient to ``clip`` (Opacus's factor ``C / (norm + 1e-6)``, at most 1), average."""
    total = torch.zeros_like(flat(model))
    for i in range(len(x)):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        g = torch.cat([p.grad.flatten() for p in model.parameters()])  # type: ignore[union-attr]
        total += g * min(1.0, clip / (float(g.norm()) + 1e-6))
    model.zero_grad()
    return total / len(x)


# -- the spec ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sigma", "clip", "field"),
    [(-0.1, 1.0, "noise_multiplier"), (math.nan, 1.0, "noise_multiplier"), (1.0, 0.0, "max_grad")],
)
def test_spec_refuses_bad_values(sigma: float, clip: float, field: str) -> None:
    with pytest.raises(TinylargeError, match=field):
        DpSgdSpec(sigma, clip)


# -- clipping and noise --------------------------------------------------------------------------
def test_clipped_update_matches_the_per_example_reference_and_is_bounded() -> None:
    # float64, so that the update (a difference of weights) keeps its digits
    x, y = toy_data(48)
    x = x.double()
    lr, clip, batch = 0.5, 1e-3, 16
    model, reference_model = mlp().double(), mlp().double()
    p = make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=lr),
        DataLoader(TensorDataset(x, y), batch_size=batch),  # unshuffled: batches known
        DpSgdSpec(0.0, clip, poisson_sampling=False),
        seed=0,
    )
    for step, (xb, yb) in enumerate(p.data_loader):
        before = flat(model)
        expected = clipped_mean_reference(reference_model, xb, yb, clip)
        one_step(p, xb, yb)
        update = flat(model) - before
        assert float(update.norm()) <= lr * clip, step
        torch.testing.assert_close(update, -lr * expected, rtol=1e-9, atol=1e-15)
        with torch.no_grad():  # keep the reference model on the same weights
            for a, b in zip(reference_model.parameters(), model.parameters(), strict=True):
                a.copy_(b)
    assert p.steps == 3
    # the clip bites: the plain (unclipped) mean gradient is far longer than C
    plain = mlp()
    nn.functional.cross_entropy(plain(x[:batch].float()), y[:batch]).backward()
    grad = torch.cat([q.grad.flatten() for q in plain.parameters()])  # type: ignore[union-attr]
    assert float(grad.norm()) > 100 * clip


def test_noise_has_the_documented_scale() -> None:
    """Update = -lr (clipped sum + N(0, (sigma C)^2)) / B: the residual's spread is sigma C / B."""
    x, y = toy_data(32)
    lr, clip, sigma, batch = 1.0, 0.5, 2.0, 32
    model, reference_model = mlp(hidden=64), mlp(hidden=64)
    p = make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=lr),
        DataLoader(TensorDataset(x, y), batch_size=batch),
        DpSgdSpec(sigma, clip, poisson_sampling=False),
        seed=5,
    )
    before = flat(model)
    one_step(p, x, y)
    noise = -(flat(model) - before) / lr - clipped_mean_reference(reference_model, x, y, clip)
    n = noise.numel()  # 4810 draws: the sample std is within 4 / sqrt(2 n) = 4.1% of the truth
    assert float(noise.mean()) == pytest.approx(0.0, abs=4 * sigma * clip / batch / math.sqrt(n))
    assert float(noise.std()) == pytest.approx(sigma * clip / batch, rel=4 / math.sqrt(2 * n))


def train_private(seed: int, spec: DpSgdSpec, epochs: int = 2) -> torch.Tensor:
    x, y = toy_data(96)
    model = mlp()
    p = make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=0.2),
        TensorDataset(x, y),
        spec,
        seed=seed,
        batch_size=16,
    )
    for _ in range(epochs):
        for xb, yb in p.data_loader:
            one_step(p, xb, yb)
    p.close()
    return flat(model)


def test_close_leaves_a_plain_model_that_can_be_made_private_again() -> None:
    model = mlp()
    x, y = toy_data(16)
    for _ in range(2):
        p = make_private(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            TensorDataset(x, y),
            DpSgdSpec(1.0, 1.0),
            seed=0,
            batch_size=8,
        )
        for xb, yb in p.data_loader:
            one_step(p, xb, yb)
        assert p.close() is model
        left = {a for q in model.parameters() for a in vars(q) if "grad" in a or "forward" in a}
        assert not left
        assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())


@pytest.mark.parametrize("poisson", [True, False])
def test_same_seed_same_weights(poisson: bool) -> None:
    spec = DpSgdSpec(1.0, 1.0, poisson_sampling=poisson)
    first, again, other = train_private(0, spec), train_private(0, spec), train_private(1, spec)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)
    # the noise moved the weights: without it the same seed gives other weights
    assert not torch.allclose(first, train_private(0, DpSgdSpec(0.0, 1.0, poisson)))


def test_poisson_sampling_draws_from_the_seed_and_indices_match_the_loader() -> None:
    n, batch = 2000, 50
    rows = TensorDataset(torch.arange(n))

    def private(seed: int) -> PrivateTraining:
        model = mlp()
        return make_private(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            rows,
            DpSgdSpec(1.0, 1.0),
            seed=seed,
            batch_size=batch,
        )

    p = private(3)
    assert p.sample_rate == pytest.approx(batch / n)
    assert p.expected_batch_size == batch
    from_loader = [b[0] for b in p.data_loader]
    from_indices = list(private(3).batch_indices())
    assert len(from_loader) == n // batch
    for a, b in zip(from_loader, from_indices, strict=True):
        assert torch.equal(a, b)
    sizes = np.array([len(b) for b in from_loader])
    assert len(set(sizes.tolist())) > 1  # Poisson, not fixed-size batches
    # mean of 40 binomial(2000, 0.025) draws: within 4 standard errors of q N
    assert sizes.mean() == pytest.approx(batch, abs=4 * math.sqrt(batch * (1 - batch / n) / 40))
    assert [b.tolist() for b in private(4).batch_indices()] != [b.tolist() for b in from_indices]


@pytest.mark.parametrize(("n", "batch", "steps"), [(1000, 32, 31), (9, 3, 3), (40, 64, 1)])
def test_an_explicit_rate_samples_at_it_for_floor_one_over_q_steps(
    n: int, batch: int, steps: int
) -> None:
    """``sample_rate = B / N`` (what a device's local training asks for): an epoch is
    ``floor(N / B)`` steps (at least 1), each example in a batch with probability ``q``."""
    q = poisson_sample_rate(n, batch)
    assert q == min(1.0, batch / n)
    assert steps_per_epoch(q) == steps
    model = mlp()
    p = make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        TensorDataset(torch.arange(n)),
        DpSgdSpec(1.0, 1.0),
        seed=2,
        batch_size=batch,
        sample_rate=q,
    )
    assert (p.sample_rate, p.expected_batch_size, len(p.data_loader)) == (q, min(batch, n), steps)
    epochs = 200 // steps
    drawn = [b for _ in range(epochs) for b in p.batch_indices()]
    assert len(drawn) == epochs * steps
    # each example joins each batch independently: its count over the batches is
    # binomial(batches, q); the mean count within 4 standard errors of batches * q
    counts = np.bincount(torch.cat(drawn).numpy(), minlength=n)
    trials = len(drawn)
    assert counts.mean() == pytest.approx(trials * q, abs=4 * math.sqrt(trials * q * (1 - q) / n))
    if q == 1:
        assert all(len(b) == n for b in drawn)


def test_an_explicit_rate_is_poisson_only() -> None:
    model = mlp()
    with pytest.raises(TinylargeError, match="sample_rate is Poisson sampling's"):
        make_private(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            TensorDataset(*toy_data(8)),
            DpSgdSpec(1.0, 1.0, poisson_sampling=False),
            seed=0,
            batch_size=4,
            sample_rate=0.5,
        )


def test_learns_digits_with_moderate_noise() -> None:
    data = load_digits(seed=0)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = build_model("mlp", input_shape=data.input_shape, num_classes=10, hidden=64)
    train = TensorDataset(torch.from_numpy(data.x_train), torch.from_numpy(data.y_train))
    p = make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=0.5),
        train,
        DpSgdSpec(noise_multiplier=1.0, max_grad_norm=1.0),
        seed=0,
        batch_size=64,
    )
    for _ in range(15):
        for xb, yb in p.data_loader:
            one_step(p, xb, yb)
    model = p.close()
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(data.x_test)).argmax(1).numpy()
    assert float((pred == data.y_test).mean()) > 0.8  # chance: 0.1; about 0.93 measured


# -- refusals ------------------------------------------------------------------------------------
def test_batchnorm_is_refused_in_one_line_and_the_model_is_left_alone() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 10)
    )
    with pytest.raises(TinylargeError) as info:
        check_supported(model)
    message = str(info.value)
    assert "\n" not in message
    assert "1 (BatchNorm2d)" in message
    assert "GroupNorm" in message
    assert "ModuleValidator.fix" in message
    assert isinstance(model[1], nn.BatchNorm2d)
    with pytest.raises(TinylargeError, match="BatchNorm2d"):
        make_private(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            TensorDataset(*toy_data(8)),
            DpSgdSpec(1.0, 1.0),
            seed=0,
            batch_size=4,
        )


def test_supported_models_pass() -> None:
    check_supported(mlp())
    check_supported(build_model("cnn-tiny", input_shape=(1, 8, 8), num_classes=10))
    check_supported(nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4)))


def test_optimizer_over_other_parameters_is_refused() -> None:
    with pytest.raises(TinylargeError, match="model's own parameters"):
        make_private(
            mlp(),
            torch.optim.SGD(mlp().parameters(), lr=0.1),
            TensorDataset(*toy_data(8)),
            DpSgdSpec(1.0, 1.0),
            seed=0,
            batch_size=4,
        )


@pytest.mark.parametrize(
    "call",
    [
        lambda: check_supported(mlp()),
        lambda: make_private(
            (m := mlp()),
            torch.optim.SGD(m.parameters(), lr=0.1),
            TensorDataset(*toy_data(8)),
            DpSgdSpec(1.0, 1.0),
            seed=0,
            batch_size=4,
        ),
    ],
)
def test_missing_extra_names_the_install(
    monkeypatch: pytest.MonkeyPatch, call: Callable[[], object]
) -> None:
    for name in ("opacus", "opacus.validators", "opacus.grad_sample", "opacus.optimizers"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(TinylargeError, match=r"pip install 'tinylarge\[privacy\]'"):
        call()


# -- memory --------------------------------------------------------------------------------------
def test_per_sample_grad_bytes_is_batch_times_params_times_4_and_what_opacus_holds() -> None:
    model, batch = mlp(hidden=32), 24
    params = 64 * 32 + 32 + 32 * 10 + 10
    assert per_sample_grad_bytes(model, batch) == batch * params * 4
    x, y = toy_data(batch)
    p = make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        DataLoader(TensorDataset(x, y), batch_size=batch),
        DpSgdSpec(1.0, 1.0, poisson_sampling=False),
        seed=0,
    )
    nn.functional.cross_entropy(p.model(x), y).backward()
    held = sum(q.grad_sample.nbytes for q in model.parameters())  # type: ignore[attr-defined]
    assert held == per_sample_grad_bytes(model, batch)


def test_memory_breakdown_by_hand() -> None:
    # conv 1->4, k3, on 8x8: 6x6 = 36 positions; unfolded input 1 * 9 * 36 per example
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(144, 10))
    params = 4 * 9 + 4 + 144 * 10 + 10
    mem = dpsgd_memory(model, 8, input_shape=(1, 8, 8))
    assert mem.grad_sample_bytes == 8 * params * 4
    assert mem.norm_bytes == 8 * (2 * 4 + 2) * 4  # 4 parameter tensors
    assert mem.summed_grad_bytes == params * 4
    assert mem.workspace_bytes == max(8 * 9 * 36 * 4, 144 * 10 * 4)
    assert mem.total_bytes == sum(
        (mem.grad_sample_bytes, mem.norm_bytes, mem.summed_grad_bytes, mem.workspace_bytes)
    )
    assert dpsgd_memory(model, 8).workspace_bytes == 144 * 10 * 4  # the noise of the largest


# -- work ----------------------------------------------------------------------------------------
def test_extra_macs_by_hand_for_an_mlp() -> None:
    model = mlp(hidden=32)
    profile = profile_model(model, input_shape=(1, 8, 8))
    params = 64 * 32 + 32 + 32 * 10 + 10
    per_sample_grads = (64 * 32 + 32) + (32 * 10 + 10)  # weight MACs + output elements
    batch = 16
    expected = batch * (per_sample_grads + CLIP_OPS_PER_PARAM * params) + (
        NOISE_OPS_PER_PARAM * params
    )
    assert dpsgd_extra_macs(profile, batch_size=batch) == expected
    forward = 64 * 32 + 32 * 10
    assert dpsgd_backward_factor(profile, batch_size=batch) == pytest.approx(
        2.0 + expected / (batch * forward)
    )


def test_per_sample_gradient_work_matches_torchs_flop_counter() -> None:
    """The matmuls Opacus adds to a step (its per-sample einsums) are the formula's first term."""
    batch = 16
    x, y = toy_data(batch)

    def step_flops(model: nn.Module, opt: torch.optim.Optimizer) -> int:
        with FlopCounterMode(display=False) as counter:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        return int(counter.get_total_flops())

    plain = mlp(hidden=32)
    plain_flops = step_flops(plain, torch.optim.SGD(plain.parameters(), lr=0.1))
    model = mlp(hidden=32)
    p = make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        DataLoader(TensorDataset(x, y), batch_size=batch),
        DpSgdSpec(1.0, 1.0, poisson_sampling=False),
        seed=0,
    )
    dp_flops = step_flops(model, p.optimizer)
    profile = profile_model(mlp(hidden=32), input_shape=(1, 8, 8))
    clip_and_noise = batch * CLIP_OPS_PER_PARAM * profile.params + NOISE_OPS_PER_PARAM * (
        profile.params
    )
    per_sample_term = dpsgd_extra_macs(profile, batch_size=batch) - clip_and_noise
    assert (dp_flops - plain_flops) // 2 == per_sample_term  # a MAC is 2 FLOPs


def test_conv_models_cost_about_one_more_forward() -> None:
    profile = profile_model(
        build_model("cnn-tiny", input_shape=(1, 28, 28), num_classes=10), input_shape=(1, 28, 28)
    )
    factor = dpsgd_backward_factor(profile, batch_size=64)
    assert 3.0 < factor < 3.5
