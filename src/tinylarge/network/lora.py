"""LoRa time on air, fragmentation and duty cycle.

Time on air of one LoRa frame, Semtech AN1200.13 "SX1272/3/6/7/8: LoRa Modem
Designer's Guide" section 4 (the same equations as the SX1276/77/78/79 datasheet,
section 4.1.1.7):

- ``T_sym = 2^SF / BW``
- ``T_preamble = (n_preamble + 4.25) T_sym``
- ``n_payload = 8 + max(ceil((8 PL - 4 SF + 28 + 16 CRC - 20 IH) / (4 (SF - 2 DE))) (CR + 4), 0)``
- ``T_packet = T_preamble + n_payload T_sym``

with PL the payload bytes, IH = 0 for an explicit header, CRC = 1 when on,
CR = 1..4 for 4/5..4/8 and DE = 1 when low-data-rate optimisation is on. Semtech
requires it when the symbol lasts 16 ms or more, i.e. SF11 and SF12 at 125 kHz;
``None`` selects it that way.

Defaults (the presets ``lora-sf7`` ... ``lora-sf12``): 125 kHz, CR 4/5, 8 preamble
symbols, explicit header, CRC on.

Payloads above 255 bytes (the LoRa PHY maximum: the length field is one byte) are
split into 255-byte frames plus a remainder, each with its own preamble and
header. Regional rules are stricter (LoRaWAN EU868 allows 222 application bytes
at SF7 and 51 at SF12, RP002-1.0.4); use ``max_payload_bytes`` for those.

Duty cycle: in the EU 868 MHz band most sub-bands allow 1 % (ETSI EN 300 220-2),
so after a frame of time on air T the device must stay silent ``T (1/dc - 1)``
(99 T at 1 %). :func:`duty_cycle_wait_s` gives the silence a fragmented transfer
needs between frames; the link reports it separately from the time on air.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tinylarge.errors import TinylargeError
from tinylarge.network import _checks

#: Largest LoRa PHY payload, bytes (one-byte length field).
MAX_PAYLOAD_BYTES = 255

#: Demodulator SNR limit per spreading factor, dB (SX1276 datasheet Table 13).
SNR_LIMIT_DB = {6: -5.0, 7: -7.5, 8: -10.0, 9: -12.5, 10: -15.0, 11: -17.5, 12: -20.0}


@dataclass(frozen=True)
class LoraConfig:
    """LoRa modem settings; the defaults are those of the ``lora-sf*`` presets."""

    spreading_factor: int
    bandwidth_hz: float = 125e3
    coding_rate: int = 1
    preamble_symbols: int = 8
    explicit_header: bool = True
    crc: bool = True
    low_data_rate_optimize: bool | None = None
    max_payload_bytes: int = MAX_PAYLOAD_BYTES

    def __post_init__(self) -> None:
        if self.spreading_factor not in SNR_LIMIT_DB:
            raise TinylargeError(
                f"spreading_factor={self.spreading_factor!r} is not a LoRa SF; allowed: 6-12"
            )
        if self.coding_rate not in (1, 2, 3, 4):
            raise TinylargeError(
                f"coding_rate={self.coding_rate!r} must be 1-4 (4/5, 4/6, 4/7, 4/8)"
            )
        _checks.positive("bandwidth_hz", self.bandwidth_hz, " Hz")
        if not 1 <= self.max_payload_bytes <= MAX_PAYLOAD_BYTES:
            raise TinylargeError(
                f"max_payload_bytes={self.max_payload_bytes!r} must be 1-{MAX_PAYLOAD_BYTES}"
            )

    @property
    def symbol_time_s(self) -> float:
        """``2^SF / BW`` in seconds."""
        return float(2**self.spreading_factor) / self.bandwidth_hz

    @property
    def ldro(self) -> bool:
        """Whether low-data-rate optimisation is on (auto: symbol time >= 16 ms)."""
        if self.low_data_rate_optimize is None:
            return self.symbol_time_s >= 16e-3
        return self.low_data_rate_optimize

    @property
    def snr_limit_db(self) -> float:
        """The demodulator's SNR limit at this spreading factor, dB."""
        return SNR_LIMIT_DB[self.spreading_factor]


def payload_symbols(*, payload_bytes: int, config: LoraConfig) -> int:
    """Number of payload symbols ``n_payload`` (AN1200.13 eq. for the payload)."""
    pl = _checks.byte_count("payload_bytes", payload_bytes)
    if pl > config.max_payload_bytes:
        raise TinylargeError(
            f"payload_bytes={pl} exceeds one LoRa frame ({config.max_payload_bytes} bytes); "
            "use time_on_air_s for fragmented transfers"
        )
    sf = config.spreading_factor
    numerator = 8 * pl - 4 * sf + 28 + 16 * int(config.crc) - 20 * int(not config.explicit_header)
    denominator = 4 * (sf - 2 * int(config.ldro))
    return 8 + max(math.ceil(numerator / denominator) * (config.coding_rate + 4), 0)


def frame_time_on_air_s(*, payload_bytes: int, config: LoraConfig) -> float:
    """Time on air of one frame carrying ``payload_bytes`` (<= max_payload_bytes), seconds.

    >>> round(frame_time_on_air_s(payload_bytes=10, config=LoraConfig(7)) * 1e3, 3)
    41.216
    """
    n = payload_symbols(payload_bytes=payload_bytes, config=config)
    t_sym = config.symbol_time_s
    return (config.preamble_symbols + 4.25) * t_sym + n * t_sym


def fragments(*, num_bytes: int, max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> tuple[int, ...]:
    """Frame payload sizes for ``num_bytes``: full frames then a remainder; ``()`` for 0."""
    n = _checks.byte_count("num_bytes", num_bytes)
    full, rest = divmod(n, max_payload_bytes)
    return (max_payload_bytes,) * full + ((rest,) if rest else ())


def frame_times_s(*, num_bytes: int, config: LoraConfig) -> tuple[float, ...]:
    """Time on air of each frame of a (possibly fragmented) transfer, seconds."""
    return tuple(
        frame_time_on_air_s(payload_bytes=size, config=config)
        for size in fragments(num_bytes=num_bytes, max_payload_bytes=config.max_payload_bytes)
    )


def time_on_air_s(*, num_bytes: int, config: LoraConfig) -> float:
    """Total time on air of ``num_bytes``, fragmented into frames as needed, seconds."""
    return math.fsum(frame_times_s(num_bytes=num_bytes, config=config))


def duty_cycle_wait_s(*, frame_times_s: tuple[float, ...], duty_cycle: float) -> float:
    """Silence a duty-cycled radio must keep between the frames of one transfer, seconds.

    After each frame but the last the device waits ``T_frame (1/dc - 1)``.
    """
    dc = _checks.fraction("duty_cycle", duty_cycle)
    return math.fsum(t * (1.0 / dc - 1.0) for t in frame_times_s[:-1])
