"""Moving devices in a run: static is today's run, a parked device is a static one, and a
device driving away from its cell ends in outage where the link budget says."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import reproducible, resume_after_kill, small_task

from tinylarge.cli.app import main
from tinylarge.config import parse_config
from tinylarge.results.report import build_report
from tinylarge.results.rundir import RunDir
from tinylarge.schemes.fedavg import FedAvgFamily
from tinylarge.sim.engine import run_experiment
from tinylarge.sim.ledger import Ledger


def run(tmp_path: Path, name: str, cfg: dict[str, Any]) -> tuple[dict[str, Any], Path]:
    out = tmp_path / name
    summary = run_experiment(parse_config(cfg), out=out, progress=False)
    summary.pop("wall_time_s")
    return summary, out


def fleet(mobility: Any = None, **group: Any) -> dict[str, Any]:
    """A small task whose first group may move; fading, shadowing and dropouts on."""
    first = {"profile": "rpi4", "count": 2, "link": "nr-sub6", **group}
    if mobility is not None:
        first["mobility"] = mobility
    return small_task(
        topology={
            "server": {"profile": "jetson-orin-nano"},
            "devices": [first, {"profile": "stm32h743", "count": 2, "link": "ble-2m"}],
        },
        training={"rounds": 3, "local_epochs": 1, "batch_size": 16, "lr": 0.1},
        engine={"fading": True, "shadowing": True, "dropout_prob": 0.2, "eval_every": 100},
    )


def test_mobility_static_is_todays_run_number_for_number(tmp_path: Path) -> None:
    plain, a = run(tmp_path, "plain", fleet(distance_m=400.0))
    static, b = run(tmp_path, "static", fleet("static", distance_m=400.0))
    spelled, c = run(tmp_path, "spelled", fleet({"model": "static"}, distance_m=400.0))
    assert plain == static == spelled
    assert "handovers" not in plain
    for name in ("metrics.csv", "ledger.csv", "dropped.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes() == (c / name).read_bytes()
    events = Ledger.from_csv(a / "ledger.csv").events
    assert all(e.distance_m == 0 and e.rate_bps == 0 and not e.outage for e in events)


def test_a_parked_device_costs_what_a_static_one_does(tmp_path: Path) -> None:
    # without fading or shadowing and in the preset's LOS state, a device parked 300 m
    # from its cell is the static device at distance_m 300: same seconds, joules, bytes
    def quiet(cfg: dict[str, Any]) -> dict[str, Any]:
        cfg["engine"] = {"eval_every": 100}
        return cfg

    static, _ = run(tmp_path, "static", quiet(fleet(distance_m=300.0)))
    parked, out = run(
        tmp_path,
        "parked",
        quiet(
            fleet({"model": "route", "start_m": [300, 0], "heading_deg": 0,
                   "speed_m_s": 0, "los": "preset"})
        ),
    )  # fmt: skip
    assert parked.pop("handovers") == 0
    assert parked.pop("outage_transfers") == 0
    assert parked == static
    moved = [e for e in Ledger.from_csv(out / "ledger.csv") if e.kind != "compute"]
    first_group = [e for e in moved if e.node in ("client-0", "client-1")]
    assert first_group
    assert all(e.distance_m == 300.0 and e.cell == "cell-0" for e in first_group)


def test_driving_away_the_device_ends_in_outage_at_the_distance_the_budget_predicts(
    tmp_path: Path,
) -> None:
    # nr-sub6 uplink, TR 38.901 UMa NLOS (the preset's state): PL <= 23 + 8 + 89 + 10 = 130 dB
    # (tests/network/test_mobility.py works it out), so 13.54 + 39.08 log10(d_3D)
    # + 20 log10(3.5) = 130 gives d_3D, and d_2D = sqrt(d_3D^2 - 23.5^2) = 502.4 m
    d3 = 10 ** ((130.0 - 13.54 - 20 * math.log10(3.5)) / 39.08)
    d_star = math.sqrt(d3**2 - 23.5**2)
    car = {"model": "route", "start_m": [455, 0], "heading_deg": 0, "speed_m_s": 20,
           "los": "preset"}  # fmt: skip
    cfg = small_task(
        topology={
            "server": {"profile": "jetson-orin-nano"},
            "devices": [{"profile": "stm32h743", "link": "nr-sub6", "mobility": car}],
        },
        training={"rounds": 10, "local_epochs": 1, "batch_size": 16, "lr": 0.1},
        engine={"deadline_s": 2.0, "eval_every": 100},
    )
    summary, out = run(tmp_path, "car", cfg)
    ups = [e for e in Ledger.from_csv(out / "ledger.csv") if e.kind == "upload"]
    sent = [e for e in ups if not e.outage]
    lost = [e for e in ups if e.outage]
    assert sent
    assert lost
    assert summary["outage_transfers"] == len(lost)
    # the rate falls as the distance grows, then the uplink is lost for good
    assert all(a.distance_m < b.distance_m for a, b in itertools.pairwise(ups))
    assert all(a.rate_bps > b.rate_bps for a, b in itertools.pairwise(sent))
    assert max(e.round for e in sent) < min(e.round for e in lost)
    # the outage begins at d* within one step (the distance between two uploads)
    step = max(b.distance_m - a.distance_m for a, b in itertools.pairwise(sent))
    assert sent[-1].distance_m <= d_star <= lost[0].distance_m <= d_star + step
    assert all(e.bytes == 0 and e.seconds == 0 and e.joules == 0 for e in lost)
    # a round that lost its device lasts the deadline: the car keeps driving
    rows = RunDir(out).read_metrics()
    assert [r["latency_s"] for r in rows if r["dropped_reasons"] == "outage:1"] == [2.0] * len(
        {e.round for e in lost}
    )
    report = build_report(out).read_text()
    assert "Fleet over time" in report


def test_validate_refuses_a_bad_trace_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "drive.csv"
    trace.write_text("t_s,x_m,y_m\n0,10,0\n5,abc,0\n")
    cfg = fleet({"model": "trace", "file": str(trace)})
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    assert main(["validate", str(path)]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1
    assert "line 3: 'abc' is not a number" in err[0]
    trace.write_text("t_s,x_m,y_m\n0,10,0\n5,60,0\n")
    assert main(["validate", str(path)]) == 0


@pytest.mark.parametrize(
    ("scheme", "options"),
    [("fedavg", {}), ("fsl", {"variant": "v1"}), ("fedbuff", {"concurrency": 3, "buffer_size": 2})],
)
def test_every_transfer_sees_the_device_where_it_is_when_the_transfer_starts(
    tmp_path: Path, scheme: str, options: dict[str, Any]
) -> None:
    # a device on a straight road away from the cell at the origin is at 200 + 15 t metres
    # at simulated time t: each billed transfer's distance must be that at its start (the
    # synchronous clock, split learning's per-batch streams, the asynchronous clock)
    road = {"model": "route", "start_m": [200, 0], "heading_deg": 0, "speed_m_s": 15,
            "los": "preset"}  # fmt: skip
    cfg = small_task(
        topology={
            "server": {"profile": "jetson-orin-nano"},
            "devices": [
                {"profile": "rpi4", "count": 2, "link": "nr-sub6", "mobility": road},
                {"profile": "rpi4", "count": 2, "link": "wifi6"},
            ],
        },
        scheme={"name": scheme, "options": options},
        training={"rounds": 3, "local_epochs": 1, "batch_size": 16, "lr": 0.1},
        engine={"eval_every": 100},
    )
    _, out = run(tmp_path, scheme, cfg)
    rows = RunDir(out).read_metrics()
    start = {int(r["round"]): r["clock_s"] - r["latency_s"] for r in rows}
    moved = [e for e in Ledger.from_csv(out / "ledger.csv") if e.cell]
    assert moved
    assert {e.node for e in moved} <= {"client-0", "client-1"}  # the moving group's
    assert {e.kind for e in moved} == {"upload", "download"}
    for e in moved:
        t = start[e.round] + e.at_s
        assert e.distance_m == pytest.approx(200.0 + 15.0 * t, abs=1e-6), (e, t)
        assert e.rate_bps > 0
    assert max(e.distance_m for e in moved) > min(e.distance_m for e in moved)


def test_a_moving_fleet_killed_mid_run_resumes_to_the_same_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # random waypoints between two cells, LOS drawn, fading, shadowing and a deadline: the
    # positions, LOS states and handovers depend only on (seed, device) and simulated time
    walk = {"model": "random_waypoint", "area_m": [0, 0, 200, 100], "speed_m_s": [100, 200],
            "pause_s": 1}  # fmt: skip
    cfg = small_task(
        topology={
            "server": {"profile": "jetson-orin-nano"},
            "cells": [{"name": "a", "x_m": 0, "y_m": 0}, {"name": "b", "x_m": 200, "y_m": 0}],
            "handover": {"hysteresis_db": 1, "period_s": 0.05},
            "devices": [
                {"profile": "stm32h743", "count": 3, "link": "nr-sub6", "mobility": walk},
                {"profile": "rpi4", "count": 1, "link": "wifi6"},
            ],
        },
        training={"rounds": 4, "local_epochs": 3, "batch_size": 16, "lr": 0.1},
        engine={"fading": True, "shadowing": True, "deadline_s": 1.0, "eval_every": 100},
    )
    config = parse_config(cfg)
    full = run_experiment(config, out=tmp_path / "full", progress=False)
    assert full["handovers"] > 0
    resumed = resume_after_kill(monkeypatch, FedAvgFamily, 2, config, tmp_path / "killed")
    assert reproducible(resumed) == reproducible(full)
    a = (tmp_path / "full" / "ledger.csv").read_text()
    assert (tmp_path / "killed" / "ledger.csv").read_text() == a


def test_moving_devices_share_the_band_of_the_cell_that_serves_them() -> None:
    from tinylarge.network.link import Link
    from tinylarge.sim.context import Context
    from tinylarge.sim.rounds import Round

    def parked(x: float) -> dict[str, Any]:
        road = {"model": "route", "start_m": [x, 0], "heading_deg": 0, "speed_m_s": 0,
                "los": "preset"}  # fmt: skip
        return {"profile": "rpi4", "link": "nr-sub6", "mobility": road}

    def rates(second_at: float) -> list[float]:
        cfg = small_task(
            topology={
                "server": {"profile": "jetson-orin-nano"},
                "cells": [{"name": "a", "x_m": 0, "y_m": 0}, {"name": "b", "x_m": 1000, "y_m": 0}],
                "devices": [parked(100.0), parked(second_at)],
            }
        )
        ctx = Context(parse_config(cfg))
        Round(ctx, 0, ctx.clients).download({c.id: [("weights", 10_000)] for c in ctx.clients})
        return [e.rate_bps for e in ctx.ledger]

    alone = Link.from_preset("nr-sub6", distance_m=100.0).transfer(10_000, direction="down")
    # 100 m from cell a and 100 m from cell b: each has its cell's whole band
    assert rates(900.0) == [alone.rate_bps, alone.rate_bps]
    # both 100 m from cell a: they split it
    assert rates(-100.0) == [alone.rate_bps / 2, alone.rate_bps / 2]
