"""Client selection policies (training.selection): which devices a synchronous round takes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.conftest import small_task

from tinylarge.config import ConfigError, parse_config
from tinylarge.schemes.options import scheme_options
from tinylarge.sim.context import Context
from tinylarge.sim.engine import build_scheme, run_experiment
from tinylarge.sim.ledger import Event, Ledger
from tinylarge.sim.rounds import sample
from tinylarge.sim.selection import highest_loss
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


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"scheme": {"name": "fml"}}, "does not run it"),
        ({"scheme": {"name": "hierfavg"}}, "does not run it"),
        ({"privacy": {"dp": {"noise_multiplier": 1.0}}}, "privacy.dp"),
    ],
)
def test_power_of_choice_is_refused_where_it_cannot_run(
    changes: dict[str, Any], message: str
) -> None:
    cfg = small_task(training={"selection": "power-of-choice"}, **changes)
    with pytest.raises(ConfigError) as err:
        scheme_options(parse_config(cfg))
    lines = str(err.value).splitlines()
    assert len(lines) == 1, lines
    assert message in lines[0], lines
