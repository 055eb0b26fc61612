"""TFLite Micro (the ``tflite-micro`` extra): measured arenas against the arena model,
outputs against LiteRT, and the one-line refusals of what TFLM cannot run as int8.

Skipped, saying why, where the extra's wheels do not exist or it is not installed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tinylarge.compress.tflite import export_tflite_int8, litert_available, tflite_logits
from tinylarge.compress.tflm import (
    platform_supported,
    runs_in,
    smallest_arena_bytes,
    tflm_available,
    unavailable_reason,
    verify_tflite,
)
from tinylarge.data import Dataset
from tinylarge.errors import TinylargeError
from tinylarge.models.tflite_reader import read_tflite
from tinylarge.models.tflm_arena import predict_arena
from tinylarge.models.zoo import build_model

REPO = Path(__file__).resolve().parents[2]
MLPERF = Path(os.environ.get("TINYLARGE_DATA", REPO.parent / "shared" / "datasets"))
MLPERF = MLPERF / "mlperf-tiny-models"
needs_tflm = pytest.mark.skipif(not tflm_available(), reason=unavailable_reason() or "ok")
MLPERF_MODELS = ("ad01_int8", "kws_ref_model", "pretrainedResnet_quant", "vww_96_int8")


def test_unavailable_extra_is_one_line_naming_the_fix() -> None:
    reason = unavailable_reason()
    if tflm_available():
        assert reason == ""
    else:
        assert "\n" not in reason
        assert ("tinylarge[tflite-micro]" in reason) or ("x86-64 Linux" in reason)
    if not platform_supported():
        assert "CPython 3.10-3.14 on x86-64 Linux" in reason


@needs_tflm
@pytest.mark.parametrize("name", MLPERF_MODELS)
def test_mlperf_tiny_arena_predicted_within_10_percent(name: str) -> None:
    data = (MLPERF / f"{name}.tflite").read_bytes()
    predicted = predict_arena(read_tflite(MLPERF / f"{name}.tflite"), build="x86-64").arena_bytes
    # within 10 % of the smallest arena TFLM runs in: it runs at +10 %, not at -10 %
    assert runs_in(data, int(predicted * 1.10))
    assert not runs_in(data, int(predicted / 1.10))


@needs_tflm
def test_smallest_arena_is_exact() -> None:
    data = (MLPERF / "ad01_int8.tflite").read_bytes()
    n = smallest_arena_bytes(data, hint_bytes=3000)  # a poor hint still finds it
    assert runs_in(data, n)
    assert not runs_in(data, n - 1)


@needs_tflm
@pytest.mark.skipif(not litert_available(), reason="tflite extra not installed")
def test_exported_zoo_model_runs_as_in_litert_and_as_predicted(
    digits: Dataset, tmp_path: Path
) -> None:
    import torch

    torch.manual_seed(0)
    model = build_model("cnn-tiny", input_shape=digits.input_shape, num_classes=10, width=8)
    path = tmp_path / "m.tflite"
    io = export_tflite_int8(model, path, input_shape=digits.input_shape,
                            calibration=digits.x_train[:128])  # fmt: skip
    x = digits.x_test[:200]
    run = verify_tflite(path, x, channels_last=io.channels_last)
    lite = tflite_logits(path, x, channels_last=io.channels_last)
    # same int8 arithmetic: the dequantized outputs differ by at most one output step
    step = float(np.min(np.diff(np.unique(lite)))) if len(np.unique(lite)) > 1 else 1.0
    assert np.max(np.abs(run.logits - lite)) <= step + 1e-6
    assert np.mean(np.argmax(run.logits, 1) == np.argmax(lite, 1)) >= 0.99
    predicted = predict_arena(read_tflite(path)).arena_bytes
    assert abs(predicted - run.arena_bytes) <= 0.10 * run.arena_bytes
    assert not runs_in(path.read_bytes(), run.arena_bytes - 1)


@needs_tflm
def test_float_model_is_refused_naming_the_operator() -> None:
    with pytest.raises(TinylargeError, match=r"operator CONV_2D \(#0\) has float32") as info:
        verify_tflite(MLPERF / "kws_ref_model_float32.tflite", np.zeros((1, 49, 10, 1)))
    assert "\n" not in str(info.value)


def _with_operator(src: Path, dst: Path, builtin: int) -> Path:
    """``src`` with its first operator code replaced by ``builtin`` (schema object API)."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s

    model = s.ModelT.InitFromObj(s.Model.GetRootAsModel(src.read_bytes(), 0))
    model.operatorCodes[0].builtinCode = builtin
    model.operatorCodes[0].deprecatedBuiltinCode = min(builtin, 127)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    dst.write_bytes(bytes(builder.Output()))
    return dst


@needs_tflm
def test_operator_outside_tflm_is_refused_naming_it(tmp_path: Path) -> None:
    path = _with_operator(MLPERF / "ad01_int8.tflite", tmp_path / "lsh.tflite", 15)
    with pytest.raises(TinylargeError, match="operator LSH_PROJECTION") as info:
        verify_tflite(path, np.zeros((1, 640), dtype=np.float32))
    assert "\n" not in str(info.value)


@needs_tflm
def test_export_verification_refuses_and_removes_the_file(tmp_path: Path) -> None:
    import shutil

    from tinylarge.cli._tflite_export import verify_in_tflite_micro

    path = tmp_path / "student-int8-tflite.tflite"
    shutil.copyfile(MLPERF / "kws_ref_model_float32.tflite", path)
    with pytest.raises(TinylargeError, match="operator CONV_2D"):
        verify_in_tflite_micro(path, np.zeros((1, 49, 10, 1)), np.zeros(1), channels_last=False)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []  # no contract, nothing half-written
