"""Quantization-aware training: BN folding, the fake-quant grid, and the QAT round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tests.compress.conftest import Trained
from torch import nn

from tinylarge.compress.export import export_onnx_int8, onnx_logits
from tinylarge.compress.qat import (
    QATLayer,
    fake_quant_weight,
    fold_batchnorm,
    prepare_qat,
    strip_qat,
)
from tinylarge.compress.quantize import symmetric_scales
from tinylarge.compress.train import TrainConfig, accuracy, train_model
from tinylarge.models.zoo import build_model


def test_folding_batchnorm_keeps_the_function() -> None:
    torch.manual_seed(0)
    model = build_model("ds-cnn", input_shape=(1, 16, 10), num_classes=4, width=8, blocks=1)
    model.train()
    with torch.no_grad():  # give BN non-trivial running statistics
        for _ in range(3):
            model(torch.randn(16, 1, 16, 10) * 3 + 1)
    model.eval()
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(5, 1, 16, 10)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-4, rtol=1e-4)


def test_weight_fake_quant_is_the_deployed_grid() -> None:
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(6, 3, 3, 3, generator=gen)
    fq = fake_quant_weight(w)
    scales = symmetric_scales(w.numpy())
    q = fq.numpy() / scales[:, None, None, None]
    np.testing.assert_allclose(q, np.round(q), atol=1e-3)  # on the int grid
    assert np.abs(np.round(q)).max() <= 127
    w.requires_grad_(True)
    fake_quant_weight(w).sum().backward()  # type: ignore[no-untyped-call]
    assert w.grad is not None
    torch.testing.assert_close(w.grad, torch.ones_like(w))  # straight through


def test_qat_round_trip_and_artifact(trained_cnn: Trained, tmp_path: Path) -> None:
    ds = trained_cnn.dataset
    qat = prepare_qat(trained_cnn.model, trained_cnn.calibration)
    assert sum(isinstance(m, QATLayer) for m in qat.modules()) == 3
    train_model(qat, ds.x_train, ds.y_train, config=TrainConfig(epochs=1, lr=1e-3, seed=2))
    plain = strip_qat(qat)
    assert not any(isinstance(m, QATLayer) for m in plain.modules())
    assert type(plain) is type(trained_cnn.model)
    path = export_onnx_int8(
        plain, tmp_path / "qat.onnx", input_shape=ds.input_shape,
        calibration=trained_cnn.calibration,
    )  # fmt: skip
    assert accuracy(onnx_logits(path, ds.x_test), ds.y_test) > 0.9
