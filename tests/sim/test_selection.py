"""Client selection policies (training.selection): which devices a synchronous round takes."""

from __future__ import annotations

import doctest
import math
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.conftest import reproducible, resume_after_kill, small_task

from tinylarge.config import ConfigError, parse_config
from tinylarge.results import checkpoint
from tinylarge.schemes.fedavg import FedAvgFamily
from tinylarge.schemes.options import scheme_options
from tinylarge.sim import selection
from tinylarge.sim.context import Context
from tinylarge.sim.engine import build_scheme, run_experiment
from tinylarge.sim.ledger import Event, Ledger, Side
from tinylarge.sim.rounds import sample
from tinylarge.sim.selection import (
    ClientFeedback,
    exploit,
    exploration_share,
    highest_loss,
    preferred_duration,
    utility,
)
from tinylarge.sim.training import evaluate

#: Eight phones on one 5G cell, 50 m to 400 m from the gNB: the farther, the slower.
DISTANCES = [50.0, 400.0, 100.0, 350.0, 150.0, 300.0, 200.0, 250.0]


def context(selection: str, candidates: float = 2.0, **training: Any) -> Context:
    cfg = small_task(
        training={"fraction": 0.5, "selection": selection, "selection_candidates": candidates,
                  **training},
    )  # fmt: skip
    cfg["topology"]["devices"] = [
        {"profile": "galaxy-s24", "count": 1, "link": "nr-sub6", "distance_m": d} for d in DISTANCES
    ]
    return Context(parse_config(cfg))


def test_uniform_is_the_seeded_draw_without_replacement() -> None:
    ctx = context("uniform")
    for rnd in range(5):
        picked = [c.id for c in sample(ctx, rnd, ctx.clients)]
        expected = sorted(np.random.default_rng([3, rnd + 1, 1]).choice(8, size=4, replace=False))
        assert picked == [int(i) for i in expected]


def test_channel_keeps_the_best_uplinks_among_the_candidates() -> None:
    ctx = context("channel", candidates=2.0)  # 8 candidates of 8: always the 4 nearest
    for rnd in range(3):
        assert [c.id for c in sample(ctx, rnd, ctx.clients)] == [0, 2, 4, 6]
    ctx = context("channel", candidates=1.5)  # 6 uniform candidates, the 4 nearest of them
    for rnd in range(5):
        cands = sorted(np.random.default_rng([3, rnd + 1, 1]).choice(8, size=6, replace=False))
        best = sorted(sorted(cands, key=lambda i: DISTANCES[i])[:4])
        assert [c.id for c in sample(ctx, rnd, ctx.clients)] == [int(i) for i in best]


def test_energy_keeps_the_devices_that_spent_least() -> None:
    ctx = context("energy", candidates=2.0)
    for cid, joules in enumerate([5.0, 0.0, 1.0, 7.0, 0.5, 9.0, 2.0, 0.0]):
        ctx.ledger.record(Event(round=0, node=f"client-{cid}", side="device", kind="compute",
                                what="local-train", profile="galaxy-s24", seconds=1.0,
                                joules=joules))  # fmt: skip
    ctx.ledger.record(Event(round=0, node="server", side="server", kind="compute",
                            what="aggregate", profile="l4", seconds=1.0, joules=99.0))  # fmt: skip
    assert [c.id for c in sample(ctx, 1, ctx.clients)] == [1, 2, 4, 7]


def spent_by_scan(events: Iterable[Event]) -> dict[str, float]:
    """Each device's joules the slow way: its device events in ledger order, from 0.0."""
    out: dict[str, float] = {}
    for e in events:
        if e.side == "device":
            out[e.node] = out.get(e.node, 0.0) + e.joules
    return out


def least_spent(seed: int, rnd: int, n: int, d: int, k: int, spent: dict[str, float]) -> list[int]:
    """The energy policy written out: ``d`` uniform candidates of the round, the ``k`` that
    spent least (ties: the lower id), in id order."""
    cands = np.random.default_rng([seed, rnd + 1, 1]).choice(n, size=d, replace=False)
    ranked = sorted((int(i) for i in cands), key=lambda i: (spent.get(f"client-{i}", 0.0), i))
    return sorted(ranked[:k])


