"""Sub-THz model: free space plus P.676 absorption, 100-300 GHz only."""

from __future__ import annotations

import math

import pytest

from tinylarge.errors import TinylargeError
from tinylarge.network import subthz
from tinylarge.network.freespace import free_space_pathloss_db


def test_water_line_at_183_ghz_dominates_the_140_ghz_window() -> None:
    at_140 = subthz.absorption_db_per_km(carrier_ghz=140.0)
    at_183 = subthz.absorption_db_per_km(carrier_ghz=183.31)
    assert at_183 > 10 * at_140
    assert at_183 == pytest.approx(28.26, abs=0.01)


def test_windows_are_local_minima() -> None:
    a = subthz.absorption_db_per_km
    assert a(carrier_ghz=140.0) < a(carrier_ghz=118.75)  # O2 line
    assert a(carrier_ghz=140.0) < a(carrier_ghz=170.0)
    for f in (220.0, 240.0, 260.0, 300.0):
        assert a(carrier_ghz=f) < a(carrier_ghz=183.31) / 4


def test_interpolation_is_between_table_points() -> None:
    lo = subthz.absorption_db_per_km(carrier_ghz=240.0)
    hi = subthz.absorption_db_per_km(carrier_ghz=250.0)
    mid = subthz.absorption_db_per_km(carrier_ghz=245.0)
    assert lo < mid < hi
    assert mid == pytest.approx(math.sqrt(lo * hi))  # linear in log(gamma)


def test_free_space_loss_by_hand() -> None:
    expected = 20 * math.log10(4 * math.pi * 10.0 * 140e9 / 299_792_458.0)
    assert free_space_pathloss_db(distance_m=10.0, carrier_hz=140e9) == pytest.approx(expected)
    assert expected == pytest.approx(95.37, abs=0.01)


def test_pathloss_adds_absorption_over_distance() -> None:
    d = 500.0
    fspl = free_space_pathloss_db(distance_m=d, carrier_hz=183.31e9)
    got = subthz.pathloss_db(distance_m=d, carrier_ghz=183.31)
    assert got - fspl == pytest.approx(28.26 * 0.5, abs=0.01)


@pytest.mark.parametrize("fc", [99.0, 300.5, 60.0])
def test_carriers_outside_100_300_ghz_are_rejected(fc: float) -> None:
    with pytest.raises(TinylargeError, match="100-300 GHz"):
        subthz.pathloss_db(distance_m=10.0, carrier_ghz=fc)


def test_bad_distance_is_rejected() -> None:
    with pytest.raises(TinylargeError, match="distance_m"):
        subthz.pathloss_db(distance_m=0.0, carrier_ghz=140.0)
