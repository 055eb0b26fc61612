"""How much smashed data reveals about the raw input: distance correlation.

Split learning sends the activations at the cut ("smashed data") to a server.
Vepakomma et al. (NoPeek, https://arxiv.org/abs/2008.09161) measure what they
leak by the distance correlation between the raw inputs ``X`` and the smashed
data ``Z`` of the same samples (Székely, Rizzo and Bakirov, "Measuring and
testing dependence by correlation of distances", Ann. Statist. 35(6), 2007,
https://arxiv.org/abs/0803.4101): 0 when ``Z`` is independent of ``X``, 1 when
``Z`` is a similarity transform of ``X`` (a cut before any layer). Lower is
more private; it says nothing about what a determined inversion attack can
recover, only how much of the inputs' geometry survives.

All functions are pure; tensors are flattened to one row per sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.spatial.distance import cdist
from torch import nn

from tinylarge.errors import TinylargeError


def _centered_distances(a: np.ndarray) -> np.ndarray:
    """Double-centred Euclidean distance matrix of the rows of ``a``."""
    # Direct differences: the |a|^2 + |b|^2 - 2ab expansion loses digits for close points.
    d = cdist(a, a)
    centred: np.ndarray = d - d.mean(axis=0, keepdims=True) - d.mean(axis=1, keepdims=True)
    centred += d.mean()
    return centred


def distance_correlation(x: np.ndarray, z: np.ndarray) -> float:
    """Sample distance correlation (the biased V-statistic) of paired samples, in [0, 1].

    Args:
        x: ``n`` samples of any shape (flattened per sample).
        z: the same ``n`` samples' other representation.

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(200, 5))
    >>> round(distance_correlation(x, 3.0 * x + 1.0), 6)
    1.0
    >>> round(distance_correlation(x, x[:, :1]), 2)  # keeps one coordinate of five
    0.61
    >>> round(distance_correlation(x, rng.normal(size=(200, 5))), 2)  # independent: bias only
    0.28

    The V-statistic is biased upward on finite samples (0.28 above for
    independent data), so compare cuts on the same samples.
    """
    a = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    b = np.asarray(z, dtype=np.float64).reshape(len(z), -1)
    if len(a) != len(b):
        raise TinylargeError(
            f"distance correlation needs paired samples, got {len(a)} and {len(b)}"
        )
    if len(a) < 2:
        raise TinylargeError("distance correlation needs at least 2 samples")
    ca, cb = _centered_distances(a), _centered_distances(b)
    dcov2_xy = float((ca * cb).mean())
    dcov2_xx = float((ca * ca).mean())
    dcov2_yy = float((cb * cb).mean())
    denom = np.sqrt(dcov2_xx * dcov2_yy)
    if denom <= 0.0:
        return 0.0
    return float(np.sqrt(max(dcov2_xy, 0.0) / denom))


@torch.no_grad()
def leakage_by_cut(model: nn.Module, x: np.ndarray, cuts: Sequence[int]) -> dict[int, float]:
    """Distance correlation between ``x`` and the smashed data at each cut of a chain model.

    The model runs in eval mode on ``x`` (a batch); ``cuts`` index its children
    (a cut ``k`` is the output of child ``k - 1``).
    """
    was_training = model.training
    model.eval()
    try:
        wanted = set(cuts)
        out: dict[int, float] = {}
        h = torch.from_numpy(np.ascontiguousarray(x))
        for k, child in enumerate(model.children(), start=1):
            h = child(h)
            if k in wanted:
                out[k] = distance_correlation(x, h.numpy())
        return {k: out[k] for k in cuts}
    finally:
        model.train(was_training)
