"""Split learning on the round clock: a fleet under dropout, outage and a deadline, the
checks that its per-round metrics, dropped devices and ledger events tell one story, and
the oracle that a straggler leaves no trace in the model.

Used by tests/schemes/test_sl.py and test_fsl.py, one test per variant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.conftest import small_task

from tinylarge.config import parse_config
from tinylarge.results.rundir import RunDir
from tinylarge.sim.context import Client
from tinylarge.sim.engine import run_experiment
from tinylarge.sim.ledger import Event, Ledger
from tinylarge.sim.rounds import Round

#: A device far beyond Bluetooth's range: its link is in outage in every round.
UNREACHABLE = {"profile": "stm32h743", "count": 1, "link": "ble-2m", "distance_m": 5000.0}
#: Its node (the fleet's last device).
UNREACHABLE_NODE = "client-4"
#: Two layers, so the u-shaped variant has a front and a tail cut.
TWO_LAYERS = {"name": "mlp", "options": {"hidden": [32, 32]}}


def fleet(scheme: str, options: dict[str, Any], *, deadline_s: float | None = None) -> Any:
    """small_task's four devices and an unreachable one, 3 rounds, dropout 0.25."""
    cfg = small_task(
        model=TWO_LAYERS,
        scheme={"name": scheme, "options": options},
        training={"rounds": 3},
        engine={"dropout_prob": 0.25, "deadline_s": deadline_s},
    )
    cfg["topology"]["devices"] = [*cfg["topology"]["devices"], UNREACHABLE]
    return parse_config(cfg)


def reasons_of(row: dict[str, Any]) -> dict[str, int]:
    """``{"dropout": 1, ...}`` from a metrics row's ``dropped_reasons``."""
    items = (row["dropped_reasons"] or "").split()
    return {r: int(n) for r, n in (item.split(":") for item in items)}


def check_round_clock(out: Path, deadline_s: float | None) -> dict[str, int]:
    """Check every round of the run in ``out`` against its ledger; return the dropped counts.

    - ``dropped`` counts ``dropped_reasons``, which dropped.csv lists device by device; the
      unreachable device is dropped in every round (``outage``, or ``straggler`` when its
      turn would start after the deadline) with nothing billed;
    - no straggler: the round's latency is the end of its last event, max(at_s + seconds);
    - a straggler: the device phase ends at the deadline, then the server's aggregation (if
      any) runs: latency = deadline + its seconds; the straggler's work is billed past it.
    """
    run = RunDir(out)
    ledger = Ledger.from_csv(run.ledger_path)
    dropped = run.read_dropped()
    totals: dict[str, int] = {}
    for row in run.read_metrics():
        rnd, latency = row["round"], row["latency_s"]
        reasons = reasons_of(row)
        assert row["dropped"] == sum(reasons.values()), row
        listed = [reason for r, _, reason in dropped if r == rnd]
        assert {r: listed.count(r) for r in set(listed)} == reasons, (row, listed)
        unreachable = {
            reason for r, node, reason in dropped if (r, node) == (rnd, UNREACHABLE_NODE)
        }
        # dropped for its outage, unless its turn would have started after the deadline
        assert unreachable == {"outage"} or (deadline_s and unreachable == {"straggler"}), row
        for reason, n in reasons.items():
            totals[reason] = totals.get(reason, 0) + n
        events = [e for e in ledger if e.round == rnd]
        assert not [e for e in events if e.node == UNREACHABLE_NODE]
        aggregation = [e for e in events if e.what == "aggregate"]
        if "straggler" in reasons:
            assert deadline_s is not None
            for e in aggregation:
                assert e.at_s == pytest.approx(deadline_s, rel=1e-12)
            expected = deadline_s + sum(e.seconds for e in aggregation)
            assert latency == pytest.approx(expected, rel=1e-12), row
            assert any(e.side == "device" and e.end_s > deadline_s for e in events), row
        else:
            assert latency == pytest.approx(max(_end(e) for e in events), rel=1e-12), row
            if deadline_s is not None:
                assert latency - sum(e.seconds for e in aggregation) <= deadline_s
    return totals