def test_energy_equals_a_scan_of_the_ledger_added_in_ledger_order() -> None:
    def bill(ctx: Context, rnd: int, node: str, joules: float) -> None:
        side: Side = "server" if node == "server" else "device"
        ctx.ledger.record(Event(round=rnd, node=node, side=side, kind="compute", what="w",
                                profile="galaxy-s24", seconds=1.0, joules=joules))  # fmt: skip

    # in ledger order 0.1 + 0.2 + 0.3 = 0.6000000000000001 > 0.6: device 1 has spent less
    # than device 0 (math.fsum, or the order 0.3 + 0.2 + 0.1, would make them equal and
    # take device 0)
    ctx = context("energy", candidates=2.0)
    for node, joules in [("client-0", 0.1), ("client-1", 0.6), ("client-0", 0.2), ("client-3", 5.0),
                         ("client-0", 0.3), ("client-5", 9.0), ("client-7", 7.0),
                         ("server", 0.0)]:  # fmt: skip
        bill(ctx, 0, node, joules)
    assert [c.id for c in sample(ctx, 1, ctx.clients)] == [1, 2, 4, 6]
    # rounds of selections and bills: each round as the definition on a fresh scan
    rng = random.Random(0)
    ctx = context("energy", candidates=1.5)  # 6 candidates of 8, 4 kept
    for rnd in range(12):
        picked = [c.id for c in sample(ctx, rnd, ctx.clients)]
        assert picked == least_spent(3, rnd, 8, 6, 4, spent_by_scan(ctx.ledger))
        for _ in range(10):
            node = f"client-{rng.choice(picked)}" if rng.random() < 0.8 else "server"
            bill(ctx, rnd, node, rng.choice([0.1, 0.2, 0.3, 0.7, 1 / 3]))


