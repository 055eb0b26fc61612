"""TFLite int8 via litert-torch, run in the LiteRT interpreter (needs the ``tflite`` extra).

Skipped only when the extra does not import; CI installs it
(``pip install -e '.[dev,ray,tflite]'``) and runs these.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tests.compress.conftest import Trained

from tinylarge.compress.export import export_onnx_int8, onnx_logits
from tinylarge.compress.tflite import export_tflite_int8, litert_available, tflite_logits
from tinylarge.compress.train import TrainConfig, accuracy, train_model
from tinylarge.data import Dataset
from tinylarge.models.files import profile_file
from tinylarge.models.zoo import build_model

pytestmark = pytest.mark.skipif(
    not litert_available(), reason="tflite extra not installed: pip install 'tinylarge[tflite]'"
)


def test_tflite_agrees_with_the_onnx_artifact(trained_cnn: Trained, tmp_path: Path) -> None:
    ds, model, calib = trained_cnn.dataset, trained_cnn.model, trained_cnn.calibration
    io = export_tflite_int8(model, tmp_path / "m.tflite", input_shape=ds.input_shape,
                            calibration=calib)  # fmt: skip
    onnx_path = export_onnx_int8(model, tmp_path / "m.onnx", input_shape=ds.input_shape,
                                 calibration=calib)  # fmt: skip
    lite = tflite_logits(tmp_path / "m.tflite", ds.x_test)
    ref = onnx_logits(onnx_path, ds.x_test)
    agree = np.mean(np.argmax(lite, 1) == np.argmax(ref, 1))
    assert agree >= 0.99, agree
    assert accuracy(lite, ds.y_test) >= accuracy(ref, ds.y_test) - 0.01
    assert io.channels_last
    assert -128 <= io.input_zero_point <= 127
    assert io.input_scale > 0
    prof = profile_file(tmp_path / "m.tflite")
    assert prof.dtype == "int8"
    assert prof.input_shape == (8, 8, 1)


def test_tabular_model_keeps_its_layout(digits: Dataset, tmp_path: Path) -> None:
    x, xt = digits.x_train.reshape(len(digits.x_train), -1), digits.x_test.reshape(-1, 64)
    torch.manual_seed(0)
    model = build_model("mlp", input_shape=(64,), num_classes=10, hidden=32)
    train_model(model, x, digits.y_train, config=TrainConfig(epochs=5, lr=3e-3, seed=0))
    io = export_tflite_int8(model, tmp_path / "t.tflite", input_shape=(64,), calibration=x[:128])
    assert not io.channels_last
    onnx_path = export_onnx_int8(model, tmp_path / "t.onnx", input_shape=(64,),
                                 calibration=x[:128])  # fmt: skip
    lite = tflite_logits(tmp_path / "t.tflite", xt)
    ref = onnx_logits(onnx_path, xt)
    assert np.mean(np.argmax(lite, 1) == np.argmax(ref, 1)) >= 0.99
