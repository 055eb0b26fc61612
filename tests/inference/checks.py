"""Shared checks of the inference-mode tests: per-sample file, ledger and clock agree with the
summary, and devices that did not serve are reported."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import small_task

from tinylarge.config import ConfigError, ExperimentConfig, parse_config
from tinylarge.results.rundir import RunDir
from tinylarge.schemes.options import scheme_options
from tinylarge.sim.ledger import Ledger

FIGURE_KEYS = {
    "samples",
    "accuracy",
    "offload_fraction",
    "latency_mean_s",
    "latency_p50_s",
    "latency_p95_s",
    "device_energy_per_inference_j",
    "device_energy_j",
    "bytes_up",
    "bytes_down",
    "bytes_on_air_per_inference",
    "backhaul_bytes",
}


#: A device far beyond Bluetooth's range: its deployment download is in outage every round.
UNREACHABLE = {"profile": "rpi4", "count": 1, "link": "ble-2m", "distance_m": 5000.0}


def unserved_config(scheme: str, options: dict[str, Any]) -> ExperimentConfig:
    """The small task with one device in permanent outage and devices dropping out (p = 0.3)."""
    cfg = small_task(
        scheme={"name": scheme, "options": options},
        training={"rounds": 2},
        engine={"dropout_prob": 0.3},
    )
    cfg["topology"]["devices"] = [*cfg["topology"]["devices"], UNREACHABLE]
    return parse_config(cfg)


def check_clock(run: Path, summary: dict[str, Any]) -> None:
    """Each round's latency is when its last event ends on the round clock (``at_s`` plus
    ``seconds``), over the server's events and those of the devices that served."""
    ledger = Ledger.from_csv(run / "ledger.csv")
    left = RunDir(run).read_dropped()
    for rnd, latency in enumerate(summary["round_latency_s"]):
        gone = {node for r, node, _ in left if r == rnd}
        events = [e for e in ledger.select(round=rnd) if e.side == "server" or e.node not in gone]
        assert latency == pytest.approx(max(e.at_s + e.seconds for e in events), rel=1e-12)


def check_unserved(run: Path, summary: dict[str, Any], *, total: int) -> None:
    """The final round's devices that did not serve, by reason, are the round clock's; their
    requests are counted as unserved, and they billed nothing but a deployment download."""
    last = summary["rounds"] - 1
    left = [(node, why) for r, node, why in RunDir(run).read_dropped() if r == last]
    expected = {
        why: sorted(int(node.removeprefix("client-")) for node, w in left if w == why)
        for why in ("outage", "dropout")
    }
    assert summary["not_served"] == expected
    unserved = summary["inference"]["unserved_requests"]
    assert set(unserved) == {"outage", "dropout"}
    assert summary["inference"]["samples"] + sum(unserved.values()) == total
    for why, ids in expected.items():
        assert (unserved[why] > 0) == bool(ids)
    ledger = Ledger.from_csv(run / "ledger.csv")
    for node, why in left:
        billed = {(e.kind, e.what) for e in ledger.select(round=last, node=node)}
        # in outage nothing arrived; a dropout got its deployment (if it has one), no more
        assert billed <= (set() if why == "outage" else {("download", "deploy")}), (node, why)
    with (run / "inference.csv").open() as fh:
        served = {f"client-{r['device']}" for r in csv.DictReader(fh)}
    assert not served & {node for node, _ in left}


def check_run(run: Path, summary: dict[str, Any]) -> list[dict[str, str]]:
    """The figures of the final round equal the ledger's events and the per-sample file."""
    inf = summary["inference"]
    assert set(inf) == FIGURE_KEYS | {"unserved_requests"}
    assert set(summary["baselines"]) == {"device_only", "server_only"}
    for figs in summary["baselines"].values():
        assert set(figs) == FIGURE_KEYS
        assert figs["samples"] == inf["samples"]
    for group in summary["by_group"].values():
        assert set(group) == {"mode", "device_only", "server_only"}
    assert sum(g["mode"]["samples"] for g in summary["by_group"].values()) == inf["samples"]

    last = summary["rounds"] - 1
    ledger = Ledger.from_csv(run / "ledger.csv")
    serving = [
        e
        for e in ledger.select(round=last)
        if e.what not in ("deploy",) and not e.what.startswith("train-") and e.what != "calibrate"
    ]
    device_j = math.fsum(e.joules for e in serving if e.side == "device")
    assert device_j == pytest.approx(inf["device_energy_j"], rel=1e-9, abs=1e-15)
    up = sum(e.bytes for e in serving if e.side == "device" and e.kind == "upload")
    down = sum(e.bytes for e in serving if e.side == "device" and e.kind == "download")
    assert (up, down) == (inf["bytes_up"], inf["bytes_down"])
    backhaul = sum(e.bytes for e in serving if e.side == "server" and e.kind != "compute")
    assert backhaul == inf["backhaul_bytes"]
    # the whole run's totals are the ledger's, and its rounds' latencies the clock's
    assert summary["device_energy_j"] == pytest.approx(ledger.device_energy_j())
    assert summary["bytes_up"] == ledger.bytes_up()
    check_clock(run, summary)

    with (run / "inference.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == inf["samples"]
    assert all(int(r["round"]) == last for r in rows)
    n = len(rows)
    assert sum(r["correct"] == "True" for r in rows) / n == pytest.approx(inf["accuracy"])
    assert sum(r["offloaded"] == "True" for r in rows) / n == pytest.approx(inf["offload_fraction"])
    assert math.fsum(float(r["device_energy_j"]) for r in rows) == pytest.approx(
        inf["device_energy_j"]
    )
    assert math.fsum(float(r["latency_s"]) for r in rows) / n == pytest.approx(
        inf["latency_mean_s"]
    )
    assert sum(int(r["bytes_up"]) for r in rows) == inf["bytes_up"]
    # device-only never leaves the device
    dev = summary["baselines"]["device_only"]
    assert dev["bytes_up"] == dev["bytes_down"] == 0
    assert dev["offload_fraction"] == 0.0
    return rows


#: Settings an inference mode cannot honour, and the field its one-line refusal names.
REFUSED: tuple[tuple[dict[str, Any], str], ...] = (
    ({"engine": {"deadline_s": 1.0}}, "engine.deadline_s"),
    ({"training": {"rounds": 2, "fraction": 0.5}}, "training.fraction"),
    ({"training": {"rounds": 2, "min_clients": 2}}, "training.min_clients"),
)


def check_refusals(scheme: str, options: dict[str, Any]) -> None:
    """``scheme_options`` (what ``tinylarge validate`` runs) refuses each setting the mode
    cannot honour with one line naming the field."""
    for over, field in REFUSED:
        cfg = parse_config(small_task(scheme={"name": scheme, "options": options}, **over))
        with pytest.raises(ConfigError) as exc:
            scheme_options(cfg)
        lines = str(exc.value).splitlines()
        assert len(lines) == 1, lines
        assert field in lines[0], lines
    scheme_options(parse_config(small_task(scheme={"name": scheme, "options": options})))
