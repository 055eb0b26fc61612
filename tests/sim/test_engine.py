from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import kill_in_round, reproducible, small_task

from tinylarge.config import parse_config
from tinylarge.errors import TinylargeError
from tinylarge.models.weights import get_weights, nbytes
from tinylarge.results.rundir import RunDir
from tinylarge.schemes.fedavg import FedAvg, FedAvgFamily
from tinylarge.sim.context import Context
from tinylarge.sim.engine import run_experiment
from tinylarge.sim.ledger import Ledger
from tinylarge.sim.rounds import sample


def test_ledger_bills_every_transfer_of_the_model(tmp_path: Path) -> None:
    cfg = parse_config(small_task())
    summary = run_experiment(cfg, out=tmp_path / "r", progress=False)
    ctx = Context(cfg)
    size = nbytes(get_weights(ctx.spec.build()))
    n = cfg.topology.num_devices * cfg.training.rounds
    assert summary["bytes_up"] == n * size
    assert summary["bytes_down"] == n * size
    ledger = Ledger.from_csv(tmp_path / "r" / "ledger.csv")
    assert ledger.device_energy_j() == pytest.approx(summary["device_energy_j"])
    # BLE is slower than Wi-Fi 6: the MCU uploads take longer for the same bytes
    ble = ledger.select(kind="upload", node="client-2")[0]
    wifi = ledger.select(kind="upload", node="client-0")[0]
    assert ble.bytes == wifi.bytes
    assert ble.seconds > wifi.seconds


def test_run_directory_contents(tmp_path: Path) -> None:
    cfg = parse_config(small_task())
    out = tmp_path / "run"
    run_experiment(cfg, out=out, progress=False)
    names = {p.name for p in out.iterdir()}
    assert {"config.yaml", "metrics.csv", "ledger.csv", "checkpoint.npz", "summary.json"} <= names
    summary = json.loads((out / "summary.json").read_text())
    for key in (
        "scheme",
        "dataset",
        "rounds",
        "seed",
        "accuracy",
        "large_accuracy",
        "round_latency_s",
        "total_latency_s",
        "device_energy_j",
        "bytes_up",
        "bytes_down",
        "fits",
        "peak_sram_bytes",
        "flash_bytes",
        "wall_time_s",
    ):
        assert key in summary, key
    assert summary["total_latency_s"] == pytest.approx(sum(summary["round_latency_s"]))
    lines = (out / "metrics.csv").read_text().strip().splitlines()
    assert len(lines) == 1 + cfg.training.rounds
    with pytest.raises(TinylargeError, match="already exists"):
        run_experiment(cfg, out=out, progress=False)


def test_resume_after_a_kill_reaches_the_same_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = parse_config(small_task(scheme={"name": "fedadam"}))
    full = run_experiment(cfg, out=tmp_path / "full", progress=False)

    kill_in_round(
        monkeypatch,
        FedAvgFamily,
        2,
        lambda: run_experiment(cfg, out=tmp_path / "killed", progress=False),
    )
    assert not (tmp_path / "killed" / "summary.json").exists()
    resumed = run_experiment(cfg, out=tmp_path / "killed", resume=True, progress=False)
    assert reproducible(resumed) == reproducible(full)


