"""Link: deterministic budget by hand, shares, outage, fading, energy billing."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from tinylarge.errors import TinylargeError
from tinylarge.network import PRESETS, Link


def test_scenario_budget_by_hand() -> None:
    link = Link.from_scenario("uma", los=True, carrier_ghz=3.5, distance_m=200.0)
    pl = 28.0 + 22.0 * math.log10(math.hypot(200.0, 23.5)) + 20.0 * math.log10(3.5)
    noise = -174.0 + 10 * math.log10(20e6) + 7.0
    snr = 23.0 - pl - noise
    rate = 0.6 * 20e6 * math.log2(1 + 10 ** (snr / 10))
    b = link.budget()
    assert b.pathloss_db == pytest.approx(pl)
    assert b.noise_dbm == pytest.approx(noise)
    assert b.snr_db == pytest.approx(snr)
    assert b.rate_bps == pytest.approx(rate)
    res = link.transfer(1_000_000)
    assert res.airtime_s == pytest.approx(8e6 / rate)
    assert res.time_s == pytest.approx(8e6 / rate + 4e-3)
    assert res.energy_j == pytest.approx(8e6 / rate * 2.5)
    assert not res.outage


def test_default_cap_is_nr_peak_spectral_efficiency() -> None:
    near = Link.from_scenario("inh", los=True, carrier_ghz=3.5, distance_m=2.0)
    assert near.budget().rate_bps == pytest.approx(8 * 948 / 1024 * 20e6)


def test_share_scales_rate_and_time_ofdma_bills_the_whole_time() -> None:
    link = Link.from_preset("nr-sub6")
    full = link.transfer(1_000_000)
    half = link.transfer(1_000_000, share=0.5)
    assert half.rate_bps == pytest.approx(full.rate_bps / 2)
    assert half.airtime_s == pytest.approx(2 * full.airtime_s)
    assert half.energy_j == pytest.approx(2 * full.energy_j)
    assert half.snr_db == full.snr_db


def test_tdma_share_waits_but_bills_only_own_airtime() -> None:
    link = Link.from_preset("ble-1m")
    full = link.transfer(100_000)
    quarter = link.transfer(100_000, share=0.25)
    assert quarter.time_s - quarter.latency_s == pytest.approx(4 * (full.time_s - full.latency_s))
    assert quarter.energy_j == pytest.approx(full.energy_j)


def test_downlink_uses_receive_draw_and_downlink_power() -> None:
    link = Link.from_preset("nr-sub6")
    up, down = link.transfer(10**6, direction="up"), link.transfer(10**6, direction="down")
    p = link.preset
    assert up.energy_j == pytest.approx(up.airtime_s * p.tx_draw_w)
    assert down.energy_j == pytest.approx(down.airtime_s * p.rx_draw_w)
    assert down.snr_db - up.snr_db == pytest.approx((46 - 23) - (9 - 5))


def test_outage_far_away_lora_sf7_but_not_sf12() -> None:
    far7 = Link.from_preset("lora-sf7", distance_m=6000.0).transfer(50)
    far12 = Link.from_preset("lora-sf12", distance_m=6000.0).transfer(50)
    assert far7.outage
    assert far7.time_s == math.inf
    assert far7.rate_bps == 0.0
    assert far7.energy_j == 0.0
    assert not far12.outage
    assert far12.time_s < math.inf


def test_outage_in_scenario_budget() -> None:
    link = Link.from_scenario(
        "uma", los=False, carrier_ghz=28.0, distance_m=4000.0, tx_power_dbm=0.0
    )
    assert link.budget().outage
    assert link.budget().rate_bps == 0.0
    assert link.transfer(10).outage


def test_lora_fragmented_transfer_reports_frames_and_duty_cycle() -> None:
    res = Link.from_preset("lora-sf7").transfer(600)
    assert res.frames == 3
    assert res.time_s == pytest.approx(0.958208)
    assert res.duty_cycle_wait_s == pytest.approx(2 * 0.399616 * 99)
    assert res.rate_bps == pytest.approx(600 * 8 / 0.958208)


def test_fading_needs_an_rng() -> None:
    with pytest.raises(TinylargeError, match="rng"):
        Link.from_preset("wifi6").transfer(100, fading=True)


def test_fading_is_reproducible_from_the_seed() -> None:
    link = Link.from_preset("nr-sub6")
    a = link.transfer(10**5, rng=np.random.default_rng(5), fading=True, shadowing=True)
    b = link.transfer(10**5, rng=np.random.default_rng(5), fading=True, shadowing=True)
    c = link.transfer(10**5, rng=np.random.default_rng(6), fading=True, shadowing=True)
    assert a == b
    assert a != c


def test_strong_rician_fading_is_close_to_the_budget() -> None:
    preset = dataclasses.replace(PRESETS["wifi6"], fading_model="rician", rician_k_db=40.0)
    link = Link(preset)
    rng = np.random.default_rng(0)
    snrs = [link.transfer(100, rng=rng, fading=True).snr_db for _ in range(200)]
    assert max(abs(s - link.budget().snr_db) for s in snrs) < 0.2


def test_rayleigh_fading_causes_outage_near_the_threshold() -> None:
    # UMa NLOS at 350 m: SNR ~3 dB above the -10 dB threshold, so Rayleigh fades deeper
    # than the margin (probability 1 - exp(-10^(-margin/10)), ~40 %) cut the link
    link = Link.from_scenario("uma", los=False, carrier_ghz=3.5, distance_m=350.0)
    margin = link.budget().snr_db - link.preset.snr_threshold_db
    assert 1.0 < margin < 6.0
    rng = np.random.default_rng(0)
    outages = [link.transfer(100, rng=rng, fading=True).outage for _ in range(2000)]
    expected = 1 - math.exp(-(10 ** (-margin / 10)))  # P(|h|^2 < 10^(-margin/10))
    assert sum(outages) / 2000 == pytest.approx(expected, abs=0.04)


def test_shadowing_is_centred_on_the_median_loss() -> None:
    link = Link.from_preset("nb-iot")
    rng = np.random.default_rng(1)
    pls = [link.transfer(10, rng=rng, shadowing=True).pathloss_db for _ in range(4000)]
    assert np.mean(pls) == pytest.approx(link.budget().pathloss_db, abs=0.3)
    assert np.std(pls) == pytest.approx(6.0, abs=0.3)  # UMa NLOS sigma


def test_zero_bytes_costs_nothing() -> None:
    res = Link.from_preset("nr-sub6").transfer(0)
    assert res.time_s == 0.0
    assert res.energy_j == 0.0


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"share": 0.0}, "share"),
        ({"share": 1.5}, "share"),
        ({"direction": "sideways"}, "direction"),
    ],
)
def test_bad_transfer_arguments(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(TinylargeError, match=fragment):
        Link.from_preset("nr-sub6").transfer(10, **kwargs)  # type: ignore[arg-type]


def test_bad_byte_count() -> None:
    with pytest.raises(TinylargeError, match="num_bytes"):
        Link.from_preset("nr-sub6").transfer(-1)


def test_bad_distance_is_rejected_when_the_link_is_built() -> None:
    with pytest.raises(TinylargeError, match="distance_m"):
        Link.from_preset("nr-sub6", distance_m=-3.0)
    with pytest.raises(TinylargeError, match="10-5000 m"):
        Link.from_scenario("umi", los=True, carrier_ghz=28.0, distance_m=5.0)


def test_rician_default_for_los_rayleigh_for_nlos() -> None:
    los = Link.from_scenario("umi", los=True, carrier_ghz=28.0, distance_m=50.0)
    nlos = Link.from_scenario("umi", los=False, carrier_ghz=28.0, distance_m=50.0)
    assert (los.preset.fading_model, los.preset.rician_k_db) == ("rician", 9.0)
    assert nlos.preset.fading_model == "rayleigh"