def _end(e: Event) -> float:
    return e.at_s + e.seconds


def run_under_dropout_outage_and_deadline(
    tmp_path: Path, scheme: str, options: dict[str, Any]
) -> None:
    """The fleet without and then with a deadline at half its shortest device phase."""
    base = run_experiment(fleet(scheme, options), out=tmp_path / "base", progress=False)
    totals = check_round_clock(tmp_path / "base", None)
    assert totals.get("dropout", 0) >= 1, totals
    assert totals["outage"] == 3, totals
    assert "straggler" not in totals
    ledger = Ledger.from_csv(tmp_path / "base" / "ledger.csv")
    phases = [
        max(_end(e) for e in ledger if e.round == r and e.side == "device")
        for r in range(base["rounds"])
    ]
    deadline = 0.5 * min(phases)
    cut = run_experiment(
        fleet(scheme, options, deadline_s=deadline), out=tmp_path / "cut", progress=False
    )
    totals = check_round_clock(tmp_path / "cut", deadline)
    assert totals["straggler"] >= 1, totals
    assert max(cut["round_latency_s"]) < max(base["round_latency_s"])


# -- a straggler's update is discarded ---------------------------------------------------------
def _late(victim: int) -> Any:
    """``Round.upload`` as if ``victim``'s upload arrived after the deadline."""
    upload = Round.upload

    def late(self: Round, payloads: Any, clients: Any = None) -> list[Client]:
        kept = upload(self, payloads, clients)
        for c in kept:
            if c.id == victim:
                self.drop(c, "straggler")
        return [c for c in kept if c.id != victim]

    return late


def _no_turn(victim: int) -> Any:
    """``Round.begin_turn`` as if ``victim``'s turn would start after the deadline."""
    begin = Round.begin_turn

    def no_turn(self: Round, client: Client) -> bool:
        if client.id == victim:
            self.drop(client, "straggler")
            return False
        return begin(self, client)

    return no_turn


def _gone(victim: int) -> Any:
    """``Round.download`` as if ``victim`` dropped out after its download."""
    download = Round.download

    def gone(self: Round, payloads: Any, clients: Any = None, **kw: Any) -> list[Client]:
        active = download(self, payloads, clients, **kw)
        for c in active:
            if c.id == victim:
                self.drop(c, "dropout")
        return [c for c in active if c.id != victim]

    return gone


def straggler_leaves_no_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheme: dict[str, Any], *, turns: bool
) -> None:
    """A straggler's training is discarded: the model is exactly the one of a run in which
    it never trained (turn-based: it got no turn; otherwise it dropped out after its
    download), yet differs from the run in which it counted."""
    cfg = parse_config(small_task(scheme=scheme, training={"rounds": 2}))
    victim = 1
    runs = {
        "late": ("upload", _late(victim), "straggler:1"),
        "never": ("begin_turn", _no_turn(victim), "straggler:1")
        if turns
        else ("download", _gone(victim), "dropout:1"),
    }
    weights = {}
    for name, (method, patched, reasons) in runs.items():
        with monkeypatch.context() as m:
            m.setattr(Round, method, patched)
            run_experiment(cfg, out=tmp_path / name, progress=False)
        run = RunDir(tmp_path / name)
        assert [r["dropped_reasons"] for r in run.read_metrics()] == [reasons] * 2
        weights[name] = run.load_checkpoint()["scheme"]["weights"]
    run_experiment(cfg, out=tmp_path / "all", progress=False)
    counted = RunDir(tmp_path / "all").load_checkpoint()["scheme"]["weights"]
    assert any(not np.array_equal(a, b) for a, b in zip(weights["late"], counted, strict=True))
    for a, b in zip(weights["late"], weights["never"], strict=True):
        np.testing.assert_array_equal(a, b)
