"""The kd scheme: server-side teacher and distillation, int8 artifact, billed deployment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.conftest import resume_after_kill, small_task

from tinylarge.compress.contract import read_contract
from tinylarge.compress.export import onnx_logits
from tinylarge.config import ConfigError, load_config, parse_config
from tinylarge.data import load_dataset
from tinylarge.errors import TinylargeError
from tinylarge.results.rundir import RunDir
from tinylarge.schemes.kd import KD
from tinylarge.schemes.options import scheme_options
from tinylarge.schemes.options.compress import SERVER_ONLY_TRAINING, KDOptions
from tinylarge.sim.context import Context
from tinylarge.sim.engine import run_experiment
from tinylarge.sim.ledger import Ledger

FAST = {"teacher_epochs": 3, "distill_epochs": 3}


def kd_task(**options: Any) -> dict[str, Any]:
    cfg = small_task(scheme={"name": "kd", "options": {**FAST, **options}})
    cfg["training"] = {"rounds": 2}  # kd refuses the devices' training settings
    return cfg


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


def test_the_server_holds_a_stratified_half_of_every_class() -> None:
    """1,347 training digits in classes of 134, 136, 133, 137, 136, 136, 136, 134, 130 and 135:
    half of each, Python's round sending 66.5, 68.5 and 67.5 to the even neighbour (66, 68,
    68), is 67 + 68 + 66 + 68 + 68 + 68 + 68 + 67 + 65 + 68 = 673 samples."""
    ctx = Context(parse_config(kd_task()))
    scheme = KD(ctx, KDOptions(**FAST))
    scheme.setup()
    counts = np.bincount(ctx.dataset.y_train, minlength=10)
    halves = [max(1, round(0.5 * int(n))) for n in counts]
    held = np.bincount(ctx.dataset.y_train[scheme.server_idx], minlength=10)
    assert held.tolist() == halves
    assert sum(halves) == len(scheme.server_idx) == 673
    # what the devices keep for on-device evaluation is the rest, and nothing the server holds
    local = np.concatenate([scheme.local[c.id] for c in ctx.clients])
    assert len(local) + 673 == 1347
    assert not set(local.tolist()) & set(scheme.server_idx.tolist())


def test_an_artifact_too_big_for_a_device_is_excluded_with_the_reason(tmp_path: Path) -> None:
    cfg = kd_task(teacher_epochs=1, distill_epochs=1)
    cfg["model"] = {"name": "mlp", "options": {"hidden": [4096, 128]}}  # ~800 KB at int8
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
    cfg["model"] = {"name": "mlp", "options": {"hidden": [4096, 512]}}  # ~2.4 MB at int8
    cfg["topology"]["devices"] = [{"profile": "nrf52840", "count": 2, "link": "ble-2m"}]
    with pytest.raises(
        TinylargeError, match="no device of the topology can run model 'mlp' at int8"
    ) as err:
        run_experiment(parse_config(cfg), out=tmp_path / "run", progress=False)
    assert "nrf52840: flash:" in str(err.value)
    assert "over by" in str(err.value)
    assert "scheme.options.prune" in str(err.value)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()


def test_resume_reaches_the_same_result(
    tmp_path: Path, kd_run: tuple[dict[str, Any], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    summary, _ = kd_run
    cfg = parse_config(kd_task())
    resumed = resume_after_kill(monkeypatch, KD, 1, cfg, tmp_path / "run")
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


def test_the_devices_training_settings_are_refused_one_line_each() -> None:
    """kd never trains on devices: every ``training`` field it cannot honour is one line."""
    cfg = kd_task()
    cfg["training"] = {
        "rounds": 2,
        "fraction": 0.5,  # honoured: the share of the fitting devices a release reaches
        "local_epochs": 2,
        "batch_size": 8,
        "lr": 0.5,
        "optimizer": "momentum",
        "momentum": 0.5,
        "weight_decay": 0.01,
    }
    with pytest.raises(ConfigError) as err:
        scheme_options(parse_config(cfg))
    lines = str(err.value).splitlines()
    assert len(lines) == len(SERVER_ONLY_TRAINING) == 6
    for field, line in zip(sorted(SERVER_ONLY_TRAINING), sorted(lines), strict=True):
        assert f"training.{field}: scheme 'kd' does not train on devices" in line
    assert isinstance(scheme_options(parse_config(kd_task())), KDOptions)


def test_a_run_directory_config_reads_back(kd_run: tuple[dict[str, Any], Path]) -> None:
    """config.yaml spells out every default (training.lr and all): reading it back, as
    ``tinylarge export`` does, must not refuse what the user never set."""
    _, out = kd_run
    assert isinstance(scheme_options(load_config(out / "config.yaml")), KDOptions)


def test_a_release_reaches_the_training_fraction_of_the_devices_it_fits(tmp_path: Path) -> None:
    cfg = kd_task(teacher_epochs=1, distill_epochs=1)
    cfg["training"] = {"rounds": 2, "fraction": 0.5}
    summary = run_experiment(parse_config(cfg), out=tmp_path / "run", progress=False)
    ledger = Ledger.from_csv(tmp_path / "run" / "ledger.csv")
    for rnd in range(2):
        targets = {e.node for e in ledger if e.round == rnd and e.what == "artifact"}
        assert len(targets) == 2  # half of the 4 devices, sampled per release
        reports = {e.node for e in ledger if e.round == rnd and e.what == "eval-report"}
        assert reports == targets
    assert summary["fits"] == {"rpi4": True, "stm32h743": True}


#: A device far beyond Bluetooth's range: its link is in outage in every round.
UNREACHABLE = {"profile": "rpi4", "count": 1, "link": "ble-2m", "distance_m": 5000.0}


def test_dropout_outage_and_deadline_on_the_one_clock(tmp_path: Path) -> None:
    """Each release under ``engine.dropout_prob``, a device in permanent outage and a deadline
    that cuts the microcontrollers on BLE (download 53 ms): who left, and why, and each round's
    latency, re-derived from the ledger's events alone (each has its start, ``at_s``)."""
    deadline_s = 0.03
    cfg = kd_task(teacher_epochs=1, distill_epochs=1)
    cfg["engine"] = {"dropout_prob": 0.3, "deadline_s": deadline_s}
    cfg["topology"]["devices"] = [*cfg["topology"]["devices"], UNREACHABLE]
    summary = run_experiment(parse_config(cfg), out=tmp_path / "run", progress=False)
    run = RunDir(tmp_path / "run")
    ledger = Ledger.from_csv(run.ledger_path)
    rows = run.read_metrics()
    assert len(rows) == summary["rounds"] == 2
    nodes = {f"client-{i}" for i in range(5)}
    seen: set[str] = set()
    for row in rows:
        events = [e for e in ledger if e.round == row["round"]]
        server = [e for e in events if e.side == "server"]
        device = [e for e in events if e.side == "device"]
        # the server's work comes first, end to end, then the device phase
        pre_s = sum(e.seconds for e in server)
        assert all(e.end_s <= pre_s * (1 + 1e-12) for e in server)
        assert min(e.at_s for e in device) == pytest.approx(pre_s, rel=1e-12)
        kinds = {n: {e.kind for e in device if e.node == n} for n in nodes}
        left = {}
        for node, k in kinds.items():
            if not k:
                left[node] = "outage"  # never received the artifact
            elif k == {"download"}:
                left[node] = "dropout"  # received it, never ran it
            else:
                up = [e for e in device if e.node == node and e.kind == "upload"]
                if up[0].end_s - pre_s > deadline_s:
                    left[node] = "straggler"  # billed, but reported after the deadline
        assert left["client-4"] == "outage"
        counts = {r: sum(1 for w in left.values() if w == r) for r in set(left.values())}
        assert row["dropped_reasons"] == " ".join(f"{r}:{n}" for r, n in sorted(counts.items()))
        assert row["dropped"] == len(left)
        assert row["participants"] == 5
        if "straggler" in left.values():
            expected = pre_s + deadline_s
        else:
            expected = max(e.end_s for e in device if e.node not in left)
        assert row["latency_s"] == pytest.approx(expected, rel=1e-12)
        seen |= set(left.values())
    assert seen == {"outage", "dropout", "straggler"}
    assert summary["round_latency_s"] == [r["latency_s"] for r in rows]
    assert summary["device_energy_j"] == pytest.approx(ledger.device_energy_j())
    assert summary["accuracy"] is not None
