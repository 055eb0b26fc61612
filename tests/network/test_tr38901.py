"""TR 38.901 path loss, LOS probability and shadow fading against the formula text.

Expected values are evaluated here by hand from Table 7.4.1-1 / 7.4.2-1 (c = 3e8 m/s,
fc in GHz), never by calling the code under test.
"""

from __future__ import annotations

import math

import pytest

from tinylarge.errors import TinylargeError, UnknownNameError
from tinylarge.network import tr38901
from tinylarge.network.tr38901 import los_probability, pathloss_db, shadow_fading_sigma_db

log10 = math.log10


def d3(d2: float, h_bs: float, h_ut: float) -> float:
    return math.sqrt(d2**2 + (h_bs - h_ut) ** 2)


# --- UMa: h_BS 25 m, h_UT 1.5 m, h_E 1 m; fc 3.5 GHz -> d'_BP = 4*24*0.5*3.5e9/3e8 = 560 m


def test_uma_breakpoint_matches_note_1() -> None:
    assert tr38901.breakpoint_distance_m(
        bs_height_m=25.0, ut_height_m=1.5, carrier_ghz=3.5
    ) == pytest.approx(560.0)


def test_uma_los_before_breakpoint() -> None:
    expected = 28.0 + 22.0 * log10(d3(100, 25, 1.5)) + 20.0 * log10(3.5)
    assert expected == pytest.approx(83.138, abs=1e-3)
    assert pathloss_db("uma", los=True, carrier_ghz=3.5, distance_2d_m=100) == pytest.approx(
        expected, abs=1e-9
    )


def test_uma_los_after_breakpoint() -> None:
    expected = (
        28.0 + 40.0 * log10(d3(1000, 25, 1.5)) + 20.0 * log10(3.5) - 9.0 * log10(560.0**2 + 23.5**2)
    )
    got = pathloss_db("uma", los=True, carrier_ghz=3.5, distance_2d_m=1000)
    assert got == pytest.approx(expected, abs=1e-9)


def test_uma_nlos_is_the_nlos_formula_when_it_dominates() -> None:
    d = d3(500, 25, 1.5)
    nlos = 13.54 + 39.08 * log10(d) + 20.0 * log10(3.5) - 0.6 * (1.5 - 1.5)
    los = 28.0 + 22.0 * log10(d) + 20.0 * log10(3.5)
    assert nlos > los
    got = pathloss_db("uma", los=False, carrier_ghz=3.5, distance_2d_m=500)
    assert got == pytest.approx(nlos, abs=1e-9)


# --- UMi street canyon: h_BS 10 m; fc 2 GHz -> d'_BP = 4*9*0.5*2e9/3e8 = 120 m


def test_umi_los_before_and_after_breakpoint() -> None:
    before = 32.4 + 21.0 * log10(d3(50, 10, 1.5)) + 20.0 * log10(2.0)
    after = (
        32.4 + 40.0 * log10(d3(300, 10, 1.5)) + 20.0 * log10(2.0) - 9.5 * log10(120.0**2 + 8.5**2)
    )
    assert pathloss_db("umi", los=True, carrier_ghz=2.0, distance_2d_m=50) == pytest.approx(before)
    assert pathloss_db("umi", los=True, carrier_ghz=2.0, distance_2d_m=300) == pytest.approx(after)


def test_umi_nlos_at_28ghz() -> None:
    d = d3(200, 10, 1.5)
    nlos = 35.3 * log10(d) + 22.4 + 21.3 * log10(28.0)
    assert pathloss_db("umi", los=False, carrier_ghz=28.0, distance_2d_m=200) == pytest.approx(nlos)


# --- InH office: h_BS 3 m, h_UT 1.5 m, no breakpoint


def test_inh_los_and_nlos() -> None:
    los = 32.4 + 17.3 * log10(d3(10, 3, 1.5)) + 20.0 * log10(5.0)
    d = d3(30, 3, 1.5)
    nlos = 38.3 * log10(d) + 17.30 + 24.9 * log10(5.0)
    assert pathloss_db("inh", los=True, carrier_ghz=5.0, distance_2d_m=10) == pytest.approx(los)
    assert pathloss_db("inh", los=False, carrier_ghz=5.0, distance_2d_m=30) == pytest.approx(nlos)