def test_energy_selection_resumes_to_the_same_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = small_task(training={"rounds": 4, "fraction": 0.5, "selection": "energy",
                               "selection_candidates": 1.5},
                     engine={"eval_every": 100})  # fmt: skip
    cfg["topology"]["devices"] = [
        {"profile": "rpi4", "count": 4, "link": "wifi6"},
        {"profile": "stm32h743", "count": 4, "link": "ble-2m"},
    ]
    config = parse_config(cfg)
    full = run_experiment(config, out=tmp_path / "full", progress=False)
    ledger = Ledger.from_csv(tmp_path / "full" / "ledger.csv")
    for rnd in range(4):  # what each round trained: the definition on the ledger before it
        trained = sorted(
            int(e.node.split("-")[1]) for e in ledger.select(round=rnd, what="local-train")
        )
        before = spent_by_scan(e for e in ledger if e.round < rnd)
        assert trained == least_spent(3, rnd, 8, 6, 4, before)
    # killed in round 2: the resumed run selects from the reloaded ledger, as the full run did
    resumed = resume_after_kill(monkeypatch, FedAvgFamily, 2, config, tmp_path / "killed")
    assert reproducible(resumed) == reproducible(full)
    assert (tmp_path / "killed" / "ledger.csv").read_text() == (
        tmp_path / "full" / "ledger.csv"
    ).read_text()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"training": {"selection": "channel", "sampling": "poisson"}}, "training.selection"),
        ({"training": {"selection": "energy"}, "scheme": {"name": "fedbuff"}},
         "training.selection"),
    ],
)  # fmt: skip
def test_a_selection_that_cannot_choose_is_refused(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        scheme_options(parse_config(small_task(**changes)))
    lines = str(err.value).splitlines()
    assert len(lines) == 1, lines
    assert field in lines[0], lines


def test_power_of_choice_trains_the_candidates_with_the_highest_loss(tmp_path: Path) -> None:
    # non-IID shards: the devices' losses under the initial model differ
    cfg = small_task(
        task={"dataset": "digits", "partition": {"name": "shards", "options": {}}},
        training={"rounds": 1, "fraction": 0.5, "selection": "power-of-choice",
                  "selection_candidates": 1.5},
    )  # fmt: skip
    cfg["topology"]["devices"] = [{"profile": "rpi4", "count": 8, "link": "wifi6"}]
    config = parse_config(cfg)
    ctx = Context(config)
    scheme = build_scheme(ctx)
    assert isinstance(scheme, FedAvgFamily)  # a FedAvg: its pool and its global weights
    scheme.setup()
    x, y = ctx.dataset.x_train, ctx.dataset.y_train
    cands = [c.id for c in sample(ctx, 0, scheme.pool)]
    assert len(cands) == 6  # 1.5 x the 4 a round
    losses = {cid: evaluate(ctx.spec, scheme.weights, x[ctx.clients[cid].indices],
                            y[ctx.clients[cid].indices])[1] for cid in cands}  # fmt: skip
    expected = sorted(sorted(cands, key=lambda cid: -losses[cid])[:4])
    run_experiment(config, out=tmp_path / "r", progress=False)
    ledger = Ledger.from_csv(tmp_path / "r" / "ledger.csv")
    trained = sorted(int(e.node.split("-")[1]) for e in ledger.select(what="local-train"))
    assert trained == expected
    for cid in cands:  # every candidate: the model down, its loss computed and reported
        node = f"client-{cid}"
        assert ledger.select(node=node, kind="download", what="weights")
        (probe,) = ledger.select(node=node, what="local-loss")
        assert probe.macs > 0
        (report,) = ledger.select(node=node, kind="upload", what="loss")
        assert report.bytes == 4
    assert not {e.node for e in ledger} - {f"client-{c}" for c in cands} - {"server"}


def test_highest_loss_against_hand_worked_ranks() -> None:
    assert highest_loss({3: 0.5, 1: 2.0, 7: 0.5, 2: 1.0}, 3) == [1, 2, 3]
    assert highest_loss({5: 1.0}, 3) == [5]


def test_oort_hears_the_stragglers_and_learns_how_slow_they_are(tmp_path: Path) -> None:
    # the BLE boards (2, 3) take about 0.31 s, past a 0.1 s deadline: their results are
    # discarded, but their uploads arrived, so Oort keeps their loss and their duration
    cfg = small_task(
        scheme={"name": "fedprox", "options": {"mu": 0.01}},
        training={"rounds": 1, "selection": "oort"},
        engine={"deadline_s": 0.1},
    )
    run_experiment(parse_config(cfg), out=tmp_path / "r", progress=False)
    assert "straggler" in (tmp_path / "r" / "dropped.csv").read_text()
    state = checkpoint.load(tmp_path / "r" / "checkpoint.npz")["selection"]["clients"]
    assert sorted(state) == [0, 1, 2, 3]
    assert all(state[c][3] < 0.1 for c in (0, 1))
    assert all(state[c][3] > 0.1 for c in (2, 3))


@pytest.mark.parametrize("policy", ["power-of-choice", "oort"])
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"scheme": {"name": "fml"}}, "does not run it"),
        ({"scheme": {"name": "hierfavg"}}, "does not run it"),
        ({"scheme": {"name": "fedbuff"}}, "dispatches to idle devices"),
        ({"privacy": {"dp": {"noise_multiplier": 1.0}}}, "privacy.dp"),
    ],
)
def test_loss_driven_selection_is_refused_where_no_round_runs_it(
    policy: str, changes: dict[str, Any], message: str
) -> None:
    """power-of-choice needs the FedAvg family's candidate round, oort its feedback."""
    cfg = small_task(training={"selection": policy}, **changes)
    with pytest.raises(ConfigError) as err:
        scheme_options(parse_config(cfg))
    lines = str(err.value).splitlines()
    assert len(lines) == 1, lines
    assert message in lines[0], lines
    assert lines[0].startswith("config: training.selection: "), lines


# -- Oort (Lai et al. 2021) --------------------------------------------------------------------
def oort_context(n: int = 8) -> Context:
    """``n`` phones on one 5G cell, 50 m apart from 50 m (the nearer, the faster uplink)."""
    cfg = small_task(training={"fraction": 0.5, "selection": "oort"})
    cfg["topology"]["devices"] = [
        {"profile": "galaxy-s24", "count": 1, "link": "nr-sub6", "distance_m": 50.0 * (i + 1)}
        for i in range(n)
    ]
    ctx = Context(parse_config(cfg))
    assert ctx.feedback is not None
    return ctx


def feed(ctx: Context, **by_client: ClientFeedback) -> None:
    assert ctx.feedback is not None
    ctx.feedback.clients.update({int(k.removeprefix("c")): v for k, v in by_client.items()})


