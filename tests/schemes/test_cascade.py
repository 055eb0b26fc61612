"""The cascade inference mode on the small task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.conftest import kill_in_round, reproducible, small_task
from tests.inference.checks import (
    check_refusals,
    check_run,
    check_unserved,
    unserved_config,
)

from tinylarge.config import ConfigError, parse_config
from tinylarge.schemes.cascade import Cascade
from tinylarge.schemes.options import scheme_options
from tinylarge.sim.engine import run_experiment
from tinylarge.sim.ledger import Ledger


def run(tmp_path: Path, name: str, rounds: int = 2, **options: Any) -> dict[str, Any]:
    cfg = parse_config(
        small_task(
            scheme={"name": "cascade", "options": options},
            training={"rounds": rounds, "lr": 0.1, "batch_size": 16},
        )
    )
    return run_experiment(cfg, out=tmp_path / name, progress=False)


def test_cascade_figures_agree_with_ledger_and_samples(tmp_path: Path) -> None:
    s = run(tmp_path, "a", target="offload", target_value=0.3)
    rows = check_run(tmp_path / "a", s)
    inf = s["inference"]
    assert 0.0 < inf["offload_fraction"] <= 0.45
    assert inf["samples"] == 450  # the digits test set, dealt among the devices
    # offloaded requests send the input (8x8 fp32) and get the logits back
    assert inf["bytes_up"] == 256 * sum(r["offloaded"] == "True" for r in rows)
    assert s["large_accuracy"] == s["baselines"]["server_only"]["accuracy"]
    assert s["accuracy"] == inf["accuracy"]
    assert s["threshold_choice"]["rpi4/wifi6@15m"]["target"] == "offload"
    assert len(s["temperatures"]) == 2
    ledger = Ledger.from_csv(tmp_path / "a" / "ledger.csv")
    assert ledger.select(what="train-large", node="server")
    assert ledger.select(what="infer-large", node="server")
    assert ledger.select(what="deploy", kind="download")


def test_threshold_extremes_reproduce_the_baselines(tmp_path: Path) -> None:
    local = run(tmp_path, "local", rounds=1, threshold=0.0)
    unserved = local["inference"].pop("unserved_requests")
    assert unserved == {"outage": 0, "dropout": 0}
    assert local["inference"] == local["baselines"]["device_only"]
    remote = run(tmp_path, "remote", rounds=1, threshold=1.0)  # no answer is that sure
    inf, srv, dev = (
        remote["inference"],
        remote["baselines"]["server_only"],
        remote["baselines"]["device_only"],
    )
    assert inf["offload_fraction"] == 1.0
    assert inf["accuracy"] == srv["accuracy"]
    assert (inf["bytes_up"], inf["bytes_down"]) == (srv["bytes_up"], srv["bytes_down"])
    # the cascade always runs the tiny model first
    assert inf["device_energy_j"] == pytest.approx(srv["device_energy_j"] + dev["device_energy_j"])
    assert inf["latency_mean_s"] == pytest.approx(srv["latency_mean_s"] + dev["latency_mean_s"])


def test_online_adaptation_and_entropy_confidence(tmp_path: Path) -> None:
    s = run(
        tmp_path,
        "adapt",
        rounds=1,
        target="offload",
        target_value=0.2,
        adapt=True,
        adapt_rate=0.05,
        confidence="entropy",
    )
    assert s["thresholds"] != s["final_thresholds"]
    # the online update holds the offload fraction chosen on the validation split
    chosen = [c["offload_fraction"] for c in s["threshold_choice"].values()]
    assert all(c <= 0.2 for c in chosen)
    assert s["inference"]["offload_fraction"] == pytest.approx(sum(chosen) / len(chosen), abs=0.05)


def test_large_model_options_and_errors(tmp_path: Path) -> None:
    s = run(tmp_path, "cnn", rounds=1, large_model="cnn-tiny", target="offload", target_value=0.3)
    assert s["large_model"] == "cnn-tiny"
    assert s["large_macs"] > s["tiny_macs"]
    with pytest.raises(ConfigError, match=r"scheme\.options\.target"):
        scheme_options(
            parse_config(small_task(scheme={"name": "cascade", "options": {"target": "speed"}}))
        )
    with pytest.raises(ConfigError, match="unknown model"):
        scheme_options(
            parse_config(small_task(scheme={"name": "cascade", "options": {"large_model": "gpt"}}))
        )


def test_resume_after_a_kill_reaches_the_same_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = run(tmp_path, "full", rounds=3, target="offload", target_value=0.3, adapt=True)
    kill_in_round(
        monkeypatch,
        Cascade,
        2,
        lambda: run(tmp_path, "killed", rounds=3, target="offload", target_value=0.3, adapt=True),
    )
    cfg = parse_config(
        small_task(
            scheme={
                "name": "cascade",
                "options": {"target": "offload", "target_value": 0.3, "adapt": True},
            },
            training={"rounds": 3, "lr": 0.1, "batch_size": 16},
        )
    )
    resumed = run_experiment(cfg, out=tmp_path / "killed", resume=True, progress=False)
    assert reproducible(resumed) == reproducible(full)


def test_fading_draws_per_request_and_stays_consistent(tmp_path: Path) -> None:
    cfg = parse_config(
        small_task(
            scheme={"name": "cascade", "options": {"threshold": 0.95}},
            training={"rounds": 1},
            engine={"fading": True, "shadowing": True},
        )
    )
    s = run_experiment(cfg, out=tmp_path / "fade", progress=False)
    check_run(tmp_path / "fade", s)
    again = run_experiment(cfg, out=tmp_path / "fade2", progress=False)
    assert reproducible(again) == reproducible(s)


def test_settings_it_cannot_honour_are_refused() -> None:
    check_refusals("cascade", {"threshold": 0.9})


def test_devices_in_outage_or_dropping_out_do_not_serve(tmp_path: Path) -> None:
    cfg = unserved_config("cascade", {"threshold": 0.9})
    s = run_experiment(cfg, out=tmp_path / "u", progress=False)
    check_run(tmp_path / "u", s)
    check_unserved(tmp_path / "u", s, total=450)
    assert s["not_served"]["outage"] == [4]  # the unreachable device, every round
    assert s["not_served"]["dropout"]  # and one that dropped out after its download
    ledger = Ledger.from_csv(tmp_path / "u" / "ledger.csv")
    for cid in s["not_served"]["dropout"]:
        events = ledger.select(round=1, node=f"client-{cid}")
        assert [(e.kind, e.what) for e in events] == [("download", "deploy")]
    assert s["serving_devices"] == 5
