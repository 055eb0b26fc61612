"""The input contract of a dataset: how raw inputs become model inputs.

Every :class:`~tinylarge.data.Dataset` carries a ``preprocessing`` dict that a
device-side pipeline (or an exported model) can reproduce exactly:

1. ``to_unit``: raw input -> "unit" features. Pixels are multiplied by
   ``factor`` (1/255, or 1/16 for digits) into [0, 1]; tabular columns go
   through the documented scaler into [0, 1]; audio is scaled to [-1, 1] and
   turned into MFCCs with the recorded parameters.
2. standardization: ``(x_unit - mean) / std`` along ``axis`` of ``input_shape``
   (per channel for images, per feature for tables, per coefficient for
   MFCCs), with ``mean`` and ``std`` fitted on the full training split.

The dict holds only JSON types (str, int, float, bool, lists, dicts).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float32]

#: Standard deviations below this are replaced by 1 (constant features).
MIN_STD = 1e-6
_CHUNK = 4096


def fit_stats(x_unit: NDArray[Any], *, axis: int) -> tuple[list[float], list[float]]:
    """Mean and std of ``x_unit`` (samples first) per index of ``axis`` of a sample.

    ``axis`` counts in the sample shape (without the batch axis). Two passes
    over chunks of samples in float64, so large image sets need no float64
    copy. Constant features get std 1 so that standardizing never divides by
    zero.
    """
    if x_unit.shape[0] == 0:
        raise ValueError("cannot fit statistics on an empty training split")
    reduce_axes = tuple(a for a in range(x_unit.ndim) if a != axis + 1)
    count = x_unit.size // x_unit.shape[axis + 1]
    total = np.zeros(x_unit.shape[axis + 1])
    for start in range(0, x_unit.shape[0], _CHUNK):
        total += x_unit[start : start + _CHUNK].sum(axis=reduce_axes, dtype=np.float64)
    mean = total / count
    shape = [1] * x_unit.ndim
    shape[axis + 1] = mean.shape[0]
    squares = np.zeros_like(mean)
    for start in range(0, x_unit.shape[0], _CHUNK):
        centred = x_unit[start : start + _CHUNK] - mean.reshape(shape)
        squares += np.square(centred).sum(axis=reduce_axes)
    std = np.sqrt(squares / count)
    std = np.where(std < MIN_STD, 1.0, std)
    return [float(v) for v in mean], [float(v) for v in std]


def standardize(
    x_unit: NDArray[Any],
    *,
    mean: list[float],
    std: list[float],
    axis: int,
    inplace: bool = False,
) -> FloatArray:
    """``(x_unit - mean) / std`` along ``axis`` of a sample, computed in float32.

    ``inplace`` overwrites ``x_unit`` (which must then be float32) to spare a
    copy of large image sets.
    """
    shape = [1] * x_unit.ndim
    shape[axis + 1] = len(mean)
    m = np.asarray(mean, dtype=np.float32).reshape(shape)
    s = np.asarray(std, dtype=np.float32).reshape(shape)
    if inplace and x_unit.dtype != np.float32:
        raise ValueError("inplace standardization needs a float32 array")
    out: FloatArray = np.subtract(x_unit, m, dtype=np.float32, out=x_unit if inplace else None)
    out /= s
    return out


def normalize(x_unit: NDArray[Any], preprocessing: Mapping[str, Any]) -> FloatArray:
    """Apply step 2 of a dataset's contract to unit features (samples first)."""
    return standardize(
        x_unit,
        mean=list(preprocessing["mean"]),
        std=list(preprocessing["std"]),
        axis=int(preprocessing["axis"]),
    )


def denormalize(x: NDArray[Any], preprocessing: Mapping[str, Any]) -> FloatArray:
    """Invert :func:`normalize`: model inputs back to unit features."""
    axis = int(preprocessing["axis"])
    shape = [1] * x.ndim
    shape[axis + 1] = len(preprocessing["mean"])
    m = np.asarray(preprocessing["mean"], dtype=np.float32).reshape(shape)
    s = np.asarray(preprocessing["std"], dtype=np.float32).reshape(shape)
    out: FloatArray = np.multiply(x, s, dtype=np.float32)
    out += m
    return out
