"""Temperature scaling and confidence scores for offloading decisions.

A cascade or an early exit decides from the tiny model's confidence whether to
answer or to pass the sample on. Raw softmax scores of a trained network are
over-confident; temperature scaling (Guo et al., "On Calibration of Modern
Neural Networks", ICML 2017, https://arxiv.org/abs/1706.04599) divides the
logits by one scalar ``T`` fitted on held-out data by minimising the negative
log-likelihood. It keeps every prediction and makes the scores comparable
across models and exits, so one threshold means the same thing everywhere.

Confidence scores (:data:`CONFIDENCES`, all in [0, 1], higher = surer):

- ``max-softmax``: the largest class probability;
- ``entropy``: ``1 - H(p) / log K``, the normalised entropy's complement
  (BranchyNet's exit criterion, Teerapittayanon et al., ICPR 2016,
  https://arxiv.org/abs/1709.01686).

Pure numpy/scipy functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize_scalar

from tinylarge.registry import Registry

FloatArray = NDArray[np.float64]

#: Search range of the temperature.
MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 20.0


def log_softmax(logits: NDArray[np.floating], temperature: float = 1.0) -> FloatArray:
    """Row-wise log-softmax of ``logits / temperature`` (float64, numerically stable)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    out: FloatArray = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return out


def softmax(logits: NDArray[np.floating], temperature: float = 1.0) -> FloatArray:
    """Row-wise softmax of ``logits / temperature``.

    >>> softmax(np.array([[0.0, 0.0]])).tolist()
    [[0.5, 0.5]]
    """
    out: FloatArray = np.exp(log_softmax(logits, temperature))
    return out


def nll(logits: NDArray[np.floating], labels: NDArray[np.integer], temperature: float) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / T)``."""
    lp = log_softmax(logits, temperature)
    return float(-lp[np.arange(lp.shape[0]), labels].mean())


def fit_temperature(logits: NDArray[np.floating], labels: NDArray[np.integer]) -> float:
    """The temperature minimising the NLL of ``labels`` (bounded scalar search over log T).

    Returns 1.0 for an empty set.
    """
    if len(labels) == 0:
        return 1.0
    res = minimize_scalar(
        lambda log_t: nll(logits, labels, math.exp(log_t)),
        bounds=(math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(math.exp(float(res.x)))


ConfidenceFn = Callable[[FloatArray], FloatArray]
CONFIDENCES: Registry[ConfidenceFn] = Registry("confidence score")


@CONFIDENCES.register("max-softmax")
def max_softmax(probs: FloatArray) -> FloatArray:
    """The largest class probability of each row."""
    out: FloatArray = probs.max(axis=-1)
    return out


@CONFIDENCES.register("entropy")
def entropy_confidence(probs: FloatArray) -> FloatArray:
    """``1 - H(p) / log K``: 1 for a one-hot row, 0 for a uniform one."""
    k = probs.shape[-1]
    if k < 2:
        return np.ones(probs.shape[:-1])
    h = -(probs * np.log(np.clip(probs, 1e-300, None))).sum(axis=-1)
    out: FloatArray = 1.0 - h / math.log(k)
    return out


def confidence(
    logits: NDArray[np.floating], *, temperature: float = 1.0, kind: str = "max-softmax"
) -> FloatArray:
    """Confidence of each row of ``logits`` after temperature scaling."""
    return CONFIDENCES[kind](softmax(logits, temperature))


def expected_calibration_error(
    probs: FloatArray, labels: NDArray[np.integer], *, bins: int = 15
) -> float:
    """ECE: mean |accuracy - confidence| over equal-width confidence bins, weighted by count."""
    conf = probs.max(axis=-1)
    correct = probs.argmax(axis=-1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.sum() * abs(float(correct[members].mean() - conf[members].mean()))
    return total / max(len(labels), 1)
