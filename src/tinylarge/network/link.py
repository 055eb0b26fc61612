"""A link between a device and its base station / gateway / access point.

:class:`Link` is a thin stateful wrapper over the pure functions of
:mod:`tinylarge.network.radio`, :mod:`~tinylarge.network.lora` and the path-loss
models: it holds a :class:`~tinylarge.network.presets.LinkPreset` and a distance,
and turns "send N bytes" into a :class:`TransferResult` (seconds, joules, outage).

How a transfer is billed:

1. Path loss from the preset's model at the link distance (plus a log-normal
   shadowing draw with ``shadowing=True``), SNR from the transmit power, antenna
   gains, noise ``-174 + 10 log10(B) + NF`` and, with ``fading=True``, one
   small-scale power-gain draw (quasi-static block fading: one draw per transfer).
2. ``SNR < snr_threshold_db``: outage; nothing is sent, ``rate_bps = 0``,
   ``time_s = inf``, ``energy_j = 0`` and ``outage = True``.
3. Otherwise the full-band rate is ``min(eta B log2(1+SNR), cap)`` (wired: the line
   rate times ``efficiency``; LoRa: payload bits over the time on air).
4. ``share`` (0 < s <= 1) is this device's fraction of the cell. The SNR does not
   depend on it (constant power spectral density, as NR uplink power control and a
   base station splitting its power among users both give), so the device's rate is
   ``s x`` the full-band rate. Elapsed airtime is ``bits / (s R)``. With "ofdma"
   access the radio is on for all of it; with "tdma" only for ``bits / R``.
5. ``time_s = elapsed airtime + latency_s`` (the preset's per-transfer protocol
   latency); ``energy_j = radio-on time x draw`` with the device's transmit draw
   for "up" and its receive draw for "down". Latency is waiting, billed at idle
   power by the device model, not here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tinylarge.errors import TinylargeError
from tinylarge.network import _checks, lora, radio
from tinylarge.network.fading import FADING_MODELS, shadowing_db
from tinylarge.network.models import Tr38901Model
from tinylarge.network.presets import PRESETS, Direction, LinkPreset

#: Highest NR spectral efficiency, 256-QAM at code rate 948/1024 (TS 38.214 Table
#: 5.1.3.1-2, MCS 27), bit/s/Hz; the default MCS cap of :meth:`Link.from_scenario`.
NR_MAX_SPECTRAL_EFFICIENCY = 8 * 948 / 1024


@dataclass(frozen=True)
class LinkBudget:
    """The deterministic link budget in one direction (no fading, no shadowing)."""

    direction: Direction
    distance_m: float
    pathloss_db: float
    noise_dbm: float
    snr_db: float
    rate_bps: float
    outage: bool


@dataclass(frozen=True)
class TransferResult:
    """Cost of moving ``num_bytes`` over a link once.

    Attributes:
        num_bytes: payload bytes.
        pathloss_db: path loss used (with the shadowing draw, if any); 0 when wired.
        snr_db: SNR used (with the fading draw, if any); ``inf`` when wired.
        rate_bps: rate this device got (its share applied); 0 in outage.
        time_s: elapsed seconds: airtime plus per-transfer latency; for LoRa the time
            on air; ``inf`` in outage.
        energy_j: device radio energy, radio-on time x draw (TX for up, RX for down).
        outage: True when the SNR is below the threshold: nothing was sent.
        airtime_s: seconds the device's radio was on.
        latency_s: protocol latency included in ``time_s``.
        frames: LoRa frames used (0 for other links).
        duty_cycle_wait_s: regulatory silence needed between LoRa frames, *not*
            included in ``time_s`` (add it to model a duty-cycled transfer end to end).
        direction: "up" (device transmits) or "down" (device receives).
        share: the fraction of the cell this device had.
    """

    num_bytes: int
    pathloss_db: float
    snr_db: float
    rate_bps: float
    time_s: float
    energy_j: float
    outage: bool
    airtime_s: float
    latency_s: float
    frames: int
    duty_cycle_wait_s: float
    direction: Direction
    share: float


def _direction(value: object) -> Direction:
    if value == "up":
        return "up"
    if value == "down":
        return "down"
    raise TinylargeError(f"direction={value!r} must be 'up' or 'down'")


class Link:
    """A device's link: a preset at a distance. See the module docstring for the billing."""

    def __init__(self, preset: LinkPreset, *, distance_m: float | None = None) -> None:
        self.preset = preset
        d = preset.distance_m if distance_m is None else distance_m
        self.distance_m = _checks.non_negative("distance_m", d, " m")
        self._pathloss_db = 0.0
        self._sigma_db = 0.0
        #: Deterministic transfers (no fading, no shadowing) by (bytes, share, direction):
        #: a fleet's devices on one link send the same model thousands of times a round.
        self._memo: dict[tuple[int, float, str], TransferResult] = {}
        if preset.pathloss is not None:
            self._pathloss_db = preset.pathloss.loss_db(
                distance_m=self.distance_m, carrier_hz=preset.carrier_hz
            )
            self._sigma_db = preset.pathloss.shadowing_sigma_db(
                distance_m=self.distance_m, carrier_hz=preset.carrier_hz
            )

    def __repr__(self) -> str:
        return f"Link({self.preset.name!r}, distance_m={self.distance_m:g})"

    @classmethod
    def from_preset(cls, name: str, *, distance_m: float | None = None) -> Link:
        """The link of a registered preset (``sorted(PRESETS)``), optionally at another distance."""
        return cls(PRESETS[name], distance_m=distance_m)

    @classmethod
    def from_scenario(
        cls,
        scenario: str,
        *,
        los: bool,
        carrier_ghz: float,
        distance_m: float,
        bandwidth_mhz: float = 20.0,
        tx_power_dbm: float = 23.0,
        noise_figure_db: float = 7.0,
        efficiency: float = 0.6,
        max_rate_bps: float | None = None,
        snr_threshold_db: float = -10.0,
        antenna_gain_db: float = 0.0,
        latency_s: float = 4e-3,
        tx_draw_w: float = 2.5,
        rx_draw_w: float = 1.5,
        bs_height_m: float | None = None,
        ut_height_m: float | None = None,
        fading_model: str | None = None,
        rician_k_db: float | None = None,
    ) -> Link:
        """A cellular link over a TR 38.901 scenario; ``distance_m`` is the 2D distance.

        Defaults: 20 MHz, UE 23 dBm, NF 7 dB, eta 0.6 and SNR_min -10 dB (TR 36.942
        Annex A.2), the NR 256-QAM cap of 7.41 bit/s/Hz, 4 ms latency (ITU-R M.2410
        eMBB), the ``nr-sub6`` UE draws, Rician fading with the scenario's K for LOS
        and Rayleigh for NLOS. Uplink and downlink share all these values.
        """
        model = Tr38901Model(
            scenario=scenario, los=los, bs_height_m=bs_height_m, ut_height_m=ut_height_m
        )
        bandwidth_hz = _checks.positive("bandwidth_mhz", bandwidth_mhz, " MHz") * 1e6
        carrier = _checks.positive("carrier_ghz", carrier_ghz, " GHz")
        cap = NR_MAX_SPECTRAL_EFFICIENCY * bandwidth_hz if max_rate_bps is None else max_rate_bps
        preset = LinkPreset(
            name=f"{scenario}-{'los' if los else 'nlos'}-{carrier:g}ghz",
            description=f"{model.describe()} at {carrier:g} GHz, {bandwidth_mhz:g} MHz",
            bandwidth_hz=bandwidth_hz,
            carrier_hz=carrier * 1e9,
            tx_power_dbm=tx_power_dbm,
            noise_figure_db=noise_figure_db,
            efficiency=efficiency,
            max_rate_bps=cap,
            tx_draw_w=tx_draw_w,
            rx_draw_w=rx_draw_w,
            latency_s=latency_s,
            pathloss=model,
            distance_m=distance_m,
            snr_threshold_db=snr_threshold_db,
            antenna_gain_db=antenna_gain_db,
            fading_model=fading_model or ("rician" if los else "rayleigh"),
            rician_k_db=model.rician_k_db if rician_k_db is None else rician_k_db,
            sources=("3GPP TR 38.901 Table 7.4.1-1", "3GPP TR 36.942 Annex A.2"),
        )
        return cls(preset)

    def at(self, distance_m: float) -> Link:
        """The same link at another distance."""
        return Link(self.preset, distance_m=distance_m)

    def budget(self, *, direction: Direction = "up") -> LinkBudget:
        """Deterministic path loss, SNR and full-band rate (no fading, no shadowing)."""
        d = _direction(direction)
        p = self.preset
        if p.wired:
            rate = p.efficiency * (p.max_rate_for(d) or 0.0)
            return LinkBudget(d, self.distance_m, 0.0, -math.inf, math.inf, rate, False)
        noise = radio.noise_power_dbm(
            bandwidth_hz=p.bandwidth_hz, noise_figure_db=p.noise_figure_for(d)
        )
        snr = self._snr_db(d, self._pathloss_db, 0.0, noise)
        outage = radio.in_outage(snr_db=snr, threshold_db=p.snr_threshold_db)
        rate = 0.0 if outage else self._full_rate_bps(d, snr)
        return LinkBudget(d, self.distance_m, self._pathloss_db, noise, snr, rate, outage)

    def transfer(
        self,
        num_bytes: int,
        *,
        rng: np.random.Generator | None = None,
        share: float = 1.0,
        direction: Direction = "up",
        fading: bool = False,
        shadowing: bool = False,
    ) -> TransferResult:
        """Send ``num_bytes`` once; deterministic unless ``fading`` or ``shadowing``.

        ``rng`` is required when ``fading`` or ``shadowing`` is on.
        """
        if not (fading or shadowing):
            key = (num_bytes, share, direction)
            memo = self._memo.get(key)
            if memo is None:
                memo = self._transfer(num_bytes, None, share, direction, False, False)
                if len(self._memo) < 4096:
                    self._memo[key] = memo
            return memo
        return self._transfer(num_bytes, rng, share, direction, fading, shadowing)

    def _transfer(
        self,
        num_bytes: int,
        rng: np.random.Generator | None,
        share: float,
        direction: Direction,
        fading: bool,
        shadowing: bool,
    ) -> TransferResult:
        n = _checks.byte_count("num_bytes", num_bytes)
        s = _checks.fraction("share", share)
        d = _direction(direction)
        if (fading or shadowing) and rng is None:
            raise TinylargeError(
                "fading/shadowing need rng=numpy.random.default_rng(seed); none was given"
            )
        p = self.preset
        if p.wired:
            rate = p.efficiency * (p.max_rate_for(d) or 0.0)
            return self._bill(n, s, d, pathloss=0.0, snr=math.inf, full_rate=rate)
        pathloss = self._pathloss_db
        if shadowing and rng is not None:
            pathloss += shadowing_db(rng, sigma_db=self._sigma_db)
        gain_db = 0.0
        if fading and rng is not None:
            gain_db = radio.linear_to_db(FADING_MODELS[p.fading_model](rng, p.rician_k_db))
        noise = radio.noise_power_dbm(
            bandwidth_hz=p.bandwidth_hz, noise_figure_db=p.noise_figure_for(d)
        )
        snr = self._snr_db(d, pathloss, gain_db, noise)
        if radio.in_outage(snr_db=snr, threshold_db=p.snr_threshold_db):
            return TransferResult(
                num_bytes=n,
                pathloss_db=pathloss,
                snr_db=snr,
                rate_bps=0.0,
                time_s=math.inf,
                energy_j=0.0,
                outage=True,
                airtime_s=0.0,
                latency_s=p.latency_s,
                frames=0,
                duty_cycle_wait_s=0.0,
                direction=d,
                share=s,
            )
        if p.lora is not None:
            times = lora.frame_times_s(num_bytes=n, config=p.lora)
            on_air = math.fsum(times)
            rate = 8.0 * n / on_air if on_air > 0 else self._full_rate_bps(d, snr)
            wait = lora.duty_cycle_wait_s(frame_times_s=times, duty_cycle=p.duty_cycle)
            return self._bill(
                n, s, d, pathloss=pathloss, snr=snr, full_rate=rate, frames=len(times), wait=wait
            )
        rate = self._full_rate_bps(d, snr)
        return self._bill(n, s, d, pathloss=pathloss, snr=snr, full_rate=rate)

    # --- internals -------------------------------------------------------------------------

    def _snr_db(self, d: Direction, pathloss: float, gain_db: float, noise: float) -> float:
        p = self.preset
        return radio.snr_db(
            tx_power_dbm=p.tx_power_for(d),
            pathloss_db=pathloss,
            noise_power_dbm=noise,
            antenna_gain_db=p.antenna_gain_db,
            fading_gain_db=gain_db,
        )

    def _full_rate_bps(self, d: Direction, snr: float) -> float:
        p = self.preset
        if p.lora is not None:
            cfg = p.lora
            # nominal LoRa bit rate SF * (4 / (4 + CR)) / T_sym (AN1200.13 eq. 2)
            return cfg.spreading_factor * 4.0 / (4.0 + cfg.coding_rate) / cfg.symbol_time_s
        return radio.shannon_rate_bps(
            bandwidth_hz=p.bandwidth_hz,
            snr_db=snr,
            efficiency=p.efficiency,
            max_rate_bps=p.max_rate_for(d),
        )

    def _bill(
        self,
        n: int,
        share: float,
        d: Direction,
        *,
        pathloss: float,
        snr: float,
        full_rate: float,
        frames: int = 0,
        wait: float = 0.0,
    ) -> TransferResult:
        p = self.preset
        own = radio.airtime_s(num_bytes=n, rate_bps=full_rate)
        elapsed = own / share
        radio_on = elapsed if p.access == "ofdma" else own
        latency = p.latency_s if n > 0 else 0.0
        return TransferResult(
            num_bytes=n,
            pathloss_db=pathloss,
            snr_db=snr,
            rate_bps=full_rate * share,
            time_s=elapsed + latency,
            energy_j=radio.radio_energy_j(airtime_s=radio_on, power_w=p.draw_for(d)),
            outage=False,
            airtime_s=radio_on,
            latency_s=latency,
            frames=frames,
            duty_cycle_wait_s=wait,
            direction=d,
            share=share,
        )