def test_resume_accepts_a_run_started_before_a_new_optional_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config.yaml written before ``training.target_accuracy`` existed compares by defaults;
    a real difference still refuses."""
    import yaml

    cfg = parse_config(small_task(training={"rounds": 3}))
    kill_in_round(
        monkeypatch, FedAvg, 2, lambda: run_experiment(cfg, out=tmp_path / "old", progress=False)
    )
    path = tmp_path / "old" / "config.yaml"
    saved = yaml.safe_load(path.read_text())
    del saved["training"]["target_accuracy"]
    path.write_text(yaml.safe_dump(saved, sort_keys=False))
    other = parse_config(small_task(training={"rounds": 3, "lr": 0.5}))
    with pytest.raises(TinylargeError, match="differs"):
        run_experiment(other, out=tmp_path / "old", resume=True, progress=False)
    summary = run_experiment(cfg, out=tmp_path / "old", resume=True, progress=False)
    assert summary["rounds"] == 3


def test_device_that_cannot_train_the_model_is_excluded_and_reported(tmp_path: Path) -> None:
    cfg = parse_config(
        small_task(
            model={"name": "mlp", "options": {"hidden": 2048}},
            topology={
                "server": {"profile": "l4"},
                "devices": [
                    {"profile": "rpi4", "count": 2, "link": "wifi6"},
                    {"profile": "nrf52840", "count": 2, "link": "ble-2m"},
                ],
            },
            training={"rounds": 1},
        )
    )
    summary = run_experiment(cfg, out=tmp_path / "r", progress=False)
    assert summary["fits"] == {"rpi4": True, "nrf52840": False}
    assert summary["excluded"]["nrf52840"]["count"] == 2
    assert "SRAM" in summary["excluded"]["nrf52840"]["reason"]
    ledger = Ledger.from_csv(tmp_path / "r" / "ledger.csv")
    assert not ledger.select(node="client-2")
    assert not ledger.select(node="client-3")


def test_model_that_fits_no_device_is_a_user_error(tmp_path: Path) -> None:
    cfg = parse_config(
        small_task(
            model={"name": "mlp", "options": {"hidden": 4096}},
            topology={"devices": [{"profile": "nrf52840", "count": 2, "link": "ble-2m"}]},
        )
    )
    with pytest.raises(TinylargeError, match="no device of the topology can train model 'mlp'"):
        run_experiment(cfg, out=tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


def test_deadline_drops_stragglers_and_caps_the_round(tmp_path: Path) -> None:
    base = run_experiment(parse_config(small_task()), out=tmp_path / "a", progress=False)
    slowest = max(base["round_latency_s"])
    cfg = parse_config(small_task(engine={"deadline_s": slowest / 2}))
    out = run_experiment(cfg, out=tmp_path / "b", progress=False)
    assert max(out["round_latency_s"]) < slowest
    rows = RunDir(tmp_path / "b").read_metrics()
    late = [r for r in rows if r["dropped"] > 0]
    assert late, "half the slowest round's time must drop someone"
    for r in late:  # a round with stragglers ends at the deadline (plus aggregation)
        assert slowest / 2 <= r["latency_s"] < slowest / 2 + 0.01


def test_dropouts_reduce_participation_deterministically(tmp_path: Path) -> None:
    cfg = parse_config(small_task(engine={"dropout_prob": 0.5}, training={"rounds": 6}))
    a = run_experiment(cfg, out=tmp_path / "a", progress=False)
    b = run_experiment(cfg, out=tmp_path / "b", progress=False)
    assert reproducible(a) == reproducible(b)
    full = cfg.topology.num_devices * cfg.training.rounds
    weights_bytes = a["bytes_down"] // full
    assert a["bytes_up"] < full * weights_bytes


def test_partial_participation_samples_a_fraction() -> None:
    cfg = parse_config(small_task(training={"fraction": 0.5}))
    ctx = Context(cfg)
    picks = [tuple(c.id for c in sample(ctx, r, ctx.clients)) for r in range(6)]
    assert all(len(p) == 2 for p in picks)
    assert len(set(picks)) > 1
    assert picks == [tuple(c.id for c in sample(ctx, r, ctx.clients)) for r in range(6)]
    assert np.all([len(c.indices) > 0 for c in ctx.clients])


def test_per_profile_names_every_link_its_groups_use(tmp_path: Path) -> None:
    """One profile in two groups on two links: summary.json's per_profile lists both, and
    its radio joules and bytes are the ledger's over both groups."""
    devices = [
        {"profile": "rpi4", "count": 2, "link": "wifi6"},
        {"profile": "rpi4", "count": 1, "link": "nr-sub6", "distance_m": 100},
        {"profile": "stm32h743", "count": 1, "link": "ble-2m"},
    ]
    cfg = small_task(training={"rounds": 1}, topology={"devices": devices})
    s = run_experiment(parse_config(cfg), out=tmp_path / "run", progress=False)
    rpi = s["per_profile"]["rpi4"]
    assert rpi["link"] == "wifi6, nr-sub6"
    assert rpi["devices"] == 3
    assert s["per_profile"]["stm32h743"]["link"] == "ble-2m"
    ledger = Ledger.from_csv(tmp_path / "run" / "ledger.csv")
    assert rpi["bytes_up"] == sum(e.bytes for e in ledger.select(kind="upload", profile="rpi4"))
    assert {e.link for e in ledger.select(kind="upload", profile="rpi4")} == {"wifi6", "nr-sub6"}
