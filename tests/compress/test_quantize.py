"""The TFLite int8 arithmetic and ONNX Runtime's static quantizer against it."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import numpy_helper
from tests.compress.conftest import Trained

from tinylarge.compress import quantize
from tinylarge.compress.export import export_onnx, export_onnx_int8, onnx_logits
from tinylarge.compress.train import accuracy, predict_logits


def test_docstring_examples() -> None:
    assert doctest.testmod(quantize).failed == 0


@settings(max_examples=60, deadline=None)
@given(
    lo=st.floats(-100, 100, allow_nan=False),
    width=st.floats(1e-3, 200, allow_nan=False),
)
def test_affine_params_cover_the_range_and_zero(lo: float, width: float) -> None:
    hi = lo + width
    scale, zp = quantize.affine_qparams(lo, hi)
    assert -128 <= zp <= 127
    # zero is exactly representable
    assert quantize.dequantize(np.array([zp]), scale=scale, zero_point=zp)[0] == 0.0
    xs = np.linspace(min(lo, 0.0), max(hi, 0.0), 101, dtype=np.float32)
    back = quantize.dequantize(quantize.quantize(xs, scale=scale, zero_point=zp), scale=scale,
                               zero_point=zp)  # fmt: skip
    assert np.max(np.abs(back - xs)) <= scale * 0.5 + 1e-5 * max(1.0, abs(lo), abs(hi))


def _initializers(path: Path) -> dict[str, np.ndarray]:
    model = onnx.load(str(path))
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def test_artifact_weights_follow_the_tflite_scheme(trained_mlp: Trained, tmp_path: Path) -> None:
    """Oracle: the per-channel scales in the file are max|w| / 127 of each output channel."""
    path = export_onnx_int8(
        trained_mlp.model, tmp_path / "m.onnx", input_shape=(1, 8, 8),
        calibration=trained_mlp.calibration,
    )  # fmt: skip
    model = onnx.load(str(path))
    inits = _initializers(path)
    linears = [m for m in trained_mlp.model.modules() if m.__class__.__name__ == "Linear"]
    dq = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    gemms = [n for n in model.graph.node if n.op_type == "Gemm"]
    assert len(gemms) == len(linears)
    for gemm, linear in zip(gemms, linears, strict=True):
        node = dq[gemm.input[1]]
        q, scale = inits[node.input[0]], inits[node.input[1]]
        assert q.dtype == np.int8
        assert q.min() >= -127
        weight = linear.weight.detach().numpy()
        np.testing.assert_allclose(scale, quantize.symmetric_scales(weight), rtol=1e-6)
        np.testing.assert_array_equal(inits[node.input[2]], 0)  # symmetric
        np.testing.assert_allclose(q * scale[:, None], weight, atol=float(scale.max()) / 2 + 1e-7)
    # activations: per-tensor int8 with a zero point
    acts = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert acts
    assert all(inits[n.input[1]].ndim == 0 for n in acts)
    assert all(inits[n.input[2]].dtype == np.int8 for n in acts)


def test_int8_artifact_is_small_and_as_accurate(trained_mlp: Trained, tmp_path: Path) -> None:
    ds, model = trained_mlp.dataset, trained_mlp.model
    fp32 = export_onnx(model, tmp_path / "fp32.onnx", input_shape=ds.input_shape)
    int8 = export_onnx_int8(
        model, tmp_path / "int8.onnx", input_shape=ds.input_shape,
        calibration=trained_mlp.calibration,
    )  # fmt: skip
    torch_acc = accuracy(predict_logits(model, ds.x_test), ds.y_test)
    fp32_acc = accuracy(onnx_logits(fp32, ds.x_test), ds.y_test)
    int8_acc = accuracy(onnx_logits(int8, ds.x_test), ds.y_test)
    assert fp32_acc == torch_acc
    assert int8_acc >= fp32_acc - 0.01
    # 256 and 128 hidden units: int8 weights plus per-channel parameters stay under 0.3x
    assert int8.stat().st_size <= 0.3 * fp32.stat().st_size


def test_int8_logits_track_fp32_logits(trained_cnn: Trained, tmp_path: Path) -> None:
    ds, model = trained_cnn.dataset, trained_cnn.model
    int8 = export_onnx_int8(
        model, tmp_path / "int8.onnx", input_shape=ds.input_shape,
        calibration=trained_cnn.calibration,
    )  # fmt: skip
    ref = predict_logits(model, ds.x_test)
    got = onnx_logits(int8, ds.x_test)
    spread = float(ref.max() - ref.min())
    assert float(np.mean(np.abs(got - ref))) < 0.05 * spread
    assert np.mean(np.argmax(got, 1) == np.argmax(ref, 1)) > 0.97


def test_empty_calibration_is_rejected(trained_mlp: Trained, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="calibration"):
        export_onnx_int8(
            trained_mlp.model, tmp_path / "m.onnx", input_shape=(1, 8, 8),
            calibration=trained_mlp.calibration[:0],
        )  # fmt: skip


def _input_scale(path: Path) -> float:
    model = onnx.load(str(path))
    inits = _initializers(path)
    name = model.graph.input[0].name
    while True:  # follow the input through layout ops (Flatten) to its QuantizeLinear
        first = next(n for n in model.graph.node if name in n.input)
        if first.op_type == "QuantizeLinear":
            break
        name = first.output[0]
    return float(inits[first.input[1]])


def test_percentile_calibration_is_robust_to_a_few_outliers(
    trained_mlp: Trained, tmp_path: Path
) -> None:
    """A few huge input values (rare one-hot columns after standardization) stretch the
    min/max input grid until the artifact is useless; the percentile clip keeps the grid."""
    ds, model = trained_mlp.dataset, trained_mlp.model
    calib = trained_mlp.calibration.copy()
    calib[0, 0, 0, 0] = 500.0  # one outlier in 16,384 calibration values
    paths = {
        method: export_onnx_int8(
            model,
            tmp_path / f"{method}.onnx",
            input_shape=ds.input_shape,
            calibration=calib,
            method=method,
        )
        for method in ("minmax", "percentile")
    }
    assert _input_scale(paths["minmax"]) > 20 * _input_scale(paths["percentile"])
    fp32_acc = accuracy(predict_logits(model, ds.x_test), ds.y_test)
    assert accuracy(onnx_logits(paths["percentile"], ds.x_test), ds.y_test) >= fp32_acc - 0.01
    assert accuracy(onnx_logits(paths["minmax"], ds.x_test), ds.y_test) < fp32_acc - 0.05


def test_percentile_clip_keeps_the_bulk_and_cuts_the_tail() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=100_000)
    x[:5] = 1e3
    lo, hi = quantize.percentile_range(x, percentile=99.99)
    assert -5 < lo < -3  # about 3.9 sigma, not 1000
    assert 3 < hi < 5
    clipped = quantize.calibration_inputs(x, method="percentile")
    assert clipped.max() == pytest.approx(hi, rel=1e-6)
    np.testing.assert_array_equal(quantize.calibration_inputs(x, method="minmax"), x.astype("f4"))
    assert quantize.percentile_range(x, percentile=100.0) == (x.min(), x.max())


@pytest.mark.parametrize(("method", "percentile"), [("entropy", 99.99), ("percentile", 0.0)])
def test_bad_calibration_settings_are_rejected(method: str, percentile: float) -> None:
    with pytest.raises(ValueError, match="calibration"):
        quantize.calibration_inputs(np.zeros((2, 3)), method=method, percentile=percentile)
