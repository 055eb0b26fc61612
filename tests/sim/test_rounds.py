"""The round clock itself on a hand-built fleet: shares, dropouts, deadlines, turns, server."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from tests.conftest import small_task

from tinylarge.config import parse_config
from tinylarge.hardware.cost import Elementwise, Train, training_cost
from tinylarge.sim.aggregation import Update
from tinylarge.sim.context import Context
from tinylarge.sim.rounds import Round, sample


def context(**engine: Any) -> Context:
    """2 rpi4 on Wi-Fi 6 (clients 0, 1) and 2 stm32h743 on BLE (clients 2, 3)."""
    return Context(parse_config(small_task(engine=engine)))


def test_devices_on_one_link_share_its_cell_equally() -> None:
    ctx = context()
    rd = Round(ctx, 0, ctx.clients)
    n = 10_000
    rd.download({c.id: [("weights", n)] for c in ctx.clients})
    seconds = {e.node: e.seconds for e in ctx.ledger}
    wifi, ble = ctx.clients[0].link, ctx.clients[2].link
    # two devices per preset: each gets half of its cell
    assert seconds["client-0"] == wifi.transfer(n, share=0.5, direction="down").time_s
    assert seconds["client-2"] == ble.transfer(n, share=0.5, direction="down").time_s
    # a device alone in a later call has the whole cell
    rd.upload({2: [("weights", n)]}, [ctx.clients[2]])
    up = ctx.ledger.select(kind="upload")[0]
    assert up.seconds == ble.transfer(n, share=1.0, direction="up").time_s
    assert up.at_s == pytest.approx(seconds["client-2"])  # after its own download


def test_the_round_ends_with_the_last_device_then_the_server() -> None:
    ctx = context()
    rd = Round(ctx, 0, ctx.clients)
    pre = rd.server(Train(ctx.model_profile, 1000), what="pretrain")
    rd.download({c.id: [("weights", 5000)] for c in ctx.clients})
    for c in ctx.clients:
        rd.compute(c, Train(ctx.model_profile, 100), what="local-train")
    kept = rd.upload({c.id: [("weights", 5000)] for c in ctx.clients})
    assert [c.id for c in kept] == [0, 1, 2, 3]
    arrivals = [rd.clock_s(c) for c in ctx.clients]
    post = rd.server(Elementwise(1000), what="aggregate")
    assert rd.latency_s == pytest.approx(pre + max(arrivals) + post)
    assert ctx.ledger.select(what="pretrain")[0].at_s == 0.0
    assert min(e.at_s for e in ctx.ledger if e.side == "device") == pytest.approx(pre)
    assert ctx.ledger.select(what="aggregate")[0].at_s == pytest.approx(pre + max(arrivals))
    # the MCUs on BLE are the last to arrive: the Wi-Fi devices do not set the round's length
    assert max(arrivals) == max(rd.clock_s(c) for c in ctx.clients[2:])


def test_dropouts_download_then_leave_and_do_not_hold_up_the_round() -> None:
    ctx = context(dropout_prob=0.5)
    rd = Round(ctx, 3, ctx.clients)
    draws = ctx.rng(3, 4).random(4)  # one draw per participant, in order
    active = rd.download({c.id: [("weights", 5000)] for c in ctx.clients})
    gone = {c.id for c in ctx.clients if draws[c.id] < 0.5}
    assert {c.id for c in active} == set(range(4)) - gone
    assert rd.dropped == dict.fromkeys(gone, "dropout")
    assert len(ctx.ledger.select(kind="download")) == 4  # they downloaded before leaving
    for c in active:
        rd.compute(c, Train(ctx.model_profile, 50), what="local-train")
    rd.upload({c.id: [("weights", 5000)] for c in active})
    assert rd.latency_s == pytest.approx(max((rd.clock_s(c) for c in active), default=0.0))


def test_an_unreachable_device_drops_with_nothing_billed() -> None:
    cfg = small_task()
    cfg["topology"]["devices"].append(
        {"profile": "rpi4", "count": 1, "link": "ble-2m", "distance_m": 5000.0}
    )
    ctx = Context(parse_config(cfg))
    far = ctx.clients[-1]
    rd = Round(ctx, 0, ctx.clients)
    active = rd.download({c.id: [("weights", 5000)] for c in ctx.clients})
    assert far not in active
    assert rd.dropped == {far.id: "outage"}
    assert not ctx.ledger.select(node=far.node)


def test_a_straggler_is_billed_but_cut_and_the_phase_ends_at_the_deadline() -> None:
    probe = context()
    mcu = probe.clients[2]
    slow = training_cost(probe.model_profile, mcu.profile, samples=500).latency_s
    ctx = context(deadline_s=slow / 2)
    rd = Round(ctx, 0, ctx.clients)
    rd.download({c.id: [("weights", 100)] for c in ctx.clients})
    for c in ctx.clients:
        rd.compute(c, Train(ctx.model_profile, 500), what="local-train")
    kept = rd.upload({c.id: [("weights", 100)] for c in ctx.clients})
    assert {c.id for c in kept} == {0, 1}  # the Pis are fast, the MCUs are not
    assert rd.dropped == {2: "straggler", 3: "straggler"}
    assert len(ctx.ledger.select(kind="upload")) == 4  # their work and uploads are billed
    merged = rd.aggregate([Update.full(c.id, [np.ones(3)], 1) for c in kept], base=[np.zeros(3)])
    assert merged[0].tolist() == [1.0, 1.0, 1.0]
    agg = ctx.ledger.select(what="aggregate")[0]
    assert agg.at_s == pytest.approx(slow / 2)
    assert rd.latency_s == pytest.approx(slow / 2 + agg.seconds)


def test_turns_serialise_the_server_and_stop_at_the_deadline() -> None:
    probe = context()
    turn = training_cost(probe.model_profile, probe.clients[0].profile, samples=800).latency_s
    ctx = context(deadline_s=1.5 * turn)
    first, second, third = ctx.clients[:3]
    rd = Round(ctx, 0, [first, second, third])
    for c in (first, second, third):
        if rd.begin_turn(c):
            rd.compute(c, Train(ctx.model_profile, 800), what="split-train")
            rd.end_turn(c)
    events = ctx.ledger.select(what="split-train")
    assert [e.node for e in events] == ["client-0", "client-1"]
    assert events[1].at_s == pytest.approx(events[0].end_s)  # waits for the server
    assert rd.upload({}, [second]) == []  # it finished after the deadline: a straggler
    assert rd.dropped == {1: "straggler", 2: "straggler"}  # the third never got a turn
    assert not ctx.ledger.select(node="client-2")


def test_no_updates_no_aggregation() -> None:
    ctx = context()
    rd = Round(ctx, 0, ctx.clients)
    base = [np.arange(3.0)]
    assert rd.aggregate([], base=base) is base
    assert len(ctx.ledger) == 0


def test_sampling_is_a_fraction_at_least_min_clients_and_repeatable() -> None:
    ctx = Context(parse_config(small_task(training={"fraction": 0.3, "min_clients": 2})))
    picks = [sample(ctx, r, ctx.clients) for r in range(5)]
    assert all(len(p) == 2 for p in picks)  # round(0.3 * 4) = 1 < min_clients
    assert picks == [sample(ctx, r, ctx.clients) for r in range(5)]
