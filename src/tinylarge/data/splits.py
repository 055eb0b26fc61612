"""Stratified, seeded index selection shared by loaders and subsets (pure functions)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from tinylarge.errors import TinylargeError

IntArray = NDArray[np.int64]


def _allocate(counts: NDArray[np.int64], total: int) -> NDArray[np.int64]:
    """Split ``total`` over classes in proportion to ``counts`` (largest remainder).

    Ties in the remainders go to the lower class index, so the result does not
    depend on any random draw.
    """
    exact = counts * (total / counts.sum())
    quota: IntArray = np.minimum(np.floor(exact).astype(np.int64), counts)
    left = total - int(quota.sum())
    order = np.argsort(-(exact - quota), kind="stable")
    for k in order:
        if left <= 0:
            break
        if quota[k] < counts[k]:
            quota[k] += 1
            left -= 1
    return quota


def stratified_choice(labels: NDArray[np.int64], n: int, rng: np.random.Generator) -> IntArray:
    """Sorted indices of at most ``n`` samples, class proportions kept.

    ``n >= len(labels)`` keeps everything.
    """
    if n < 0:
        raise TinylargeError(f"subset size must be >= 0, got {n}")
    if n >= labels.shape[0]:
        return np.arange(labels.shape[0], dtype=np.int64)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    quota = _allocate(counts.astype(np.int64), n)
    chosen: list[IntArray] = []
    for k in range(classes.shape[0]):
        members = np.flatnonzero(inverse == k)
        chosen.append(rng.permutation(members)[: quota[k]].astype(np.int64))
    return np.sort(np.concatenate(chosen))


def stratified_split(
    labels: NDArray[np.int64], *, test_fraction: float, rng: np.random.Generator
) -> tuple[IntArray, IntArray]:
    """Sorted (train, test) indices; each class gives ``round(test_fraction * count)`` to test."""
    if not 0.0 < test_fraction < 1.0:
        raise TinylargeError(f"test_fraction must be in (0, 1), got {test_fraction}")
    test: list[IntArray] = []
    for value in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == value))
        test.append(members[: round(test_fraction * members.shape[0])].astype(np.int64))
    test_idx = np.sort(np.concatenate(test))
    train_mask = np.ones(labels.shape[0], dtype=bool)
    train_mask[test_idx] = False
    return np.flatnonzero(train_mask).astype(np.int64), test_idx
