"""``tinylarge export`` and ``tinylarge fit`` end to end through main()."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import small_task

from tinylarge.cli.app import main
from tinylarge.compress.contract import read_contract
from tinylarge.compress.export import parse_c_header
from tinylarge.compress.tflite import litert_available
from tinylarge.config import parse_config
from tinylarge.sim.engine import run_experiment


@pytest.fixture(scope="module")
def kd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "kd"
    cfg = small_task(
        scheme={"name": "kd", "options": {"teacher_epochs": 3, "distill_epochs": 3}},
        model={"name": "cnn-tiny", "options": {"width": 8}},
    )
    cfg["training"] = {"rounds": 1}  # kd refuses the devices' training settings
    run_experiment(parse_config(cfg), out=out, progress=False)
    return out


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main([*argv, "--json"]) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def test_export_onnx_int8_with_its_contract(
    kd_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    info = _json(capsys, "export", str(kd_dir), "--format", "onnx-int8", "--out",
                 str(tmp_path / "model.onnx"))  # fmt: skip
    src = kd_dir / "artifacts" / "student-int8.onnx"
    assert (tmp_path / "model.onnx").read_bytes() == src.read_bytes()
    contract = read_contract(tmp_path / "model.onnx")
    assert contract["artifact"]["file"] == "model.onnx"
    assert info["contract"] == str(tmp_path / "model.json")


def test_export_c_header(kd_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    info = _json(capsys, "export", str(kd_dir), "--format", "c-header")
    header = Path(info["path"])
    assert header.name == "student_int8_onnx.h"
    src = kd_dir / "artifacts" / "student-int8.onnx"
    assert parse_c_header(header.read_text()) == src.read_bytes()
    contract = read_contract(header)
    assert contract["embeds"]["file"] == "student-int8.onnx"
    assert contract["artifact"]["file"] == "student_int8_onnx.h"


@pytest.mark.skipif(not litert_available(), reason="tflite extra not installed")
def test_export_tflite_agrees_with_the_onnx_artifact(
    kd_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    info = _json(capsys, "export", str(kd_dir), "--format", "tflite")
    assert info["agreement_with_onnx_int8"] >= 0.99
    path = Path(info["path"])
    assert path.name == "student-int8-tflite.tflite"
    contract = read_contract(path)
    assert contract["dtype"] == "int8"
    assert contract["layout"] == "NHWC"
    assert contract["input_shape"] == [1, 8, 8, 1]
    assert isinstance(contract["input_scale"], float)
    assert isinstance(contract["input_zero_point"], int)
    assert read_contract(kd_dir / "artifacts" / "student-int8.onnx")["dtype"] == "float32"
    header = _json(capsys, "export", str(kd_dir), "--format", "c-header", "--source", "tflite")
    assert parse_c_header(Path(header["path"]).read_text()) == path.read_bytes()
    assert read_contract(Path(header["path"]))["layout"] == "NHWC"
    fit = _json(capsys, "fit", str(path), "--devices", "nrf52840")
    assert fit["dtype"] == "int8"
    assert fit["devices"][0]["fits"]


def test_export_of_a_run_without_artifacts_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "fedavg"
    run_experiment(parse_config(small_task(training={"rounds": 1})), out=out, progress=False)
    assert main(["export", str(out), "--format", "onnx-int8"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "no deployable artifacts" in err
    assert "kd" in err
    (out / "summary.json").unlink()
    assert main(["export", str(out), "--format", "c-header"]) == 2
    assert "not complete" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nowhere"), "--format", "tflite"]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_fit_names_the_shortfall(capsys: pytest.CaptureFixture[str]) -> None:
    report = _json(capsys, "fit", "cnn-large", "--input-shape", "3,96,96",
                   "--devices", "nrf52840,stm32h743,rpi4")  # fmt: skip
    rows = {r["device"]: r for r in report["devices"]}
    nrf = rows["nrf52840"]
    assert not nrf["fits"]
    assert nrf["sram_over_bytes"] == nrf["sram_bytes"] - 262_144
    assert f"over by {nrf['sram_over_bytes']:,} B" in nrf["reason"]
    assert rows["rpi4"]["fits"]
    assert report["int8_issues"] == []


def test_fit_of_a_run_dir_uses_its_artifact(
    kd_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _json(capsys, "fit", str(kd_dir))
    assert report["model"].endswith("student-int8.onnx")
    assert report["flash_bytes"] == (kd_dir / "artifacts" / "student-int8.onnx").stat().st_size
    assert len(report["devices"]) > 10
    assert main(["fit", str(kd_dir), "--devices", "nrf52840"]) == 0
    assert "nrf52840" in capsys.readouterr().out
