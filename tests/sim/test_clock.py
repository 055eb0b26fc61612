"""One round clock for every scheme: dropouts, outages and deadlines mean the same everywhere.

Every registered scheme runs the same fleet under ``engine.dropout_prob``, with a
device whose link is always in outage, and (where the scheme accepts one) an
``engine.deadline_s`` that cuts the slowest device. Then, per round, the
summary, the per-round metrics and the ledger must tell one story, re-derived
here from the ledger events alone (each event carries ``at_s``, its start on the
round clock):

- the round's latency is the end of its last event when nobody straggled, and
  the server work before + the deadline + the server work after when someone did;
- each device's own events never overlap (one clock per device);
- no event of a device outlives the round unless the device straggled;
- ``dropped`` counts what ``dropped_reasons`` lists, from the three reasons only;
- the summary's totals are the ledger's and the sum of the rounds'.

A scheme that cannot honour a deadline must refuse it with one line naming
``engine.deadline_s`` (``tinylarge validate`` prints it), never ignore it.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from tests.schemes.test_contract import SKIP_CONTRACT, scheme_task

from tinylarge.config import ConfigError, ExperimentConfig, parse_config
from tinylarge.results.rundir import RunDir
from tinylarge.schemes import SCHEMES
from tinylarge.schemes.options import scheme_options
from tinylarge.sim.engine import run_experiment
from tinylarge.sim.ledger import Event, Ledger

REASONS = {"outage", "dropout", "straggler"}
#: A device far beyond Bluetooth's range: its link is in outage in every round.
UNREACHABLE = {"profile": "rpi4", "count": 1, "link": "ble-2m", "distance_m": 5000.0}


def fleet_config(scheme: str, *, deadline_s: float | None = None) -> ExperimentConfig:
    cfg = scheme_task(
        scheme,
        training={"rounds": 2},
        engine={"dropout_prob": 0.25, "deadline_s": deadline_s},
    )
    cfg["topology"]["devices"] = [*cfg["topology"]["devices"], UNREACHABLE]
    return parse_config(cfg)


def events_of(ledger: Ledger, rnd: int) -> list[Event]:
    return [e for e in ledger if e.round == rnd]


def device_phase(events: list[Event]) -> tuple[float, float]:
    """(start, end) of the device phase: from its first device event to its last event's end."""
    device = [e for e in events if e.side == "device"]
    start = min(e.at_s for e in device)
    return start, max(e.end_s for e in device)


def deadline_for(ledger: Ledger, rounds: int) -> float:
    """Half of the shortest device phase of the run: the slowest device straggles every round."""
    spans = [device_phase(events_of(ledger, r)) for r in range(rounds)]
    return 0.5 * min(end - start for start, end in spans)


#: Schemes whose server serves one device at a time (with the contract options): a turn
#: holds the server even when its device drops out during it.
TURN_BASED = {"sl"}


def check_one_clock(
    out: Path, summary: dict[str, Any], deadline_s: float | None, *, turns: bool = False
) -> None:
    run = RunDir(out)
    rows = run.read_metrics()
    ledger = Ledger.from_csv(run.ledger_path)
    dropped = run.read_dropped()
    assert len(rows) == summary["rounds"]
    for row in rows:
        events = events_of(ledger, row["round"])
        left = {node: why for rnd, node, why in dropped if rnd == row["round"]}
        assert set(left.values()) <= REASONS, left
        counts = dict(i.split(":") for i in (row["dropped_reasons"] or "").split())
        assert counts == {r: str(list(left.values()).count(r)) for r in set(left.values())}
        assert row["dropped"] == len(left)
        by_node: dict[str, list[Event]] = {}
        for e in events:
            if e.side == "device":
                by_node.setdefault(e.node, []).append(e)
        for node, own in by_node.items():  # one clock per device: its events never overlap
            own.sort(key=lambda e: e.at_s)
            for a, b in itertools.pairwise(own):
                assert b.at_s >= a.end_s - 1e-9 * max(1.0, a.end_s), (node, a, b)
        for node, why in left.items():  # a device that dropped out sent nothing back
            if why in ("outage", "dropout"):
                assert not [e for e in by_node.get(node, []) if e.kind == "upload"], (node, why)
        # the round ends when the last device still in it is done (or at the deadline),
        # plus the server's work: re-derived from the events alone
        stayed = [e for e in events if turns or e.side == "server" or e.node not in left]
        device = [e for e in events if e.side == "device"]
        start = min((e.at_s for e in device), default=0.0)
        if "straggler" in left.values():
            assert deadline_s is not None
            end = cut = start + deadline_s
            for e in sorted(stayed, key=lambda e: e.at_s):  # the server's closing work
                if e.side == "server" and abs(e.at_s - end) <= 1e-9 * max(1.0, end):
                    end = e.end_s
            late = [e for e in device if e.node in left and e.end_s > cut * (1 + 1e-12)]
            assert late, "a straggler's work is billed past the deadline"
        else:
            end = max((e.end_s for e in stayed), default=0.0)
            if deadline_s is not None:
                kept = [e.end_s for e in device if e.node not in left]
                assert max(kept, default=start) - start <= deadline_s * (1 + 1e-9), row
        assert row["latency_s"] == pytest.approx(end, rel=1e-9, abs=1e-12), row
    assert summary["round_latency_s"] == pytest.approx([r["latency_s"] for r in rows])
    assert summary["bytes_up"] == ledger.bytes_up() == sum(r["bytes_up"] for r in rows)
    assert summary["bytes_down"] == ledger.bytes_down() == sum(r["bytes_down"] for r in rows)
    assert summary["device_energy_j"] == pytest.approx(ledger.device_energy_j())
    assert summary["device_energy_j"] == pytest.approx(sum(r["device_energy_j"] for r in rows))


#: Schemes on the asynchronous clock (:mod:`tinylarge.sim.async_clock`): a job spans server
#: updates, so a round's events may outlive it and a device may drop out of one job after
#: another's upload; tests/schemes/test_async.py re-derives that clock from the ledger.
OWN_CLOCK = {"fedbuff", "fedasync"}


@pytest.mark.parametrize(
    "scheme", [s for s in SCHEMES.names() if s not in SKIP_CONTRACT and s not in OWN_CLOCK]
)
def test_every_scheme_runs_on_one_clock(scheme: str, tmp_path: Path) -> None:
    base_cfg = fleet_config(scheme)
    base = run_experiment(base_cfg, out=tmp_path / "base", progress=False)
    check_one_clock(tmp_path / "base", base, None, turns=scheme in TURN_BASED)
    reasons = {why for _, _, why in RunDir(tmp_path / "base").read_dropped()}
    assert reasons & {"dropout", "outage"}, "the fleet must lose someone"

    deadline = deadline_for(Ledger.from_csv(tmp_path / "base" / "ledger.csv"), 2)
    cfg = fleet_config(scheme, deadline_s=deadline)
    try:
        scheme_options(cfg)
    except ConfigError as exc:  # refused with one line naming the field, never ignored
        lines = str(exc).splitlines()
        assert len(lines) == 1, lines
        assert "engine.deadline_s" in lines[0], lines
        return
    cut = run_experiment(cfg, out=tmp_path / "cut", progress=False)
    check_one_clock(tmp_path / "cut", cut, deadline, turns=scheme in TURN_BASED)
    assert "straggler" in {why for _, _, why in RunDir(tmp_path / "cut").read_dropped()}
    assert max(cut["round_latency_s"]) <= max(base["round_latency_s"])
