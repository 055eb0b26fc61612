"""The kd scheme: server-side teacher and distillation, int8 artifact, billed deployment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.conftest import kill_in_round, small_task

from tinylarge.compress.contract import read_contract
from tinylarge.compress.export import onnx_logits
from tinylarge.config import parse_config
from tinylarge.data import load_dataset
from tinylarge.errors import TinylargeError
from tinylarge.schemes.kd import KD
from tinylarge.sim.engine import run_experiment
from tinylarge.sim.ledger import Ledger

FAST = {"teacher_epochs": 3, "distill_epochs": 3}


def kd_task(**options: Any) -> dict[str, Any]:
    return small_task(scheme={"name": "kd", "options": {**FAST, **options}}, training={"rounds": 2})


@pytest.fixture(scope="module")
def kd_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("kd") / "run"
    summary = run_experiment(parse_config(kd_task()), out=out, progress=False)
    return summary, out


def test_accuracy_is_the_artifacts_measured_in_onnx_runtime(
    kd_run: tuple[dict[str, Any], Path],
) -> None:
    summary, out = kd_run
    ds = load_dataset("digits", seed=3)
    artifact = out / summary["artifact"]["path"]
    logits = onnx_logits(artifact, ds.x_test)
    assert summary["accuracy"] == float(np.mean(np.argmax(logits, 1) == ds.y_test))
    assert summary["accuracy"] > 0.75
    assert summary["large_accuracy"] > 0.75  # the teacher's
    assert summary["accuracy_source"].startswith("int8 ONNX artifact")
    assert abs(summary["accuracy"] - summary["student_fp32_accuracy"]) < 0.03
    art = summary["artifact"]
    assert art["bytes"] == artifact.stat().st_size < art["fp32_bytes"]
    assert summary["flash_bytes"] == art["bytes"]
    assert summary["peak_sram_bytes"] > 0
    contract = read_contract(artifact)
    assert contract["input_shape"] == [1, 1, 8, 8]
    assert contract["dtype"] == "float32"
    assert contract["artifact"]["bytes"] == art["bytes"]


def test_every_cost_is_billed(kd_run: tuple[dict[str, Any], Path]) -> None:
    summary, out = kd_run
    ledger = Ledger.from_csv(out / "ledger.csv")
    events = list(ledger)
    server = {e.what for e in events if e.side == "server"}
    assert {"teacher-train", "teacher-logits", "distill", "calibrate"} <= server
    assert [e.round for e in events if e.what == "teacher-train"] == [0]
    artifact_bytes = summary["artifact"]["bytes"]
    downloads = [e for e in events if e.kind == "download"]
    assert {e.what for e in downloads} == {"artifact"}
    assert len(downloads) == 2 * summary["num_devices"]
    assert downloads[-1].bytes == artifact_bytes  # the last release is the deployed one
    uploads = [e for e in events if e.kind == "upload"]
    assert {(e.what, e.bytes) for e in uploads} == {("eval-report", 8)}
    evals = [e for e in events if e.what == "on-device-eval"]
    assert evals
    assert all(e.macs % summary["artifact"]["macs"] == 0 for e in evals)
    assert (
        summary["device_eval_samples"]
        == sum(e.macs for e in evals[-4:]) // summary["artifact"]["macs"]
    )
    assert 0.5 < summary["device_eval_accuracy"] <= 1.0


def test_fit_and_cost_per_device_profile(kd_run: tuple[dict[str, Any], Path]) -> None:
    summary, _ = kd_run
    assert summary["fits"] == {"rpi4": True, "stm32h743": True}
    assert summary["excluded"] == {}
    mcu = summary["fit_per_profile"]["stm32h743"]
    assert mcu["flash_bytes"] == summary["artifact"]["bytes"]
    assert mcu["latency_s"] > 0
    assert mcu["energy_j"] > 0
    assert mcu["reason"] is None
    assert summary["server_split"] == {"fraction": 0.5, "samples": 673}


def test_an_artifact_too_big_for_a_device_is_excluded_with_the_reason(tmp_path: Path) -> None:
    cfg = kd_task(teacher_epochs=1, distill_epochs=1)
    cfg["model"] = {"name": "mlp", "options": {"hidden": 8192}}  # ~600 KB at int8
    cfg["topology"]["devices"] = [
        {"profile": "stm32h743", "count": 1, "link": "ble-2m"},
        {"profile": "stm32f446re", "count": 2, "link": "ble-2m"},  # 512 KiB flash
    ]
    cfg["training"] = {"rounds": 1}
    summary = run_experiment(parse_config(cfg), out=tmp_path / "run", progress=False)
    assert summary["fits"] == {"stm32h743": True, "stm32f446re": False}
    info = summary["excluded"]["stm32f446re"]
    assert info["count"] == 2
    over = summary["artifact"]["bytes"] - 524_288
    assert info["reason"].startswith("flash:")
    assert f"over by {over:,} B" in info["reason"]
    ledger = Ledger.from_csv(tmp_path / "run" / "ledger.csv")
    assert {e.profile for e in ledger if e.kind == "download"} == {"stm32h743"}


def test_a_model_that_fits_no_device_fails_before_the_run(tmp_path: Path) -> None:
    cfg = kd_task()
    cfg["model"] = {"name": "mlp", "options": {"hidden": 40000}}
    cfg["topology"]["devices"] = [{"profile": "nrf52840", "count": 2, "link": "ble-2m"}]
    with pytest.raises(TinylargeError, match="fits no device") as err:
        run_experiment(parse_config(cfg), out=tmp_path / "run", progress=False)
    assert "flash:" in str(err.value)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()


def test_resume_reaches_the_same_result(
    tmp_path: Path, kd_run: tuple[dict[str, Any], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    summary, _ = kd_run
    cfg = parse_config(kd_task())
    kill_in_round(
        monkeypatch, KD, 1, lambda: run_experiment(cfg, out=tmp_path / "run", progress=False)
    )
    resumed = run_experiment(cfg, out=tmp_path / "run", resume=True, progress=False)
    drop = {"wall_time_s"}
    assert {k: v for k, v in resumed.items() if k not in drop} == {
        k: v for k, v in summary.items() if k not in drop
    }
    # a run killed after its last checkpoint but before summary.json re-reads its artifacts
    (tmp_path / "run" / "summary.json").unlink()
    again = run_experiment(cfg, out=tmp_path / "run", resume=True, progress=False)
    assert again["artifact"] == summary["artifact"]
    assert again["accuracy"] == summary["accuracy"]


def test_channel_pruning_and_qat_deploy_a_smaller_artifact(
    tmp_path: Path, kd_run: tuple[dict[str, Any], Path]
) -> None:
    base, _ = kd_run
    cfg = kd_task(prune="channels", prune_amount=0.5, quantization="qat")
    cfg["model"] = {"name": "mlp", "options": {"hidden": [64, 32]}}
    summary = run_experiment(parse_config(cfg), out=tmp_path / "run", progress=False)
    art = summary["artifact"]
    assert art["prune"] == "channels"
    assert art["quantization"] == "qat"
    assert art["params"] == 64 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10  # half the hidden units
    assert summary["accuracy"] > 0.6  # 2 short rounds after removing half the units
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["artifact"] == art
    assert base["artifact"]["params"] != art["params"]
