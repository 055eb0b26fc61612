"""Noise floor, SNR, Shannon rate, outage and the NR peak-rate formula."""

from __future__ import annotations

import math

import pytest

from tinylarge.errors import TinylargeError
from tinylarge.network import radio


def test_noise_floor_20mhz_nf7() -> None:
    # -174 + 10 log10(20e6) + 7 = -174 + 73.0103 + 7
    assert radio.noise_power_dbm(bandwidth_hz=20e6, noise_figure_db=7.0) == pytest.approx(
        -93.9897, abs=1e-4
    )


def test_noise_floor_scales_with_bandwidth() -> None:
    n1 = radio.noise_power_dbm(bandwidth_hz=1e6, noise_figure_db=0.0)
    n10 = radio.noise_power_dbm(bandwidth_hz=10e6, noise_figure_db=0.0)
    assert n1 == pytest.approx(-114.0)
    assert n10 - n1 == pytest.approx(10.0)


def test_snr_is_power_budget() -> None:
    assert radio.snr_db(
        tx_power_dbm=23, pathloss_db=120, noise_power_dbm=-100, antenna_gain_db=5, fading_gain_db=-3
    ) == pytest.approx(23 + 5 - 120 - 3 + 100)


@pytest.mark.parametrize(
    ("snr_db", "eta", "cap", "expected"),
    [
        (0.0, 1.0, None, 1e6),  # log2(1 + 1) = 1
        (0.0, 0.5, None, 0.5e6),
        (10.0, 1.0, None, 1e6 * math.log2(11.0)),
        (10.0, 0.6, None, 0.6e6 * math.log2(11.0)),
        (30.0, 1.0, 2e6, 2e6),  # capped
        (-math.inf, 1.0, None, 0.0),
    ],
)
def test_shannon_rate(snr_db: float, eta: float, cap: float | None, expected: float) -> None:
    got = radio.shannon_rate_bps(bandwidth_hz=1e6, snr_db=snr_db, efficiency=eta, max_rate_bps=cap)
    assert got == pytest.approx(expected)


def test_shannon_rejects_bad_efficiency() -> None:
    with pytest.raises(TinylargeError, match="efficiency"):
        radio.shannon_rate_bps(bandwidth_hz=1e6, snr_db=0.0, efficiency=1.5)


def test_outage_below_threshold_only() -> None:
    assert radio.in_outage(snr_db=-10.1, threshold_db=-10.0)
    assert not radio.in_outage(snr_db=-10.0, threshold_db=-10.0)


def test_airtime_and_energy() -> None:
    assert radio.airtime_s(num_bytes=1000, rate_bps=8000.0) == pytest.approx(1.0)
    assert radio.airtime_s(num_bytes=1, rate_bps=0.0) == math.inf
    assert radio.airtime_s(num_bytes=0, rate_bps=0.0) == 0.0
    assert radio.radio_energy_j(airtime_s=2.0, power_w=0.5) == pytest.approx(1.0)


def test_db_conversions_round_trip() -> None:
    assert radio.linear_to_db(radio.db_to_linear(13.0)) == pytest.approx(13.0)
    assert radio.linear_to_db(0.0) == -math.inf


def test_nr_peak_rate_ts38306() -> None:
    # 1 layer, 256-QAM, 273 PRB at 30 kHz (T_s = 1e-3/28), OH 0.14
    hand = 8 * 948 / 1024 * 273 * 12 / (1e-3 / 28) * (1 - 0.14)
    got = radio.nr_max_data_rate_bps(n_prb=273, numerology=1, modulation_order=8, overhead=0.14)
    assert got == pytest.approx(hand)
    assert got / 1e6 == pytest.approx(584.3, abs=0.1)
