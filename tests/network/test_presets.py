"""One contract table over every registered link preset."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tinylarge.errors import UnknownNameError
from tinylarge.network import PRESETS, Link, LinkPreset
from tinylarge.network.lora import time_on_air_s

EXPECTED = {
    "ble-1m",
    "ble-2m",
    "lora-sf7",
    "lora-sf8",
    "lora-sf9",
    "lora-sf10",
    "lora-sf11",
    "lora-sf12",
    "nb-iot",
    "wifi6",
    "nr-sub6",
    "nr-mmwave",
    "6g-subthz",
    "ethernet",
}


def test_the_registry_holds_exactly_the_documented_presets() -> None:
    assert set(PRESETS.names()) == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_contract(name: str) -> None:
    p = PRESETS[name]
    assert isinstance(p, LinkPreset)
    assert p.name == name
    assert p.sources, "every preset cites its sources"
    assert p.tx_draw_w > 0
    assert p.rx_draw_w > 0
    link = Link.from_preset(name)
    for direction in ("up", "down"):
        budget = link.budget(direction=direction)
        assert not budget.outage, f"{name} is in outage at its own default distance"
        res = link.transfer(10_000, direction=direction)
        assert not res.outage
        assert 0 < res.time_s < math.inf
        assert res.rate_bps > 0
        draw = p.tx_draw_w if direction == "up" else p.rx_draw_w
        assert res.energy_j == pytest.approx(res.airtime_s * draw)
        assert res.time_s == pytest.approx(res.airtime_s + res.latency_s)
        # deterministic without fading / shadowing
        assert link.transfer(10_000, direction=direction) == res


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if n != "ethernet"))
def test_fading_and_shadowing_run_on_every_radio_preset(name: str) -> None:
    link = Link.from_preset(name)
    rng = np.random.default_rng(0)
    res = link.transfer(1000, rng=rng, fading=True, shadowing=True)
    budget = link.budget()
    assert res.snr_db != budget.snr_db
    sigma = link.preset.pathloss.shadowing_sigma_db(  # type: ignore[union-attr]
        distance_m=link.distance_m, carrier_hz=link.preset.carrier_hz
    )
    assert (res.pathloss_db != budget.pathloss_db) == (sigma > 0)


def test_lora_time_is_the_time_on_air() -> None:
    for sf in range(7, 13):
        p = PRESETS[f"lora-sf{sf}"]
        assert p.lora is not None
        res = Link(p).transfer(10)
        assert res.time_s == pytest.approx(time_on_air_s(num_bytes=10, config=p.lora))
    assert Link.from_preset("lora-sf7").transfer(10).time_s == pytest.approx(0.041216)


def test_lora_snr_thresholds_follow_the_datasheet() -> None:
    assert [PRESETS[f"lora-sf{sf}"].snr_threshold_db for sf in range(7, 13)] == [
        -7.5,
        -10.0,
        -12.5,
        -15.0,
        -17.5,
        -20.0,
    ]


def test_caps_and_line_rates() -> None:
    assert Link.from_preset("ble-1m").budget().rate_bps == pytest.approx(0.8e6)
    assert Link.from_preset("nb-iot").budget().rate_bps == pytest.approx(62.5e3)
    eth = Link.from_preset("ethernet").budget()
    assert eth.rate_bps == pytest.approx(1e9 * 1460 / 1538)
    assert eth.pathloss_db == 0.0
    assert eth.snr_db == math.inf


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match="6g-subthz, ble-1m"):
        Link.from_preset("zigbee")