def test_nlos_never_below_los_and_equals_los_where_max_bites() -> None:
    # InH at 0.5 GHz, 1.5 m: PL'_NLOS = 17.3 + 38.3 log d + 24.9 log 0.5 is below PL_LOS
    los = pathloss_db("inh", los=True, carrier_ghz=0.5, distance_2d_m=0.0)
    nlos = pathloss_db("inh", los=False, carrier_ghz=0.5, distance_2d_m=0.0)
    assert 17.3 + 38.3 * log10(1.5) + 24.9 * log10(0.5) < los
    assert nlos == los
    for scenario in tr38901.SCENARIOS:
        for d in (20.0, 80.0, 140.0):
            args = {"carrier_ghz": 3.5, "distance_2d_m": d}
            assert pathloss_db(scenario, los=False, **args) >= pathloss_db(
                scenario, los=True, **args
            )


# --- RMa: h_BS 35 m, h_UT 1.5 m, W 20 m, h 5 m; d_BP = 2 pi 35 1.5 fc / c


def _rma_pl1(d: float, fc: float, h: float = 5.0) -> float:
    return (
        20 * log10(40 * math.pi * d * fc / 3)
        + min(0.03 * math.pow(h, 1.72), 10) * log10(d)
        - min(0.044 * math.pow(h, 1.72), 14.77)
        + 0.002 * log10(h) * d
    )


def test_rma_los_before_and_after_breakpoint() -> None:
    d_bp = 2 * math.pi * 35 * 1.5 * 3.5e9 / 3e8
    assert d_bp == pytest.approx(3848.45, abs=0.01)
    before = _rma_pl1(d3(1000, 35, 1.5), 3.5)
    after = _rma_pl1(d_bp, 3.5) + 40 * log10(d3(6000, 35, 1.5) / d_bp)
    assert pathloss_db("rma", los=True, carrier_ghz=3.5, distance_2d_m=1000) == pytest.approx(
        before
    )
    assert pathloss_db("rma", los=True, carrier_ghz=3.5, distance_2d_m=6000) == pytest.approx(after)


def test_rma_nlos() -> None:
    w, h, hbs, hut, fc = 20.0, 5.0, 35.0, 1.5, 3.5
    d = d3(2000, hbs, hut)
    nlos = (
        161.04
        - 7.1 * log10(w)
        + 7.5 * log10(h)
        - (24.37 - 3.7 * (h / hbs) ** 2) * log10(hbs)
        + (43.42 - 3.1 * log10(hbs)) * (log10(d) - 3)
        + 20 * log10(fc)
        - (3.2 * log10(11.75 * hut) ** 2 - 4.97)
    )
    assert nlos > _rma_pl1(d, fc)
    assert pathloss_db("rma", los=False, carrier_ghz=3.5, distance_2d_m=2000) == pytest.approx(nlos)


def test_custom_heights_are_used() -> None:
    # UMa with h_UT = 10 m: NLOS term -0.6 (h_UT - 1.5) and h'_UT = 9 m in the breakpoint
    d = d3(300, 25, 10)
    los = 28.0 + 22.0 * log10(d) + 20 * log10(3.5)  # 300 m < d'_BP = 4*24*9*3.5e9/3e8
    nlos = 13.54 + 39.08 * log10(d) + 20 * log10(3.5) - 0.6 * (10 - 1.5)
    got = pathloss_db("uma", los=False, carrier_ghz=3.5, distance_2d_m=300, ut_height_m=10.0)
    assert got == pytest.approx(max(los, nlos))


# --- LOS probability, Table 7.4.2-1


