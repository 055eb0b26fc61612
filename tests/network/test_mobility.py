"""Mobility models and the moving link, against values worked by hand.

The outage distance and the handover points below are solved from the link budget and
the path-loss formulas on paper, not taken from the code under test.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tinylarge.errors import TinylargeError
from tinylarge.network.coverage import Cell, MobileLink
from tinylarge.network.mobility import RandomWaypoint, read_trace, route
from tinylarge.network.models import FreeSpaceModel
from tinylarge.network.presets import PRESETS

# -- trajectories ---------------------------------------------------------------------------


def test_a_route_runs_at_its_speed_and_parks_at_its_end() -> None:
    r = route(start=(0.0, 10.0), end=(300.0, 410.0), speed_m_s=25.0, height_m=1.5)
    # 3-4-5 triangle: direction (0.6, 0.8), length 500 m, 20 s to the end
    assert r.position(0.0) == (0.0, 10.0, 1.5)
    assert r.position(4.0) == pytest.approx((60.0, 90.0, 1.5))
    assert r.position(20.0) == pytest.approx((300.0, 410.0, 1.5))
    assert r.position(1000.0) == pytest.approx((300.0, 410.0, 1.5))
    convoy = route(start=(0.0, 0.0), heading_deg=90.0, speed_m_s=10.0, height_m=0, offset_m=50.0)
    assert convoy.position(0.0) == pytest.approx((0.0, -50.0, 0.0))  # 50 m behind the start
    assert convoy.position(105.0) == pytest.approx((0.0, 1000.0, 0.0))  # no end: goes on


def test_random_waypoint_is_reproducible_and_stays_in_its_area() -> None:
    area = (-100.0, 50.0, 400.0, 250.0)

    def walk(seed: int) -> RandomWaypoint:
        return RandomWaypoint(area, (1.0, 5.0), 2.0, 30.0, np.random.default_rng([seed, 4, 70]))

    times = np.linspace(0.0, 5000.0, 2001)
    a = [walk(0).position(float(t)) for t in times]
    b_walk = walk(0)
    b = [b_walk.position(float(t)) for t in times[::-1]][::-1]  # asked in the other order
    assert a == b
    assert a != [walk(1).position(float(t)) for t in times]
    xs, ys = np.array([p[0] for p in a]), np.array([p[1] for p in a])
    assert xs.min() >= -100.0
    assert xs.max() <= 400.0
    assert ys.min() >= 50.0
    assert ys.max() <= 250.0
    assert xs.max() - xs.min() > 250.0  # it does wander over the area
    # speed never above the range's top
    steps = np.hypot(np.diff(xs), np.diff(ys)) / np.diff(times)
    assert steps.max() <= 5.0 + 1e-9


def test_a_trace_is_interpolated_and_held_at_its_ends(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_text("t_s,x_m,y_m,z_m\n10,0,0,20\n20,100,-50,40\n40,100,50,40\n")
    tr = read_trace(f, height_m=0.0)
    assert tr.position(0.0) == (0.0, 0.0, 20.0)
    assert tr.position(15.0) == pytest.approx((50.0, -25.0, 30.0))
    assert tr.position(35.0) == pytest.approx((100.0, 25.0, 40.0))
    assert tr.position(99.0) == (100.0, 50.0, 40.0)
    flat = tmp_path / "flat.csv"
    flat.write_text("t_s,x_m,y_m\n0,0,0\n1,3,4\n")
    assert read_trace(flat, height_m=1.5).position(0.5) == pytest.approx((1.5, 2.0, 1.5))


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("t,x,y\n0,0,0\n", "header 't,x,y'"),
        ("t_s,x_m,y_m\n0,0,0\n1,abc,0\n", "line 3: 'abc' is not a number"),
        ("t_s,x_m,y_m\n0,0,0\n0,1,0\n", "line 3: t_s=0 must be >= 0 and greater"),
        ("t_s,x_m,y_m\n-1,0,0\n", "line 2: t_s=-1"),
        ("t_s,x_m,y_m\n0,0\n", "line 2: 2 values, expected 3"),
        ("t_s,x_m,y_m\n0,nan,0\n", "'nan' is not finite"),
        ("t_s,x_m,y_m\n", "has no rows"),
    ],
)
def test_a_bad_trace_is_one_line_naming_what_is_wrong(tmp_path: Path, text: str, says: str) -> None:
    f = tmp_path / "bad.csv"
    f.write_text(text)
    with pytest.raises(TinylargeError, match=None) as err:
        read_trace(f, height_m=0.0)
    assert says in str(err.value)
    assert "\n" not in str(err.value)


# -- the link of the moment -------------------------------------------------------------------


def uma_nlos_outage_distance_m() -> float:
    """nr-sub6 uplink outage distance, by hand (TR 38.901 Table 7.4.1-1, UMa NLOS).

    Budget: P_UE 23 dBm + 8 dBi - noise (-174 + 10 log10(100 MHz) + NF 5 = -89 dBm)
    >= SNR_min -10 dB, so PL <= 23 + 8 + 89 + 10 = 130 dB. UMa NLOS (h_UT = 1.5 m):
    PL = 13.54 + 39.08 log10(d_3D) + 20 log10(3.5 GHz); LOS at ~500 m is ~98 dB (below
    the breakpoint 4 x 24 x 0.5 x 3.5e9 / 3e8 = 560 m), so max(LOS, NLOS) is the NLOS one.
    d_2D = sqrt(d_3D^2 - (25 - 1.5)^2).
    """
    d3 = 10 ** ((130.0 - 13.54 - 20 * math.log10(3.5)) / 39.08)
    return math.sqrt(d3**2 - 23.5**2)


def test_driving_away_the_rate_falls_and_the_uplink_ends_in_outage_where_the_budget_says() -> None:
    d_star = uma_nlos_outage_distance_m()
    assert d_star == pytest.approx(502.4, abs=0.1)
    speed, period = 10.0, 0.5
    car = route(start=(100.0, 0.0), heading_deg=0.0, speed_m_s=speed, height_m=0.0)
    link = MobileLink(
        PRESETS["nr-sub6"], car, [Cell("gnb", 0.0, 0.0)],
        seed_key=(0, 0), period_s=period, hysteresis_db=3.0, los="preset",
    )  # fmt: skip
    times = np.arange(0.0, 60.0, period)
    states = [link.at(float(t)) for t in times]
    results = [s.link.transfer(10_000, direction="up") for s in states]
    rates = [r.rate_bps for r in results if not r.outage]
    assert all(a >= b for a, b in itertools.pairwise(rates))  # never recovers
    assert rates[0] > 20 * rates[-1]
    first = next(i for i, r in enumerate(results) if r.outage)
    assert all(r.outage for r in results[first:])
    step = speed * period
    assert states[first - 1].distance_m <= d_star <= states[first].distance_m
    assert states[first].distance_m - d_star <= step


def test_handover_happens_at_the_midpoint_between_two_equal_cells() -> None:
    # free space: PL = 20 log10(4 pi d f / c), so between cells 1000 m apart the two losses
    # are equal at 500 m, and the neighbour is H dB stronger where d / (1000 - d) = 10^(H/20)
    preset = replace(PRESETS["nr-sub6"], pathloss=FreeSpaceModel())
    cells = [Cell("west", 0.0, 0.0), Cell("east", 1000.0, 0.0)]
    speed, period = 1.0, 0.5
    for hysteresis, expected in [(0.0, 500.0), (6.0, 1000.0 * 10**0.3 / (1 + 10**0.3))]:
        walker = route(start=(0.0, 0.0), end=(1000.0, 0.0), speed_m_s=speed, height_m=0.0)
        link = MobileLink(
            preset, walker, cells, seed_key=(0, 0), period_s=period, hysteresis_db=hysteresis
        )
        served = [(float(t), link.at(float(t)).cell) for t in np.arange(0.0, 1000.0, period)]
        switch = next(t for t, cell in served if cell == "east")
        assert expected < switch * speed <= expected + speed * period
        assert all(cell == "west" for t, cell in served if t < switch)
        assert all(cell == "east" for t, cell in served if t >= switch)
        assert link.handovers(0.0, 1000.0) == 1
        assert link.handovers(0.0, switch - period) == 0
    assert pytest.approx(666.2, abs=0.1) == 1000.0 * 10**0.3 / (1 + 10**0.3)


def test_the_los_state_follows_the_tr38901_probability() -> None:
    # many devices parked at 100 m from a UMa cell: the LOS share is P_LOS(100 m) of
    # Table 7.4.2-1, 18/100 + exp(-100/63) (1 - 18/100) = 0.3483
    p = 18 / 100 + math.exp(-100 / 63) * (1 - 18 / 100)
    los = []
    for device in range(2000):
        parked = route(start=(100.0, 0.0), heading_deg=0.0, speed_m_s=0.0, height_m=0.0)
        link = MobileLink(
            PRESETS["nr-sub6"], parked, [Cell("gnb", 0.0, 0.0)],
            seed_key=(5, device), period_s=1.0, hysteresis_db=3.0,
        )  # fmt: skip
        states = {link.at(float(t)).los for t in range(0, 50, 5)}
        assert len(states) == 1  # a parked device keeps its state (correlated over distance)
        los.append(states.pop())
    share = float(np.mean(los))
    assert share == pytest.approx(p, abs=3 * math.sqrt(p * (1 - p) / 2000))


def test_outside_the_models_range_there_is_no_coverage() -> None:
    far = route(start=(4990.0, 0.0), heading_deg=0.0, speed_m_s=10.0, height_m=0.0)
    link = MobileLink(
        PRESETS["nb-iot"], far, [Cell("enb", 0.0, 0.0)],
        seed_key=(0, 0), period_s=0.5, hysteresis_db=3.0, los="preset",
    )  # fmt: skip
    assert link.at(0.0).covered  # 4990 m: inside UMa's 10 m - 5 km
    beyond = link.at(2.0)  # 5010 m
    assert not beyond.covered
    assert beyond.distance_m == pytest.approx(5010.0)
    assert beyond.link.transfer(100).outage
