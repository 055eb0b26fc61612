"""Exit thresholds: choose them on validation data for a target, adapt them online.

A multi-exit system (a tiny-to-large cascade has two exits, an early-exit
network one per side branch) answers at the first exit whose calibrated
confidence reaches the threshold ``t``; the last exit always answers. One
threshold serves every exit because temperature scaling makes the scores
comparable (:mod:`tinylarge.inference.calibration`). Lower ``t`` answers
earlier: less offloading, less device energy, usually lower accuracy.

:func:`choose_threshold` sweeps ``t`` over the validation confidences and
returns the one meeting a *target*:

- ``"accuracy"``: the least offloading whose accuracy is at least
  ``target_value`` times the last exit's (the large model's) accuracy;
- ``"offload"``: spend an offload budget: the most offloading up to
  ``target_value`` of the samples (then the best accuracy). Offloading the
  least confident requests never lowers the expected accuracy, and a budget
  transfers to a test stream whose accuracy differs from validation's (with
  :func:`adapt_online` holding the fraction);
- ``"energy"``: the best accuracy with at most ``target_value`` device joules
  per inference (each exit's deterministic path energy).

Every target also respects ``max_offload_fraction``. When no threshold meets
the target the closest one is returned with ``met=False``.

:func:`adapt_online` moves a device's threshold after every request to hold
the chosen offload fraction under drift: the Robbins-Monro quantile update
``t <- t + rate * (f* - offloaded)`` (Robbins and Monro, Ann. Math. Statist.
1951, https://doi.org/10.1214/aoms/1177729586), which a device can run
without labels. Pure numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from tinylarge.errors import TinylargeError

Target = Literal["accuracy", "offload", "energy"]
TARGETS: tuple[Target, ...] = ("accuracy", "offload", "energy")

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def exit_indices(conf: NDArray[np.floating], threshold: float) -> IntArray:
    """First exit ``e < E - 1`` with ``conf[:, e] >= threshold``, else ``E - 1``.

    >>> exit_indices(np.array([[0.9, 1.0], [0.2, 1.0]]), 0.5).tolist()
    [0, 1]
    """
    c = np.asarray(conf)
    num_exits = c.shape[1]
    passed = np.concatenate([c[:, :-1] >= threshold, np.ones((c.shape[0], 1), dtype=bool)], axis=1)
    out: IntArray = np.minimum(passed.argmax(axis=1), num_exits - 1).astype(np.int64)
    return out


@dataclass(frozen=True)
class ThresholdChoice:
    """A threshold and what it gives on the validation set."""

    threshold: float
    accuracy: float
    offload_fraction: float
    device_energy_j: float
    reference_accuracy: float
    target: str
    target_value: float
    met: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def candidate_thresholds(conf: NDArray[np.floating], *, max_candidates: int = 1024) -> FloatArray:
    """Thresholds worth trying: the exits' confidences (quantiles of them if many), and +inf."""
    values = np.unique(np.asarray(conf, dtype=np.float64)[:, :-1])
    if values.shape[0] > max_candidates:
        values = np.unique(np.quantile(values, np.linspace(0.0, 1.0, max_candidates)))
    out: FloatArray = np.concatenate([values, [math.inf]])
    return out


def sweep(
    *,
    conf: NDArray[np.floating],
    correct: NDArray[np.bool_],
    first_offload_exit: int,
    energy_per_exit_j: Sequence[float],
    thresholds: FloatArray,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(accuracy, offload fraction, mean device joules) for each threshold."""
    energy = np.asarray(energy_per_exit_j, dtype=np.float64)
    acc = np.empty(len(thresholds))
    off = np.empty(len(thresholds))
    joules = np.empty(len(thresholds))
    rows = np.arange(conf.shape[0])
    for i, t in enumerate(thresholds):
        ex = exit_indices(conf, float(t))
        acc[i] = correct[rows, ex].mean()
        off[i] = (ex >= first_offload_exit).mean()
        joules[i] = energy[ex].mean()
    return acc, off, joules


def choose_threshold(
    *,
    conf: NDArray[np.floating],
    correct: NDArray[np.bool_],
    first_offload_exit: int,
    energy_per_exit_j: Sequence[float],
    target: str,
    target_value: float,
    max_offload_fraction: float = 1.0,
) -> ThresholdChoice:
    """The validation-set threshold for ``target`` (see the module docstring).

    Args:
        conf: ``(n, E)`` calibrated confidences of every exit.
        correct: ``(n, E)`` whether each exit's prediction is right.
        first_offload_exit: exits from this index on are answered off the device.
        energy_per_exit_j: device joules of a sample answered at each exit.
        target: ``"accuracy"``, ``"offload"`` or ``"energy"``.
        target_value: accuracy ratio to the last exit, offload fraction, or joules.
        max_offload_fraction: cap on the share of samples leaving the device.
    """
    if target not in TARGETS:
        raise TinylargeError(f"unknown target {target!r}; known: {', '.join(TARGETS)}")
    if conf.ndim != 2 or conf.shape != correct.shape or conf.shape[0] == 0:
        raise ValueError("conf and correct must be equal, non-empty (n, E) arrays")
    thresholds = candidate_thresholds(conf)
    acc, off, joules = sweep(
        conf=conf,
        correct=correct,
        first_offload_exit=first_offload_exit,
        energy_per_exit_j=energy_per_exit_j,
        thresholds=thresholds,
    )
    reference = float(correct[:, -1].mean())
    capped = off <= max_offload_fraction + 1e-12
    if target == "accuracy":
        ok = capped & (acc >= target_value * reference - 1e-12)
        # least offloading, then least energy, then the lowest threshold
        rank = np.lexsort((thresholds, joules, off)) if ok.any() else np.lexsort((off, -acc))
    elif target == "offload":
        ok = capped & (off <= target_value + 1e-12)
        rank = np.lexsort((thresholds, -acc, -off)) if ok.any() else np.lexsort((-acc, off))
    else:
        ok = capped & (joules <= target_value * (1 + 1e-12))
        rank = np.lexsort((thresholds, joules, -acc)) if ok.any() else np.lexsort((-acc, joules))
    pool = ok if ok.any() else (capped if capped.any() else np.ones_like(ok))
    best = int(next(i for i in rank if pool[i]))
    return ThresholdChoice(
        threshold=float(thresholds[best]),
        accuracy=float(acc[best]),
        offload_fraction=float(off[best]),
        device_energy_j=float(joules[best]),
        reference_accuracy=reference,
        target=target,
        target_value=float(target_value),
        met=bool(ok.any()),
    )


def adapt_online(
    conf: NDArray[np.floating],
    *,
    threshold: float,
    target_offload_fraction: float,
    rate: float,
    first_offload_exit: int,
) -> tuple[IntArray, float]:
    """Exits of a stream of requests under the online threshold update; and the final threshold.

    Request ``k`` uses the current ``t``, then ``t += rate * (f* - offloaded_k)``:
    too much offloading lowers the threshold (answer more on the device).
    """
    c = np.asarray(conf, dtype=np.float64)
    exits = np.empty(c.shape[0], dtype=np.int64)
    t = threshold if math.isfinite(threshold) else 1.0
    for k in range(c.shape[0]):
        e = int(exit_indices(c[k : k + 1], t)[0])
        exits[k] = e
        t += rate * (target_offload_fraction - float(e >= first_offload_exit))
    return exits, t