def test_oort_utility_against_the_formula_worked_by_hand() -> None:
    # |B| * loss + sqrt(0.1 ln R / L): R = 10 (round index 9), L = 2 (round index 1)
    f = ClientFeedback(round=1, loss=0.5, num_samples=40, duration_s=2.0)
    assert utility(f, 9, 2.0) == pytest.approx(20 + math.sqrt(0.1 * math.log(10) / 2), rel=1e-12)
    assert utility(f, 0, 2.0) == 20.0  # ln 1 = 0: no bonus in the first round
    # a straggler: t = 8 s against T = 2 s costs exactly (2 / 8) ** 2 = 1 / 16
    slow = ClientFeedback(round=1, loss=0.5, num_samples=40, duration_s=8.0)
    assert utility(slow, 9, 2.0) == pytest.approx(utility(f, 9, 2.0) / 16, rel=1e-12)
    assert utility(slow, 9, 8.0) == utility(f, 9, 8.0)  # no penalty at or below T
    # T: the 30th percentile of the known durations, sorted[int(0.3 n)]
    assert preferred_duration([8.0, 1.0, 3.0, 2.0, 4.0]) == 2.0  # index 1 of 5
    assert preferred_duration([5.0] * 3 + [1.0]) == 5.0  # index 1 of 4: [1, 5, 5, 5]
    assert preferred_duration([7.0]) == 7.0
    assert preferred_duration([]) == math.inf


def test_oort_penalises_a_slow_device_in_the_selection() -> None:
    ctx = oort_context(8)
    # every device has trained in round 0 with the same loss and samples; device 0 took
    # 40 s where the others took 1-2 s: T = sorted durations[int(0.3 * 8)] = 1.0 s, so its
    # utility is cut to (1 / 40) ** 2, below the cut-off of the 4th best (a 2 s device's,
    # cut to (1 / 2) ** 2); every slot exploits (epsilon 0.2 of 4: none, nobody is new)
    durations = [40.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0]
    feed(ctx, **{f"c{i}": ClientFeedback(0, 1.0, 50, t) for i, t in enumerate(durations)})
    rnd = 100
    for r in range(rnd, rnd + 20):
        assert 0 not in [c.id for c in sample(ctx, r, ctx.clients)]


def test_oort_exploits_the_high_loss_devices() -> None:
    ctx = oort_context(8)
    losses = [0.1, 2.0, 0.1, 2.1, 0.2, 1.9, 2.2, 0.1]
    feed(ctx, **{f"c{i}": ClientFeedback(3, loss, 50, 1.0) for i, loss in enumerate(losses)})
    for rnd in (100, 101, 150):  # epsilon 0.2 of 4 slots: none, and no device is new
        assert [c.id for c in sample(ctx, rnd, ctx.clients)] == [1, 3, 5, 6]


def test_oort_explores_new_devices_first_fastest_first() -> None:
    ctx = oort_context(8)
    # nobody has trained: all 4 slots explore, the 4 nearest (best uplinks)
    assert [c.id for c in sample(ctx, 0, ctx.clients)] == [0, 1, 2, 3]
    # 0 and 1 have trained: floor(0.9 * 4) = 3 slots explore (2, 3, 4), 1 exploits 0 or 1
    feed(ctx, c0=ClientFeedback(0, 1.0, 50, 1.0), c1=ClientFeedback(0, 1.0, 50, 1.0))
    picked = [c.id for c in sample(ctx, 1, ctx.clients)]
    assert picked[1:] == [2, 3, 4]
    assert picked[0] in (0, 1)
    # seven have trained: one new device left (0), it is taken; exploitation takes the 3
    # others, here the 3 highest utilities (50 (1 + i): 400, 350, 300; next 250 < 285)
    ctx = oort_context(8)
    feed(ctx, **{f"c{i}": ClientFeedback(1, 1.0 + i, 50, 1.0) for i in range(1, 8)})
    assert [c.id for c in sample(ctx, 2, ctx.clients)] == [0, 5, 6, 7]


def test_oort_exploration_share_decays_as_stated() -> None:
    assert exploration_share(0) == 0.9
    for r in range(1, 75):
        assert exploration_share(r) == pytest.approx(0.9 * 0.98**r, rel=1e-12)
        assert exploration_share(r) < exploration_share(r - 1)
    assert exploration_share(74) > 0.2  # 0.9 * 0.98 ** 74 = 0.2017
    assert exploration_share(75) == 0.2 == exploration_share(10_000)  # 0.1977 is floored
    # in the selection: 16 devices, 8 explored, k = 8: floor(8 epsilon) slots go to new ones
    ctx = oort_context(16)
    feed(ctx, **{f"c{i}": ClientFeedback(0, 1.0, 50, 1.0) for i in range(8, 16)})
    for rnd, new in ((0, 7), (10, 5), (40, 3), (75, 1), (500, 1)):
        assert new == math.floor(8 * exploration_share(rnd))
        picked = [c.id for c in sample(ctx, rnd, ctx.clients)]
        assert len(picked) == 8
        assert [i for i in picked if i < 8] == list(range(new))  # the nearest new ones


