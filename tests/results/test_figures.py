"""Each scheme's own figures (results/figures.py): hand-built summaries land in the right
cells with the right units, and a real cascade run shows them in its report and in
``tinylarge run``'s printed summary."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import small_task

from tinylarge.cli.app import main
from tinylarge.results.figures import scheme_sections
from tinylarge.sim.ledger import Event, Ledger


def _figures(acc: float, offload: float, p50: float, p95: float, j: float) -> dict[str, Any]:
    return {
        "samples": 10,
        "accuracy": acc,
        "offload_fraction": offload,
        "latency_mean_s": (p50 + p95) / 2,
        "latency_p50_s": p50,
        "latency_p95_s": p95,
        "device_energy_per_inference_j": j,
        "bytes_on_air_per_inference": 100.0 * offload,
    }


def test_serving_figures_put_the_scheme_beside_its_baselines_in_ms_and_mj() -> None:
    s = {
        "scheme": "cascade",
        "inference": {
            **_figures(0.9, 0.25, 0.002, 0.040, 0.003),
            "unserved_requests": {"outage": 3, "dropout": 0},
        },
        "baselines": {
            "device_only": _figures(0.8, 0.0, 0.001, 0.001, 0.001),
            "server_only": _figures(0.95, 1.0, 0.030, 0.050, 0.009),
        },
        "by_group": {"stm32h743/ble-2m": {"mode": _figures(0.9, 0.2, 0.004, 0.05, 0.002)}},
    }
    main_table, groups = scheme_sections(s)
    assert [r[0] for r in main_table.rows] == ["cascade", "device only", "server only"]
    assert main_table.rows[0][1:6] == (0.9, 0.25, 2.0, 40.0, 21.0)  # accuracy, offload, ms
    assert main_table.rows[0][6] == pytest.approx(3.0)  # mJ per inference
    assert main_table.rows[2][7] == 100.0  # bytes on air per inference
    assert "not served: 3 outage" in main_table.note
    assert groups.rows[0] == pytest.approx(
        ("stm32h743/ble-2m", "cascade", 0.9, 0.2, 4.0, 50.0, 27.0, 2.0, 20.0)
    )


def _event(profile: str, what: str, nbytes: int, rnd: int) -> Event:
    kind = "upload" if what == "activations" else "download"
    return Event(
        round=rnd, node="client-0", side="device", kind=kind, what=what, profile=profile,
        seconds=0.1, joules=0.01, bytes=nbytes,
    )  # fmt: skip


def test_split_figures_take_smashed_bytes_per_round_from_the_ledger() -> None:
    s = {
        "scheme": "fsl",
        "rounds": 2,
        "variant": "v1",
        "compression": "fp32",
        "objective": "latency",
        "cuts": {
            "nrf52840": {"cut": 3, "layer": "2:MaxPool2d", "fits": True, "params": 80,
                         "train_memory_bytes": 1000, "sram_bytes": 262144, "leakage": 0.9},
            "esp32": {"cut": None, "fits": False, "reason": "no cut fits 520 KB"},
        },
    }  # fmt: skip
    ledger = Ledger(
        [
            _event("nrf52840", "activations", 700, 0),
            _event("nrf52840", "activations", 500, 1),
            _event("nrf52840", "gradients", 300, 1),
            _event("nrf52840", "client-model", 9999, 1),  # not smashed data
        ]
    )
    (sec,) = scheme_sections(s, (), ledger)
    fits, misfit = sec.rows
    assert fits == ("nrf52840", 3, "2:MaxPool2d", 80, 1000, 262144, 600, 150, 0.9)
    assert misfit[:3] == ("esp32", None, "no cut fits 520 KB")
    assert "(v1, fp32)" in sec.title


def test_transfer_security_and_privacy_sections() -> None:
    s = {
        "scheme": "fedgkt",
        "accuracy": 0.5,
        "accuracy_by_profile": {"rpi4": 0.7, "stm32h743": 0.6},
        "large_accuracy_by_profile": {"rpi4": 0.8, "stm32h743": 0.75},
        "device_models": {"rpi4": {"model": "cnn-tiny", "train_memory_bytes": 5}},
        "server_model": {"model": "cnn"},
        "attack": "sign-flip",
        "defense": "multi-krum",
        "malicious": 2,
        "clean_accuracy": 0.9,
        "accuracy_drop": 0.4,
        "backdoor_success": 0.07,
        "delta": 1e-5,
        "accountant": "rdp",
    }
    rows = [{"round": 0, "epsilon": 1.5, "accuracy": 0.4}, {"round": 1, "epsilon": None}]
    transfer, privacy, attack = scheme_sections(s, rows)
    assert transfer.rows == (
        ("rpi4", "cnn-tiny", 5, 0.7, 0.8),
        ("stm32h743", None, None, 0.6, 0.75),
    )
    assert dict(attack.rows)["accuracy lost to the attack"] == 0.4
    assert dict(attack.rows)["backdoor success rate"] == 0.07
    assert privacy.rows == ((1, 1.5, 0.4),)


def test_a_plain_fedavg_run_has_no_scheme_sections() -> None:
    assert scheme_sections({"scheme": "fedavg", "accuracy": 0.9, "attack": None}) == []


def test_a_cascade_run_prints_and_reports_its_own_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    cfg = small_task(
        scheme={"name": "cascade", "options": {"target": "offload", "target_value": 0.3}},
        training={"rounds": 1, "lr": 0.1, "batch_size": 16},
    )
    path = tmp_path / "cascade.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    s = json.loads((out / "summary.json").read_text())
    with (out / "inference.csv").open() as fh:
        latencies = sorted(float(r["latency_s"]) for r in csv.DictReader(fh))
    p50 = s["inference"]["latency_p50_s"]
    assert latencies[0] <= p50 <= latencies[-1]
    assert "Collaborative inference against its baselines" in printed
    assert "device only" in printed
    assert "server only" in printed
    page = (out / "report.html").read_text()
    assert "Collaborative inference against its baselines" in page
    assert f"{1e3 * p50:.4g}" in page  # the median latency in ms
    assert "Thresholds chosen on the validation split" in page


def test_async_hierarchy_and_secure_aggregation_sections() -> None:
    s = {
        "scheme": "fedbuff",
        "server_updates": 12,
        "concurrency": 4,
        "staleness_mean": 1.5,
        "staleness_p95": 3.0,
        "staleness_max": 4,
        "stale_dropped": 1,
        "kappa2": 2,
        "edges": {"edge-a": {"profile": "l4", "backhaul": "fibre", "devices": 3,
                             "backhaul_bytes_up": 10, "backhaul_bytes_down": 20, "compute_s": 0.5}},
        "privacy_device_energy_j": 0.25,
        "privacy_device_seconds": 2.0,
        "privacy_bytes": 4096,
    }  # fmt: skip
    rows = [
        {"round": 0, "secagg_survivors": 7, "secagg_aborted": None},
        {"round": 1, "secagg_survivors": 0, "secagg_aborted": "below threshold"},
    ]
    stale, edges, secagg = scheme_sections(s, rows)
    assert stale.rows == ((12, 4, 1.5, 3.0, 4, 1),)
    assert edges.rows == (("edge-a", "l4", "fibre", 3, 10, 20, 0.5),)
    assert "kappa2 = 2" in edges.title
    assert secagg.rows == ((1, 7, ""), (2, 0, "below threshold"))
    assert "4,096 bytes" in secagg.note
