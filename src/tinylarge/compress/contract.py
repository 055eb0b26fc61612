"""The input contract of a deployed artifact: how to feed it without reading our code.

Every artifact (``model.onnx``, ``model.tflite``, ``model.h``) gets a JSON file
beside it with the same stem (``model.json``). From a raw input:

1. to unit features, as ``to_unit`` says: pixels divided by 255 (16 for the
   8x8 digits), NSL-KDD's tabular scaler (log1p, training min-max, one-hot
   categories; all parameters inside ``to_unit``), FSDD's MFCC parameters;
2. standardize: ``(x - mean) / std`` with one ``mean``/``std`` entry per index
   of the axis named by ``norm_axis`` (a letter of ``layout``);
3. for an integer input (``dtype`` ``"int8"``): ``q = clip(round(x /
   input_scale) + input_zero_point, -128, 127)``. For a float input both are
   ``null`` (the artifact quantizes internally).

Keys: ``input_shape`` (with the batch dimension, 1), ``layout`` (``NCHW``,
``NHWC``, ``NCW``, ``NWC`` or ``NC``), ``dtype``, ``mean``, ``std``,
``norm_axis``, ``input_scale``, ``input_zero_point``, ``labels`` (class names by
output index), ``to_unit``, ``output`` (dtype and, for int8 outputs, scale and
zero point), ``artifact`` (file name, bytes, sha256).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tinylarge.errors import TinylargeError

#: Keys every contract has (the issue's list plus what firmware needs to apply it).
REQUIRED_KEYS = (
    "input_shape",
    "layout",
    "dtype",
    "mean",
    "std",
    "input_scale",
    "input_zero_point",
    "labels",
)

_CHANNELS_FIRST = {1: "NC", 2: "NCW", 3: "NCHW"}
_CHANNELS_LAST = {1: "NC", 2: "NWC", 3: "NHWC"}


def layout_for(sample_shape: Sequence[int], *, channels_last: bool) -> str:
    """Layout letters of a batch of samples shaped ``sample_shape`` (PyTorch order)."""
    table = _CHANNELS_LAST if channels_last else _CHANNELS_FIRST
    if len(sample_shape) not in table:
        raise TinylargeError(f"no layout for inputs of rank {len(sample_shape)}: {sample_shape}")
    return table[len(sample_shape)]


def norm_axis_letter(sample_shape: Sequence[int], axis: int) -> str:
    """The layout letter of ``axis`` of a PyTorch-ordered sample (``C``, ``H``, ``W``)."""
    letters = _CHANNELS_FIRST[len(sample_shape)][1:]
    if len(sample_shape) == 1:
        letters = "C"
    return letters[axis]


def to_layout(shape: Sequence[int], layout: str) -> list[int]:
    """The batch-1 input shape of PyTorch-ordered sample ``shape`` in ``layout``."""
    dims = [1, *shape]
    if layout in ("NHWC", "NWC"):
        dims = [dims[0], *dims[2:], dims[1]]
    return [int(d) for d in dims]


def make_contract(
    *,
    preprocessing: Mapping[str, Any],
    sample_shape: Sequence[int],
    labels: Sequence[str],
    dtype: str,
    channels_last: bool = False,
    input_scale: float | None = None,
    input_zero_point: int | None = None,
    output: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The contract of an artifact taking samples of PyTorch shape ``sample_shape``.

    ``preprocessing`` is the dataset's recorded contract
    (:attr:`tinylarge.data.Dataset.preprocessing`).
    """
    if dtype not in ("float32", "int8"):
        raise TinylargeError(f"artifact input dtype must be float32 or int8, got {dtype!r}")
    if dtype == "int8" and (input_scale is None or input_zero_point is None):
        raise TinylargeError("an int8 input needs input_scale and input_zero_point")
    layout = layout_for(sample_shape, channels_last=channels_last)
    return {
        "input_shape": to_layout(sample_shape, layout),
        "layout": layout,
        "dtype": dtype,
        "mean": [float(v) for v in preprocessing["mean"]],
        "std": [float(v) for v in preprocessing["std"]],
        "norm_axis": norm_axis_letter(sample_shape, int(preprocessing.get("axis", 0))),
        "input_scale": None if input_scale is None else float(input_scale),
        "input_zero_point": None if input_zero_point is None else int(input_zero_point),
        "labels": [str(v) for v in labels],
        "to_unit": preprocessing.get("to_unit"),
        "output": dict(output or {"dtype": "float32", "meaning": "logits"}),
    }


def contract_path(artifact: str | Path) -> Path:
    """``model.onnx`` -> ``model.json``: the contract beside an artifact."""
    return Path(artifact).with_suffix(".json")


def write_contract(artifact: str | Path, contract: Mapping[str, Any]) -> Path:
    """Write ``contract`` beside ``artifact`` (with its file name, size and sha256)."""
    path = Path(artifact)
    data = path.read_bytes()
    full = {
        **contract,
        "artifact": {
            "file": path.name,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        },
    }
    missing = [k for k in REQUIRED_KEYS if k not in full]
    if missing:
        raise ValueError(f"contract misses {missing}")
    out = contract_path(path)
    out.write_text(json.dumps(full, indent=2) + "\n")
    return out


def read_contract(artifact: str | Path) -> dict[str, Any]:
    """The contract beside ``artifact``."""
    path = contract_path(artifact)
    if not path.is_file():
        raise TinylargeError(f"no input contract beside {artifact}: expected {path}")
    data: dict[str, Any] = json.loads(path.read_text())
    return data
