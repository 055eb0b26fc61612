"""Model inversion of smashed data: a decoder trained by the server maps activations back to inputs.

He, Zhang and Lee, "Model inversion attacks against collaborative inference" (ACSAC 2019,
https://doi.org/10.1145/3359789.3359824), query-free (learning-based) attack: the server
holds auxiliary inputs from the victim's distribution and their smashed data (it ran them
through a copy of the client-side part, or received them), and trains an inverse network
on those pairs with a mean-squared-error loss. At attack time it decodes the victim's
smashed data. A reconstruction is scored by SSIM and PSNR against the victim's true
inputs, beside the same scores of an untrained decoder of the same shape (the baseline an
attack must beat to have learnt anything) and of the class-prior guess (the mean
auxiliary input of the victim's class: what an attacker reaches from the class alone,
:func:`class_prior`).

The metrics are pure numpy/scipy functions; :func:`train_decoder` runs the library's one
training loop (:func:`tinylarge.sim.training.run_steps`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from torch import nn

from tinylarge.errors import TinylargeError
from tinylarge.sim.training import TrainSettings, make_optimizer, run_steps, seeded

#: SSIM constants of Wang et al. (2004): Gaussian window of standard deviation 1.5 pixels,
#: truncated at 3.5 sigma (an 11 x 11 window), K1 = 0.01, K2 = 0.03.
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _paired(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise TinylargeError(f"images to compare differ in shape: {x.shape} and {y.shape}")
    if x.ndim not in (3, 4):
        raise TinylargeError(f"images must be a batch (N, C, H, W) or (N, H, W), got {x.shape}")
    return x, y


def ssim(a: np.ndarray, b: np.ndarray, *, data_range: float) -> float:
    """Mean structural similarity of two batches of images, in [-1, 1] (1 when equal).

    Wang, Bovik, Sheikh and Simoncelli, "Image quality assessment: from error visibility to
    structural similarity", IEEE TIP 13(4), 2004, https://doi.org/10.1109/TIP.2003.819861:
    local means, variances and covariance under a Gaussian window (:data:`SSIM_SIGMA`,
    11 x 11), ``C1 = (K1 L)^2`` and ``C2 = (K2 L)^2`` for the data range ``L``, population
    (not sample) moments. Each channel of each image is filtered on its own, borders
    reflected (``scipy.ndimage`` mode ``"reflect"``, numpy's ``"symmetric"``), and the SSIM
    map is averaged over every pixel, channel and image. Unlike scikit-image no border is
    cropped, so images smaller than the window (8 x 8 digits) are allowed.

    Args:
        a, b: batches of the same shape, ``(N, C, H, W)`` or ``(N, H, W)``.
        data_range: ``L``, max minus min of the pixel scale (1.0 for [0, 1] images).

    >>> round(ssim(np.full((1, 4, 4), 0.5), np.full((1, 4, 4), 0.25), data_range=1.0), 6)
    0.800064
    """
    x, y = _paired(a, b)
    if data_range <= 0:
        raise TinylargeError(f"data_range must be positive, got {data_range}")
    sigma = [0.0] * (x.ndim - 2) + [SSIM_SIGMA, SSIM_SIGMA]

    def blur(v: np.ndarray) -> np.ndarray:
        out: np.ndarray = gaussian_filter(v, sigma=sigma, mode="reflect", truncate=SSIM_TRUNCATE)
        return out

    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x * mu_x
    var_y = blur(y * y) - mu_y * mu_y
    cov = blur(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return float((num / den).mean())


def psnr(a: np.ndarray, b: np.ndarray, *, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(L^2 / MSE)``, the MSE over the whole batch
    (scikit-image's convention); ``inf`` for identical batches.

    >>> round(psnr(np.zeros((1, 2, 2)), np.full((1, 2, 2), 0.1), data_range=1.0), 9)
    20.0
    """
    x, y = _paired(a, b)
    if data_range <= 0:
        raise TinylargeError(f"data_range must be positive, got {data_range}")
    mse = float(np.mean((x - y) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def class_prior(
    x_aux: np.ndarray,
    y_aux: np.ndarray,
    x_victim: np.ndarray,
    y_victim: np.ndarray,
    *,
    data_range: float,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[float, float]:
    """SSIM and PSNR of the class-prior reconstruction: each victim decoded as the mean of
    the auxiliary inputs of its class (on the scores' scale, after ``transform``).

    That is the best guess, in squared error, of an attacker who learns nothing from the
    smashed data but the victim's class, which a split model must carry for the server to
    classify at all (and which the server's own prediction gives it). A defense that keeps
    accuracy cannot push an attacker below this reference; the untrained decoder's
    baseline sits below it. A class without auxiliary inputs falls back to the mean of
    them all.

    >>> aux = np.array([[[0.0, 0.0]], [[1.0, 1.0]], [[1.0, 0.0]]])
    >>> _, db = class_prior(aux, np.array([0, 1, 1]), aux[:2], np.array([0, 1]), data_range=1)
    >>> round(db, 6)  # class 1 guessed as (1, 0.5) for (1, 1): MSE 0.25 / 4
    12.0412
    """
    xa = np.asarray(x_aux, dtype=np.float64)
    if transform is not None:
        xa = np.asarray(transform(xa), dtype=np.float64)
    truth = np.asarray(x_victim, dtype=np.float64)
    if transform is not None:
        truth = np.asarray(transform(truth), dtype=np.float64)
    ya, yv = np.asarray(y_aux), np.asarray(y_victim)
    if len(xa) == 0 or len(xa) != len(ya) or len(truth) != len(yv):
        raise TinylargeError(
            f"the class prior needs labelled inputs: {len(xa)} auxiliary inputs with "
            f"{len(ya)} labels, {len(truth)} victims with {len(yv)} labels"
        )
    overall = xa.mean(axis=0)
    means = {c: xa[ya == c].mean(axis=0) for c in np.unique(ya)}
    guess = np.stack([means.get(c, overall) for c in yv.tolist()])
    return ssim(guess, truth, data_range=data_range), psnr(guess, truth, data_range=data_range)


@dataclass(frozen=True)
class InversionResult:
    """Scores of the victim's reconstructions (SSIM in [-1, 1], PSNR in dB), and the same
    scores of an untrained decoder of the same shape (the random-decoder baseline)."""

    ssim: float
    psnr: float
    baseline_ssim: float
    baseline_psnr: float


def _decoder(smashed: tuple[int, ...], target: tuple[int, ...], *, width: int) -> nn.Module:
    """An inverse network from one sample's smashed shape to its input shape.

    Image to feature map, ``(C, H, W)`` to ``(C', H', W')``: He et al.'s transposed
    convolutions, one stride-2 layer per halving of the side, resized to the exact input
    size at the end when the halvings do not match it. Anything else: a two-layer MLP.
    """
    if len(target) == 3 and len(smashed) == 3:
        ratio = max(target[1] / smashed[1], target[2] / smashed[2])
        ups = max(0, math.ceil(math.log2(ratio) - 1e-9))
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(smashed[0], width, 3, padding=1),
            nn.ReLU(),
        ]
        for _ in range(ups):
            layers += [nn.ConvTranspose2d(width, width, 4, stride=2, padding=1), nn.ReLU()]
        layers.append(nn.ConvTranspose2d(width, target[0], 3, padding=1))
        side = (smashed[1] * 2**ups, smashed[2] * 2**ups)
        if side != target[1:]:
            layers.append(nn.Upsample(size=target[1:], mode="bilinear", align_corners=False))
        return nn.Sequential(*layers)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(smashed), 8 * width),
        nn.ReLU(),
        nn.Linear(8 * width, math.prod(target)),
        nn.Unflatten(1, target),
    )


@torch.no_grad()
def _smash(client_part: nn.Module, x: np.ndarray) -> torch.Tensor:
    """The client part's output on ``x`` in eval mode (its mode restored afterwards)."""
    was_training = client_part.training
    client_part.eval()
    try:
        out: torch.Tensor = client_part(torch.as_tensor(np.asarray(x, dtype=np.float32)))
        return out
    finally:
        client_part.train(was_training)


def train_decoder(
    client_part: nn.Module,
    x_aux: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    width: int = 32,
) -> nn.Module:
    """The server's inverse network, trained with Adam on the MSE between ``x_aux`` and its
    decoding from ``client_part(x_aux)`` (the client part is not changed).

    Args:
        client_part: the device side up to the cut (a copy the server holds).
        x_aux: the server's auxiliary inputs, ``(N, ...)`` as the client part takes them.
        epochs, batch_size, lr: Adam training of the decoder.
        seed: seeds the decoder's initialisation and the shuffling; same seed, same decoder.
        width: channels (convolutional decoder) or an eighth of the hidden units (MLP).
    """
    x = torch.as_tensor(np.asarray(x_aux, dtype=np.float32))
    if len(x) == 0:
        raise TinylargeError("the inversion attack needs auxiliary inputs, got none")
    z = _smash(client_part, x_aux)
    gen = seeded(seed)
    decoder = _decoder(tuple(z.shape[1:]), tuple(x.shape[1:]), width=width)
    settings = TrainSettings(epochs=epochs, batch_size=batch_size, lr=lr, optimizer="adam")

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(decoder(z[idx]), x[idx])

    decoder.train()
    run_steps(loss_of, make_optimizer(decoder, settings), n=len(x), settings=settings, gen=gen)
    decoder.eval()
    return decoder


def _untrained_like(decoder: nn.Module, *, seed: int) -> nn.Module:
    """A copy of ``decoder`` with freshly initialised weights (torch's global RNG untouched)."""
    fresh = copy.deepcopy(decoder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in fresh.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    return fresh


@torch.no_grad()
def invert(
    client_part: nn.Module,
    decoder: nn.Module,
    x_victim: np.ndarray,
    *,
    data_range: float,
    baseline_seed: int = 0,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> InversionResult:
    """Decode the victim's smashed data ``client_part(x_victim)`` and score the
    reconstructions against ``x_victim``, beside an untrained copy of ``decoder``
    (initialised from ``baseline_seed``). ``transform`` maps both to the scale the scores
    read (e.g. standardised model inputs back to pixels in [0, 1], clipped: the attacker
    knows the pixel range); ``data_range`` is that scale's."""
    z = _smash(client_part, x_victim)
    truth = np.asarray(x_victim, dtype=np.float64)
    if transform is not None:
        truth = np.asarray(transform(truth), dtype=np.float64)

    def scores(dec: nn.Module) -> tuple[float, float]:
        was_training = dec.training
        dec.eval()
        try:
            recon = dec(z).double().numpy().reshape(np.shape(x_victim))
        finally:
            dec.train(was_training)
        if transform is not None:
            recon = np.asarray(transform(recon), dtype=np.float64)
        return ssim(recon, truth, data_range=data_range), psnr(recon, truth, data_range=data_range)

    s, p = scores(decoder)
    bs, bp = scores(_untrained_like(decoder, seed=baseline_seed))
    return InversionResult(ssim=s, psnr=p, baseline_ssim=bs, baseline_psnr=bp)
