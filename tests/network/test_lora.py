"""LoRa time on air (Semtech AN1200.13), fragmentation and duty cycle.

Expected values by hand: T_sym = 2^SF / 125 kHz, preamble (8 + 4.25) T_sym,
n_payload = 8 + ceil((8 PL - 4 SF + 28 + 16 - 0) / (4 (SF - 2 DE))) * 5.
"""

from __future__ import annotations

import pytest

from tinylarge.errors import TinylargeError
from tinylarge.network import lora
from tinylarge.network.lora import LoraConfig


@pytest.mark.parametrize(
    ("sf", "payload", "expected_ms"),
    [
        (7, 10, 41.216),  # 12.25*1.024 + (8 + 4*5)*1.024
        (8, 10, 72.192),  # 12.25*2.048 + 23*2.048
        (9, 10, 144.384),
        (10, 10, 288.768),
        (11, 10, 577.536),  # LDRO: ceil(80/36) = 3 -> 23 symbols of 16.384 ms
        (12, 10, 991.232),  # LDRO: ceil(76/40) = 2 -> 18 symbols of 32.768 ms
        (7, 0, 25.856),  # ceil(16/28) = 1 -> 13 symbols
        (7, 255, 399.616),  # ceil(2056/28) = 74 -> 378 symbols
    ],
)
def test_time_on_air(sf: int, payload: int, expected_ms: float) -> None:
    got = lora.frame_time_on_air_s(payload_bytes=payload, config=LoraConfig(sf))
    assert got * 1e3 == pytest.approx(expected_ms, abs=1e-9)


def test_ldro_auto_on_for_sf11_and_sf12_only() -> None:
    assert [LoraConfig(sf).ldro for sf in range(7, 13)] == [False] * 4 + [True] * 2


def test_fragmentation_into_255_byte_frames() -> None:
    assert lora.fragments(num_bytes=600) == (255, 255, 90)
    assert lora.fragments(num_bytes=255) == (255,)
    assert lora.fragments(num_bytes=0) == ()
    # 2 x 399.616 ms + 90 bytes: ceil(736/28) = 27 -> 143 symbols -> 158.976 ms
    total = lora.time_on_air_s(num_bytes=600, config=LoraConfig(7))
    assert total * 1e3 == pytest.approx(2 * 399.616 + 158.976, abs=1e-9)


def test_regional_payload_limit() -> None:
    cfg = LoraConfig(7, max_payload_bytes=222)
    assert lora.fragments(num_bytes=500, max_payload_bytes=222) == (222, 222, 56)
    assert len(lora.frame_times_s(num_bytes=500, config=cfg)) == 3


def test_one_frame_cannot_exceed_the_phy_maximum() -> None:
    with pytest.raises(TinylargeError, match="exceeds one LoRa frame"):
        lora.frame_time_on_air_s(payload_bytes=256, config=LoraConfig(7))


def test_duty_cycle_wait_between_frames() -> None:
    times = lora.frame_times_s(num_bytes=600, config=LoraConfig(7))
    wait = lora.duty_cycle_wait_s(frame_times_s=times, duty_cycle=0.01)
    assert wait == pytest.approx(2 * 0.399616 * 99)
    assert lora.duty_cycle_wait_s(frame_times_s=times[:1], duty_cycle=0.01) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [({"spreading_factor": 13}, "6-12"), ({"spreading_factor": 7, "coding_rate": 5}, "1-4")],
)
def test_bad_config_is_rejected(kwargs: dict[str, int], fragment: str) -> None:
    with pytest.raises(TinylargeError, match=fragment):
        LoraConfig(**kwargs)  # type: ignore[arg-type]