def test_oort_draw_is_seeded_by_round() -> None:
    # equal feedback: every device passes the cut-off, the draw decides
    draws = []
    for _ in range(2):
        ctx = oort_context(8)
        feed(ctx, **{f"c{i}": ClientFeedback(0, 1.0, 50, 1.0) for i in range(8)})
        draws.append([[c.id for c in sample(ctx, r, ctx.clients)] for r in range(100, 110)])
    assert draws[0] == draws[1]
    assert len({tuple(d) for d in draws[0]}) > 1
    # k = 2 of utilities 10, 3, 3, 1: the cut-off is 0.95 * 3, so device 3 never; the
    # others are drawn one after the other with probability proportional to utility:
    # device 0 first (10/16) or second (2 * 3/16 * 10/13), 0.9135 in all
    rng = np.random.default_rng(0)
    counts = np.zeros(4)
    for _ in range(4000):
        for i in exploit([10.0, 3.0, 3.0, 1.0], 2, rng):
            counts[i] += 1
    assert counts[3] == 0
    assert counts[0] / 4000 == pytest.approx(10 / 16 + 2 * 3 / 16 * 10 / 13, abs=0.02)
    assert counts[1] / 4000 == pytest.approx(counts[2] / 4000, abs=0.04)
    assert exploit([10.0, 3.0, 3.0, 1.0], 1, rng) == [0]  # k = 1: only 0 passes 9.5
    assert exploit([0.0, 0.0, 0.0], 2, rng) in ([0, 1], [0, 2], [1, 2])  # no utility: uniform


def test_oort_docstring_examples() -> None:
    result = doctest.testmod(selection)
    assert result.attempted > 0
    assert result.failed == 0


def oort_task() -> dict[str, Any]:
    cfg = small_task(training={"rounds": 4, "fraction": 0.5, "selection": "oort"},
                     engine={"eval_every": 100})  # fmt: skip
    cfg["topology"]["devices"] = [
        {"profile": "rpi4", "count": 4, "link": "wifi6"},
        {"profile": "stm32h743", "count": 4, "link": "ble-2m"},
    ]
    return cfg


def test_oort_learns_from_the_fedavg_rounds_and_resumes_to_the_same_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = parse_config(oort_task())
    full = run_experiment(config, out=tmp_path / "full", progress=False)
    ledger = Ledger.from_csv(tmp_path / "full" / "ledger.csv")
    trained = [
        sorted(int(e.node.split("-")[1]) for e in ledger.select(round=r, what="local-train"))
        for r in range(4)
    ]
    # round 0 explores the 4 best uplinks (the Wi-Fi boards); round 1 gives floor(0.882 * 4)
    # = 3 slots to new devices (BLE, pool order on equal links) and 1 to a Wi-Fi board
    assert trained[0] == [0, 1, 2, 3]
    assert trained[1][1:] == [4, 5, 6]
    assert trained[1][0] in range(4)
    state = checkpoint.load(tmp_path / "full" / "checkpoint.npz")["selection"]["clients"]
    assert sorted(state) == sorted(set(trained[0] + trained[1] + trained[2] + trained[3]))
    # each device's duration is its span in the ledger in the round it last trained
    clients = Context(config).clients
    for cid, (last, _, samples, duration) in state.items():
        assert last == max(r for r in range(4) if cid in trained[r])
        mine = ledger.select(round=last, node=f"client-{cid}")
        assert duration == max(e.end_s for e in mine) - min(e.at_s for e in mine) > 0
        assert samples == len(clients[cid].indices)
    resumed = resume_after_kill(monkeypatch, FedAvgFamily, 2, config, tmp_path / "killed")
    assert reproducible(resumed) == reproducible(full)
    assert (tmp_path / "killed" / "ledger.csv").read_text() == (
        tmp_path / "full" / "ledger.csv"
    ).read_text()
