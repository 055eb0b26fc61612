"""`tinylarge profile`: zoo names and files, JSON contract, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tinylarge.cli.app import main


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main(["profile", *argv, "--json"]) == 0
    out: dict[str, object] = json.loads(capsys.readouterr().out)
    return out


def test_zoo_model_json(capsys: pytest.CaptureFixture[str]) -> None:
    out = _json(capsys, "cnn-tiny", "--input-shape", "1,8,8", "--dtype", "int8")
    for key in ("macs", "params", "weight_bytes", "peak_sram_bytes", "flash_bytes", "layers"):
        assert key in out
    assert out["input_shape"] == [1, 8, 8]
    assert out["dtype"] == "int8"
    layers = out["layers"]
    assert isinstance(layers, list)
    assert sum(layer["macs"] for layer in layers) == out["macs"]
    assert "fits" not in out


def test_default_shape_and_classes(capsys: pytest.CaptureFixture[str]) -> None:
    out = _json(capsys, "ds-cnn", "--num-classes", "12")
    assert out["input_shape"] == [1, 49, 10]
    assert out["macs"] == 2_656_768


def test_tflite_file(capsys: pytest.CaptureFixture[str], mlperf_dir: Path) -> None:
    out = _json(capsys, str(mlperf_dir / "vww_96_int8.tflite"))
    assert out["macs"] == 7_489_664
    assert out["flash_bytes"] == (mlperf_dir / "vww_96_int8.tflite").stat().st_size


def test_human_output_has_layers_and_totals(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "mlp", "--input-shape", "16"]) == 0
    out = capsys.readouterr().out
    assert "Linear" in out
    assert "peak SRAM bytes" in out
    assert "1664" in out  # 16*64 + 64*10 MACs


def test_device_check(capsys: pytest.CaptureFixture[str]) -> None:
    out = _json(capsys, "cnn-tiny", "--dtype", "int8", "--device", "stm32h743")
    assert isinstance(out["fits"], bool)
    assert isinstance(out["latency_s"], float)
    assert out["latency_s"] > 0
    assert isinstance(out["energy_j"], float)
    assert out["energy_j"] > 0
    big = _json(capsys, "cnn-large", "--input-shape", "3,96,96", "--device", "stm32h743")
    assert big["fits"] is False
    assert big["reason"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nope"], "unknown model 'nope'; known: cnn-large"),
        (["cnn-tiny", "--input-shape", "1,a"], "--input-shape must be"),
        (["cnn-tiny", "--input-shape", "28,28"], "takes inputs shaped (C, H, W)"),
        (["missing.tflite"], "model file not found"),
        (["model.pb"], "unknown model file format '.pb'"),
    ],
)
def test_user_errors_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["profile", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1