@pytest.mark.parametrize(
    ("scenario", "d", "h_ut", "expected"),
    [
        ("uma", 10.0, 1.5, 1.0),
        ("uma", 100.0, 1.5, 18 / 100 + math.exp(-100 / 63) * (1 - 18 / 100)),
        (
            "uma",
            100.0,
            20.0,
            (18 / 100 + math.exp(-100 / 63) * (1 - 18 / 100))
            * (1 + (0.7**1.5) * 5 / 4 * 1.0 * math.exp(-100 / 150)),
        ),
        ("umi", 18.0, 1.5, 1.0),
        ("umi", 100.0, 1.5, 18 / 100 + math.exp(-100 / 36) * (1 - 18 / 100)),
        ("rma", 1010.0, 1.5, math.exp(-1.0)),
        ("inh", 1.0, 1.5, 1.0),
        ("inh", 5.0, 1.5, math.exp(-3.8 / 4.7)),
        ("inh", 20.0, 1.5, 0.32 * math.exp(-13.5 / 32.6)),
    ],
)
def test_los_probability(scenario: str, d: float, h_ut: float, expected: float) -> None:
    assert los_probability(scenario, distance_2d_m=d, ut_height_m=h_ut) == pytest.approx(expected)


def test_los_probability_anchor_values() -> None:
    assert los_probability("uma", distance_2d_m=100.0) == pytest.approx(0.3477, abs=1e-4)
    assert los_probability("umi", distance_2d_m=100.0) == pytest.approx(0.2310, abs=1e-4)


def test_inh_open_office_los_probability() -> None:
    f = tr38901.los_probability_inh_open_office
    assert f(distance_2d_m=5.0) == 1.0
    assert f(distance_2d_m=30.0) == pytest.approx(math.exp(-25 / 70.8))
    assert f(distance_2d_m=100.0) == pytest.approx(0.54 * math.exp(-51 / 211.7))


def test_los_probability_decreases_with_distance() -> None:
    for scenario in tr38901.SCENARIOS:
        probs = [los_probability(scenario, distance_2d_m=d) for d in (20, 50, 100, 200, 400)]
        assert probs == sorted(probs, reverse=True)
        assert all(0.0 < p <= 1.0 for p in probs)


# --- shadow fading sigma, Table 7.4.1-1


@pytest.mark.parametrize(
    ("scenario", "los", "d", "sigma"),
    [
        ("uma", True, 100.0, 4.0),
        ("uma", False, 100.0, 6.0),
        ("umi", True, 100.0, 4.0),
        ("umi", False, 100.0, 7.82),
        ("inh", True, 10.0, 3.0),
        ("inh", False, 10.0, 8.03),
        ("rma", True, 1000.0, 4.0),
        ("rma", True, 6000.0, 6.0),
        ("rma", False, 1000.0, 8.0),
    ],
)
def test_shadow_fading_sigma(scenario: str, los: bool, d: float, sigma: float) -> None:
    got = shadow_fading_sigma_db(scenario, los=los, carrier_ghz=3.5, distance_2d_m=d)
    assert got == sigma


# --- validity


@pytest.mark.parametrize(
    ("scenario", "los", "fc", "d", "fragment"),
    [
        ("uma", True, 3.5, 5.0, "10-5000 m"),
        ("uma", False, 3.5, 6000.0, "10-5000 m"),
        ("umi", True, 3.5, -1.0, ">= 0"),
        ("rma", False, 3.5, 7000.0, "10-5000 m"),
        ("rma", True, 31.0, 100.0, "0.5-30 GHz"),
        ("uma", True, 0.4, 100.0, "0.5-100 GHz"),
        ("inh", True, 3.5, 200.0, "1-150 m"),
        ("uma", True, float("nan"), 100.0, "finite"),
    ],
)
def test_out_of_range_inputs_are_rejected(
    scenario: str, los: bool, fc: float, d: float, fragment: str
) -> None:
    with pytest.raises(TinylargeError, match=fragment):
        pathloss_db(scenario, los=los, carrier_ghz=fc, distance_2d_m=d)


def test_rma_los_valid_to_10_km() -> None:
    assert pathloss_db("rma", los=True, carrier_ghz=0.7, distance_2d_m=10_000) > 0


def test_unknown_scenario_lists_known_names() -> None:
    with pytest.raises(UnknownNameError, match="inh, rma, uma, umi"):
        pathloss_db("suburban", los=True, carrier_ghz=3.5, distance_2d_m=100)


def test_ut_above_bs_is_rejected() -> None:
    with pytest.raises(TinylargeError, match="below bs_height_m"):
        pathloss_db("umi", los=True, carrier_ghz=3.5, distance_2d_m=100, ut_height_m=12.0)
