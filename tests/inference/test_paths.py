"""Per-request cost paths: walking, outages, figures."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from tinylarge.hardware.cost import ComputeCost, Elementwise, Work
from tinylarge.inference.paths import ExitPath, Leg, PathStep, figures, walk
from tinylarge.network.link import Link
from tinylarge.sim.context import RequestChannel

TINY = ComputeCost(macs=1000, latency_s=0.01, energy_j=0.002)
LARGE = ComputeCost(macs=10**6, latency_s=0.001, energy_j=0.05)
#: Stand-ins for what runs (the prices below say what each costs).
TINY_WORK, LARGE_WORK = Elementwise(1), Elementwise(2)
PRICES = {("device", TINY_WORK): TINY, ("edge", LARGE_WORK): LARGE}


class Prices:
    """A price list that counts how often it is asked."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, leg: Leg, work: Work | Sequence[Work]) -> ComputeCost:
        self.calls += 1
        assert not isinstance(work, Sequence)
        return PRICES[(leg, work)]


def cascade(input_bytes: int = 3136) -> tuple[ExitPath, ExitPath]:
    local = PathStep("device", "infer-tiny", work=TINY_WORK)
    return (
        ExitPath(0, (local,)),
        ExitPath(
            1,
            (
                local,
                PathStep("uplink", "input", num_bytes=input_bytes),
                PathStep("edge", "infer-large", work=LARGE_WORK),
                PathStep("downlink", "result", num_bytes=40),
            ),
            fallback_exit=0,
        ),
    )


def test_walk_sums_each_step_and_bills_by_label() -> None:
    link = Link.from_preset("wifi6")
    exits = np.array([0, 1, 1, 0, 1])
    prices = Prices()
    w = walk(exits, cascade(), transfer=RequestChannel(link), price=prices, deterministic=True)
    assert prices.calls == 2  # each computation step priced once, whatever the sample count
    up = link.transfer(3136, direction="up")
    down = link.transfer(40, direction="down")
    offloaded = TINY.latency_s + up.time_s + LARGE.latency_s + down.time_s
    assert w.costs.latency_s.tolist() == pytest.approx(
        [TINY.latency_s, offloaded, offloaded, TINY.latency_s, offloaded]
    )
    assert w.costs.device_energy_j[1] == pytest.approx(TINY.energy_j + up.energy_j + down.energy_j)
    assert w.answered.tolist() == exits.tolist()
    s, _j, macs, nbytes = w.by_what[("uplink", "input")]
    assert (nbytes, macs) == (3 * 3136, 0)
    assert s == pytest.approx(3 * up.time_s)
    assert w.by_what[("device", "infer-tiny")][2] == 5 * TINY.macs
    assert w.by_what[("edge", "infer-large")][1] == pytest.approx(3 * LARGE.energy_j)
    # per-sample and memoised walks agree
    per_sample = walk(
        exits, cascade(), transfer=RequestChannel(link), price=Prices(), deterministic=False
    )
    assert np.allclose(per_sample.costs.seconds, w.costs.seconds)
    f = figures(correct=np.array([True, True, False, True, True]), costs=w.costs)
    assert f.offload_fraction == pytest.approx(0.6)
    assert f.accuracy == pytest.approx(0.8)
    assert (f.bytes_up, f.bytes_down) == (3 * 3136, 3 * 40)
    assert f.latency_p95_s <= offloaded + 1e-12
    assert f.latency_p50_s == pytest.approx(offloaded)  # 3 of the 5 samples were offloaded
    assert f.device_energy_j == pytest.approx(float(w.costs.device_energy_j.sum()))


def test_outage_falls_back_without_billing_the_lost_transfer() -> None:
    far = Link.from_preset("ble-2m", distance_m=5000.0)
    w = walk(
        np.array([1, 1]),
        cascade(),
        transfer=RequestChannel(far),
        price=Prices(),
        deterministic=True,
    )
    assert w.outage.all()
    assert w.answered.tolist() == [0, 0]  # the tiny model's answer
    assert w.costs.latency_s.tolist() == pytest.approx([TINY.latency_s] * 2)
    assert ("uplink", "input") not in w.by_what
    split_like = ExitPath(
        0,
        (PathStep("uplink", "input", num_bytes=100),),
        fallback_exit=0,
        fallback_steps=(PathStep("device", "infer-fallback", work=TINY_WORK),),
    )
    w2 = walk(
        np.array([0]),
        (split_like,),
        transfer=RequestChannel(far),
        price=Prices(),
        deterministic=True,
    )
    assert w2.answered.tolist() == [0]
    assert w2.by_what[("device", "infer-fallback")][2] == TINY.macs
    no_fallback = ExitPath(0, (PathStep("uplink", "input", num_bytes=100),))
    lost = walk(
        np.array([0]),
        (no_fallback,),
        transfer=RequestChannel(far),
        price=Prices(),
        deterministic=True,
    )
    assert lost.answered.tolist() == [-1]


def test_fading_draws_per_request_and_is_seeded() -> None:
    link = Link.from_preset("nr-sub6", distance_m=600.0)

    def run(seed: int) -> np.ndarray:
        fn = RequestChannel(
            link,
            fading=True,
            rngs={
                "uplink": np.random.default_rng(seed),
                "downlink": np.random.default_rng(seed + 1),
            },
        )
        w = walk(
            np.ones(50, dtype=np.int64), cascade(), transfer=fn, price=Prices(), deterministic=False
        )
        return w.costs.latency_s

    a, b = run(1), run(1)
    assert np.array_equal(a, b)
    assert len(np.unique(a)) > 1  # one channel draw per request
    assert not np.array_equal(a, run(2))


def test_steps_are_checked() -> None:
    with pytest.raises(ValueError, match="work"):
        PathStep("device", "x")
    with pytest.raises(ValueError, match="work"):
        PathStep("uplink", "x", work=TINY_WORK)
