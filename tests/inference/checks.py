"""Shared checks of the inference-mode tests: per-sample file and ledger agree with the summary."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytest

from tinylarge.sim.ledger import Ledger

FIGURE_KEYS = {
    "samples",
    "accuracy",
    "offload_fraction",
    "latency_mean_s",
    "latency_p95_s",
    "device_energy_per_inference_j",
    "device_energy_j",
    "bytes_up",
    "bytes_down",
    "bytes_on_air_per_inference",
    "backhaul_bytes",
}


def check_run(run: Path, summary: dict[str, Any]) -> list[dict[str, str]]:
    """The figures of the final round equal the ledger's events and the per-sample file."""
    inf = summary["inference"]
    assert set(inf) == FIGURE_KEYS
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
    # the whole run's totals are the ledger's
    assert summary["device_energy_j"] == pytest.approx(ledger.device_energy_j())
    assert summary["bytes_up"] == ledger.bytes_up()

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
