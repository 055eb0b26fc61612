"""Defenses of smashed data in split learning: NoPeek and noise at the cut.

A :class:`SmashedGuard` is what a device does in split training
(:func:`tinylarge.schemes._split_task.split_fit`, the library's one training loop) to make
the activations it sends say less about its inputs
(:mod:`tinylarge.security.split_options` for the names and options):

- ``nopeek``: Vepakomma, Gupta, Dubey and Raskar, "NoPeek: Information leakage reduction
  to share activations in distributed deep learning", ICDMW 2020,
  https://arxiv.org/abs/2008.09161. The device's loss gains ``weight`` x the sample
  distance correlation of the batch's raw inputs and its smashed data
  (:func:`distance_correlation_loss`, the same V-statistic as
  :func:`tinylarge.security.leakage.distance_correlation`, differentiable), so training
  decorrelates them while the task loss keeps them useful. With ``sigma`` it also adds
  the cut noise below: both defenses at once.
- ``cut-noise``: every smashed value the device sends gets independent noise of standard
  deviation ``sigma`` (Gaussian, or Laplace of scale ``sigma / sqrt(2)``), after the
  device part and before compression; the server trains on, and at deployment classifies,
  exactly what it receives. A noise-aware attacker trains its decoder on noisy smashed
  data too (:mod:`tinylarge.security.inversion`).

The device pays for its defense: :meth:`SmashedGuard.work` is the extra element-wise work
of a round's batches (:class:`tinylarge.hardware.cost.Elementwise`), billed to the device
beside its split training. Counts are operation estimates, stated here:

- NoPeek, per batch of ``B`` with ``dx`` input and ``dz`` smashed values per sample:
  ``B^2 dx`` for the inputs' pairwise distances, ``B^2 dz`` for the smashed data's and
  ``2 B^2 dz`` for their gradient, and :data:`NOPEEK_PAIR_OPS` operations per pair for
  the square roots, the double centring, the three products and their gradients:
  ``B^2 (dx + 3 dz + NOPEEK_PAIR_OPS)``.
- cut noise: :data:`NOISE_OPS_PER_VALUE` operations per value sent (a uniform draw, its
  transform through a logarithm and a square root or a cosine, the scale and the add).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from tinylarge.hardware.cost import Elementwise
from tinylarge.security.split_options import CutNoiseOptions, NoPeekOptions, defense_options

#: Operations per pair of samples of a batch besides the distances (see the module doc).
NOPEEK_PAIR_OPS = 20
#: Operations per smashed value to draw and add its noise (see the module doc).
NOISE_OPS_PER_VALUE = 8
#: Added under every square root, so the loss has a gradient where a distance is zero.
_EPS = 1e-12


def _centred_distances(a: torch.Tensor) -> torch.Tensor:
    """Double-centred Euclidean distance matrix of the rows of ``a`` (differentiable)."""
    sq = (a * a).sum(dim=1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * (a @ a.T)).clamp_min(0.0)
    d = torch.sqrt(d2 + _EPS)
    return d - d.mean(dim=0, keepdim=True) - d.mean(dim=1, keepdim=True) + d.mean()


def distance_correlation_loss(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Sample distance correlation of paired rows (the biased V-statistic of Székely et al.
    2007), differentiable in both: 0 for independent samples in the limit, 1 when ``z`` is
    a similarity transform of ``x``. Samples are flattened; at least 2 are needed."""
    a = x.reshape(len(x), -1).to(torch.float64)
    b = z.reshape(len(z), -1).to(torch.float64)
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"distance correlation needs >= 2 paired samples, got {len(a)}, {len(b)}")
    ca, cb = _centred_distances(a), _centred_distances(b)
    xy = (ca * cb).mean()
    xx = (ca * ca).mean()
    yy = (cb * cb).mean()
    return torch.sqrt(xy.clamp_min(0.0) / (torch.sqrt(xx * yy) + _EPS) + _EPS).to(z.dtype)


@dataclass(frozen=True)
class SmashedGuard:
    """A device's defense of its smashed data (see the module doc); picklable, so a split
    training task carries it to any backend."""

    name: Literal["nopeek", "cut-noise"]
    weight: float = 0.0
    sigma: float = 0.0
    distribution: Literal["gaussian", "laplace"] = "gaussian"

    def penalty(self, x: torch.Tensor, smashed: torch.Tensor) -> torch.Tensor | None:
        """The term NoPeek adds to the device's loss for a batch (None for other guards)."""
        if self.weight == 0.0:
            return None
        return self.weight * distance_correlation_loss(x, smashed)

    def perturb(self, h: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """The smashed data ``h`` as sent: with the cut noise drawn from ``gen`` added."""
        if self.sigma == 0.0:
            return h
        if self.distribution == "gaussian":
            noise = torch.randn(h.shape, generator=gen, dtype=h.dtype)
        else:  # Laplace of unit variance by inversion of a uniform draw
            u = torch.rand(h.shape, generator=gen, dtype=h.dtype) - 0.5
            tail = (2.0 * u.abs()).clamp_max(1.0 - 1e-7)  # rand's 0 would give an infinite draw
            noise = -torch.sign(u) * torch.log1p(-tail) / math.sqrt(2.0)
        return h + self.sigma * noise

    def work(
        self, batches: Sequence[int], *, input_elements: int, smashed_elements: int
    ) -> Elementwise:
        """The device's extra work over a round's ``batches`` (their sizes)."""
        ops = 0
        if self.weight:
            per_pair = input_elements + 3 * smashed_elements + NOPEEK_PAIR_OPS
            ops += sum(b * b for b in batches) * per_pair
        if self.sigma:
            ops += sum(batches) * smashed_elements * NOISE_OPS_PER_VALUE
        return Elementwise(ops)


def make_guard(name: str, options: dict[str, object]) -> SmashedGuard:
    """The guard a run's ``defense: {name, options}`` configures (options validated)."""
    parsed = defense_options(name, options)
    if isinstance(parsed, NoPeekOptions):
        return SmashedGuard(
            "nopeek", weight=parsed.weight, sigma=parsed.sigma, distribution=parsed.distribution
        )
    assert isinstance(parsed, CutNoiseOptions)
    return SmashedGuard("cut-noise", sigma=parsed.sigma, distribution=parsed.distribution)
