"""TR 36.777 Annex B aerial UE on UMa, against values worked by hand from Tables B-1/B-2."""

from __future__ import annotations

import math

import pytest

from tinylarge.config import ConfigError, parse_config
from tinylarge.errors import TinylargeError
from tinylarge.network import tr38901


def test_uma_av_los_probability_table_b1() -> None:
    # h = 50 m: d1 = max(460 log10 50 - 700, 18) = 81.53 m, p1 = 4300 log10 50 - 3800 =
    # 3505.6 m; at 200 m: 81.53/200 + exp(-200/3505.6) (1 - 81.53/200) = 0.9672
    assert tr38901.los_probability("uma", distance_2d_m=200.0, ut_height_m=50.0) == (
        pytest.approx(0.9672, abs=1e-4)
    )
    assert tr38901.los_probability("uma", distance_2d_m=60.0, ut_height_m=50.0) == 1.0  # < d1
    assert tr38901.los_probability("uma", distance_2d_m=3000.0, ut_height_m=150.0) == 1.0
    # at 22.5 m and below: TR 38.901's terrestrial UMa (with C'(h_UT))
    c = ((22.5 - 13) / 10) ** 1.5
    base = 18 / 200 + math.exp(-200 / 63) * (1 - 18 / 200)
    terrestrial = base * (1 + c * 5 / 4 * (200 / 100) ** 3 * math.exp(-200 / 150))
    assert tr38901.los_probability("uma", distance_2d_m=200.0, ut_height_m=22.5) == (
        pytest.approx(terrestrial)
    )


def test_uma_av_path_loss_and_shadowing_table_b2() -> None:
    # h_UT 50 m, h_BS 25 m, d_2D 500 m: d_3D = sqrt(500^2 + 25^2) = 500.62 m, fc 3.5 GHz
    d3 = math.hypot(500.0, 25.0)
    los = 28.0 + 22.0 * math.log10(d3) + 20.0 * math.log10(3.5)  # 98.27 dB
    nlos = (
        -17.5 + (46 - 7 * math.log10(50)) * math.log10(d3) + 20 * math.log10(40 * math.pi * 3.5 / 3)
    )  # 117.90 dB
    kw = {"carrier_ghz": 3.5, "distance_2d_m": 500.0, "ut_height_m": 50.0}
    assert tr38901.pathloss_db("uma", los=True, **kw) == pytest.approx(los)
    assert tr38901.pathloss_db("uma", los=False, **kw) == pytest.approx(nlos)
    assert los == pytest.approx(98.27, abs=0.01)
    assert nlos == pytest.approx(117.90, abs=0.01)
    assert tr38901.shadow_fading_sigma_db("uma", los=True, **kw) == pytest.approx(
        4.64 * math.exp(-0.0066 * 50)
    )
    assert tr38901.shadow_fading_sigma_db("uma", los=False, **kw) == 6.0
    # the terrestrial model is untouched at 1.5 m (TR 38.901 docstring value)
    assert round(tr38901.pathloss_db("uma", los=True, carrier_ghz=3.5, distance_2d_m=100.0), 2) == (
        83.14
    )


def test_aerial_limits_are_refused_in_one_line() -> None:
    with pytest.raises(TinylargeError, match="defined up to 100 m"):
        tr38901.pathloss_db("uma", los=False, carrier_ghz=3.5, distance_2d_m=500.0, ut_height_m=150)
    with pytest.raises(TinylargeError, match=r"TR 36\.777 Table B-2"):
        tr38901.pathloss_db("uma", los=True, carrier_ghz=3.5, distance_2d_m=4500.0, ut_height_m=50)
    with pytest.raises(TinylargeError, match=r"outside 1\.5-300 m"):
        tr38901.pathloss_db("uma", los=True, carrier_ghz=3.5, distance_2d_m=500.0, ut_height_m=400)
    # a drone on nr-sub6 (UMa NLOS) kept in the preset's state cannot fly above 100 m
    fly = {"model": "route", "start_m": [0, 0], "heading_deg": 0, "speed_m_s": 10}
    group = {"profile": "rpi4", "link": "nr-sub6"}
    ok = {"topology": {"devices": [group | {"mobility": fly | {"height_m": 150}}]}}
    parse_config(ok)  # LOS drawn: P_LOS is 1 up there, so never NLOS
    kept = fly | {"height_m": 150, "los": "preset"}
    bad = {"topology": {"devices": [group | {"mobility": kept}]}}
    with pytest.raises(ConfigError, match="defined up to 100 m"):
        parse_config(bad)
