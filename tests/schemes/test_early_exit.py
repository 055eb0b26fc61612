"""The early-exit inference mode (BranchyNet exits on device, edge and cloud) on the small task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.conftest import reproducible, resume_after_kill, small_task
from tests.inference.checks import (
    check_refusals,
    check_run,
    check_unserved,
    unserved_config,
)

from tinylarge.config import ConfigError, ExperimentConfig, parse_config
from tinylarge.errors import TinylargeError
from tinylarge.schemes.early_exit import EarlyExit
from tinylarge.schemes.options import scheme_options
from tinylarge.sim.engine import run_experiment
from tinylarge.sim.ledger import Ledger


def config(
    *, rounds: int = 2, topology: Any = None, training: Any = None, **options: Any
) -> ExperimentConfig:
    over: dict[str, Any] = {
        "scheme": {
            "name": "early-exit",
            "options": {"backbone": "mlp", "widths": [16, 64, 128], **options},
        },
        "training": {"rounds": rounds, "lr": 0.1, "batch_size": 16, **(training or {})},
    }
    if topology is not None:
        over["topology"] = topology
    return parse_config(small_task(**over))


def run(
    tmp_path: Path, name: str, *, rounds: int = 2, topology: Any = None, **options: Any
) -> dict[str, Any]:
    cfg = config(rounds=rounds, topology=topology, **options)
    return run_experiment(cfg, out=tmp_path / name, progress=False)


def test_exits_on_three_tiers_agree_with_ledger(tmp_path: Path) -> None:
    s = run(tmp_path, "a", threshold=0.9)
    rows = check_run(tmp_path / "a", s)
    exits = {r["exit"] for r in rows}
    assert "0" in exits
    assert len(exits) >= 2
    assert s["placement"] == ["device", "edge", "cloud"]
    assert len(s["temperatures"]) == 3
    assert s["exit_macs"][0] < s["exit_macs"][1] < s["exit_macs"][2]
    # leaving the device sends the first stage's 16 features, not the 64-pixel input
    offloaded = [r for r in rows if r["offloaded"] == "True"]
    assert offloaded
    assert all(int(r["bytes_up"]) == 4 * 16 for r in offloaded)


def test_everything_to_the_cloud_uses_the_backhaul(tmp_path: Path) -> None:
    s = run(tmp_path, "cloud", rounds=1, threshold=1.0)  # no exit is that sure
    check_run(tmp_path / "cloud", s)
    assert s["inference"]["offload_fraction"] == 1.0
    assert s["inference"]["backhaul_bytes"] == 450 * (4 * 64 + 40)
    ledger = Ledger.from_csv(tmp_path / "cloud" / "ledger.csv")
    assert ledger.select(node="cloud", kind="compute")
    assert {e.link for e in ledger.select(node="server", kind="upload")} == {"ethernet"}
    # the final exit of the whole net at the edge is the server-only baseline
    assert s["inference"]["accuracy"] == s["baselines"]["server_only"]["accuracy"]


def test_device_stage_that_does_not_fit_is_excluded(tmp_path: Path) -> None:
    topology = {
        "server": {"profile": "jetson-orin-nano"},
        "devices": [
            {"profile": "rpi4", "count": 1, "link": "wifi6"},
            {"profile": "nrf52840", "count": 1, "link": "ble-2m"},
        ],
    }
    s = run(
        tmp_path,
        "fit",
        rounds=1,
        topology=topology,
        widths=[8192, 64, 64],
        placement=["device", "edge", "edge"],
    )
    assert s["fits"] == {"rpi4": True, "nrf52840": False}
    assert "flash" in s["excluded"]["nrf52840"]["reason"]
    assert s["serving_devices"] == 1
    assert s["inference"]["samples"] == 450
    assert not Ledger.from_csv(tmp_path / "fit" / "ledger.csv").select(node="client-1")


def test_no_device_that_fits_stops_the_run_in_one_line(tmp_path: Path) -> None:
    topology = {
        "server": {"profile": "jetson-orin-nano"},
        "devices": [{"profile": "nrf52840", "count": 2, "link": "ble-2m"}],
    }
    with pytest.raises(TinylargeError) as exc:
        run(tmp_path, "none", rounds=1, topology=topology, widths=[8192, 64, 64])
    msg = str(exc.value)
    assert len(msg.splitlines()) == 1
    assert msg.startswith("no device of the topology can run the device stages")
    assert "nrf52840: " in msg
    assert "flash" in msg
    assert not (tmp_path / "none" / "summary.json").exists()


def test_placement_errors() -> None:
    with pytest.raises(ConfigError, match="placement"):
        scheme_options(config(placement=["device", "fog", "cloud"]))
    with pytest.raises(TinylargeError, match="tiers for 3"):
        run(Path("/nonexistent"), "x", rounds=1, placement=["device", "edge"])


def test_memory_figures_describe_the_device_stages(tmp_path: Path) -> None:
    s = run(tmp_path, "mem", rounds=1, placement=["device", "device", "edge"])
    # two mlp stages on the device: 64->16 and 16->64->64 with their exits, fp32
    stage_params = (64 * 16 + 16) + (16 * 10 + 10) + (16 * 64 + 64 + 64 * 64 + 64) + (64 * 10 + 10)
    assert s["flash_bytes"] > 4 * stage_params
    assert s["flash_bytes"] < 4 * stage_params + 8192
    assert 0 < s["peak_sram_bytes"] < 4 * (64 + 64 + 64)


def test_settings_it_cannot_honour_are_refused() -> None:
    check_refusals("early-exit", {"threshold": 0.9})


def test_devices_in_outage_or_dropping_out_do_not_serve(tmp_path: Path) -> None:
    cfg = unserved_config(
        "early-exit", {"threshold": 0.9, "backbone": "mlp", "widths": [16, 64, 128]}
    )
    s = run_experiment(cfg, out=tmp_path / "u", progress=False)
    check_run(tmp_path / "u", s)
    check_unserved(tmp_path / "u", s, total=450)
    assert s["not_served"]["outage"] == [4]
    assert s["not_served"]["dropout"]


def test_resume_after_a_kill_reaches_the_same_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Adam: the optimizer state (moments, step counts) must survive the checkpoint too
    cfg = config(
        rounds=3,
        training={"optimizer": "adam", "lr": 0.01},
        target="offload",
        target_value=0.3,
        adapt=True,
    )
    full = run_experiment(cfg, out=tmp_path / "full", progress=False)
    resumed = resume_after_kill(monkeypatch, EarlyExit, 2, cfg, tmp_path / "killed")
    assert reproducible(resumed) == reproducible(full)
