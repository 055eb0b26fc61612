"""Named link presets: radio parameters, channel model and radio power for energy.

Each :class:`LinkPreset` is one frozen bundle of what a :class:`~tinylarge.network.link.Link`
needs, with the documents its figures come from in ``sources``. Figures marked
*estimate* in ``notes`` have no single datasheet behind them; replace them with
your module's numbers by building a preset with :func:`dataclasses.replace`.

Direction convention: ``tx_power_dbm``, ``noise_figure_db`` and ``max_rate_bps``
describe the uplink (device transmits, base station / gateway / AP receives);
the ``downlink_*`` fields, when set, describe the other way. ``tx_draw_w`` and
``rx_draw_w`` are the *device's* radio power draw while transmitting and
receiving, so ``energy = radio-on time x draw``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tinylarge.errors import TinylargeError
from tinylarge.network import _checks
from tinylarge.network.fading import FADING_MODELS
from tinylarge.network.lora import LoraConfig
from tinylarge.network.models import LogDistanceModel, PathLossModel, SubThzModel, Tr38901Model
from tinylarge.network.radio import nr_max_data_rate_bps
from tinylarge.registry import Registry

Direction = Literal["up", "down"]
Access = Literal["ofdma", "tdma"]


@dataclass(frozen=True)
class LinkPreset:
    """A radio (or wired) link: channel, radio, MCS cap, latency and device radio power.

    Attributes:
        name: registry key.
        description: one line for people.
        bandwidth_hz: the cell/channel bandwidth shared by its devices (0 when wired).
        carrier_hz: centre frequency (0 when wired).
        tx_power_dbm: device transmit power (uplink).
        noise_figure_db: receiver noise figure of the uplink receiver.
        efficiency: eta of ``eta * B * log2(1 + SNR)``; for wired links the payload
            fraction of the line rate.
        max_rate_bps: highest-MCS uplink rate over the whole bandwidth (None: no cap);
            the line rate for wired links.
        tx_draw_w: device radio power draw while transmitting, watts.
        rx_draw_w: device radio power draw while receiving, watts.
        latency_s: per-transfer air-interface/protocol latency added to the airtime.
        pathloss: channel model; None for a wired link (no channel).
        distance_m: default distance (2D for TR 38.901 models).
        snr_threshold_db: below this SNR the link is in outage.
        antenna_gain_db: sum of transmit and receive antenna (and beamforming) gains.
        downlink_tx_power_dbm / downlink_noise_figure_db / max_rate_down_bps: the
            downlink values when they differ from the uplink ones.
        lora: LoRa modem settings; when set, airtime is the LoRa time on air.
        duty_cycle: regulatory duty cycle (1.0 = none); see :mod:`tinylarge.network.lora`.
        access: "ofdma" (a device with share s holds s of the band for the whole
            transfer, radio on throughout) or "tdma" (the device gets the whole band a
            fraction s of the time; its radio is on only for its own airtime).
        fading_model: name in :data:`~tinylarge.network.fading.FADING_MODELS` used when
            a transfer asks for fading.
        rician_k_db: K factor for "rician" fading.
        sources: URLs or document ids for the figures.
        notes: how derived figures were obtained, and which are estimates.
    """

    name: str
    description: str
    bandwidth_hz: float
    carrier_hz: float
    tx_power_dbm: float
    noise_figure_db: float
    efficiency: float
    max_rate_bps: float | None
    tx_draw_w: float
    rx_draw_w: float
    latency_s: float
    pathloss: PathLossModel | None
    distance_m: float
    snr_threshold_db: float
    antenna_gain_db: float = 0.0
    downlink_tx_power_dbm: float | None = None
    downlink_noise_figure_db: float | None = None
    max_rate_down_bps: float | None = None
    lora: LoraConfig | None = None
    duty_cycle: float = 1.0
    access: Access = "ofdma"
    fading_model: str = "rayleigh"
    rician_k_db: float = 9.0
    sources: tuple[str, ...] = ()
    notes: str = ""

    def __post_init__(self) -> None:
        _checks.fraction("efficiency", self.efficiency)
        _checks.non_negative("tx_draw_w", self.tx_draw_w, " W")
        _checks.non_negative("rx_draw_w", self.rx_draw_w, " W")
        _checks.non_negative("latency_s", self.latency_s, " s")
        _checks.fraction("duty_cycle", self.duty_cycle)
        FADING_MODELS[self.fading_model]
        if self.access not in ("ofdma", "tdma"):
            raise TinylargeError(f"access={self.access!r} must be 'ofdma' or 'tdma'")
        if self.pathloss is None:
            if self.max_rate_bps is None:
                raise TinylargeError(f"wired preset {self.name!r} needs max_rate_bps (line rate)")
        else:
            _checks.positive("bandwidth_hz", self.bandwidth_hz, " Hz")
            _checks.positive("carrier_hz", self.carrier_hz, " Hz")
            for name in ("tx_power_dbm", "downlink_tx_power_dbm"):
                power = getattr(self, name)
                if power is not None:  # 0.1 fW (far below any receiver) to 10 MW
                    _checks.in_range(name, power, -100.0, 100.0, unit=" dBm", source="a radio")
            _checks.non_negative("noise_figure_db", self.noise_figure_db, " dB")

    @property
    def wired(self) -> bool:
        """True for a link without a radio channel."""
        return self.pathloss is None

    def tx_power_for(self, direction: Direction) -> float:
        """Transmit power in dBm of the sender in ``direction``."""
        if direction == "down" and self.downlink_tx_power_dbm is not None:
            return self.downlink_tx_power_dbm
        return self.tx_power_dbm

    def noise_figure_for(self, direction: Direction) -> float:
        """Noise figure in dB of the receiver in ``direction``."""
        if direction == "down" and self.downlink_noise_figure_db is not None:
            return self.downlink_noise_figure_db
        return self.noise_figure_db

    def max_rate_for(self, direction: Direction) -> float | None:
        """MCS cap in bit/s over the whole bandwidth in ``direction``."""
        if direction == "down" and self.max_rate_down_bps is not None:
            return self.max_rate_down_bps
        return self.max_rate_bps

    def draw_for(self, direction: Direction) -> float:
        """Device radio power draw in W: transmitting for "up", receiving for "down"."""
        return self.tx_draw_w if direction == "up" else self.rx_draw_w


PRESETS: Registry[LinkPreset] = Registry("link preset")

# --- Bluetooth Low Energy ----------------------------------------------------------------

_BLE_SOURCES = (
    "https://www.bluetooth.com/specifications/specs/core-specification-5-4/",
    "https://docs.nordicsemi.com/bundle/ps_nrf52840/page/radio.html",
    "https://novelbits.io/bluetooth-5-speed-maximum-throughput/",
)
_BLE_NOTES = (
    "nRF52840 radio currents at 3.0 V with DC/DC: TX 0 dBm 6.4 mA, RX 6.26 mA. "
    "NF 7 dB with a 12 dB SNR threshold reproduces the nRF52840 sensitivity "
    "(-95 dBm at 1 Mbit/s, -92 dBm at 2 Mbit/s). Caps: application throughput with "
    "data-length extension (~0.8 Mbit/s 1M PHY, ~1.4 Mbit/s 2M PHY). Latency: one "
    "7.5 ms minimum connection interval. Channel: indoor log-distance, n = 3.0 "
    "(ITU-R P.1238 office distance-power coefficient near 2.4 GHz), free space at "
    "1 m; sigma 4 dB is an estimate between TR 38.901 InH LOS (3) and NLOS (8.03)."
)
for _name, _bw, _cap in (("ble-1m", 1e6, 0.8e6), ("ble-2m", 2e6, 1.4e6)):
    PRESETS.add(
        _name,
        LinkPreset(
            name=_name,
            description=f"Bluetooth LE {_name[-2:].upper()} PHY, 0 dBm, indoor",
            bandwidth_hz=_bw,
            carrier_hz=2.44e9,
            tx_power_dbm=0.0,
            noise_figure_db=7.0,
            efficiency=1.0,
            max_rate_bps=_cap,
            tx_draw_w=6.4e-3 * 3.0,
            rx_draw_w=6.26e-3 * 3.0,
            latency_s=7.5e-3,
            pathloss=LogDistanceModel(exponent=3.0, sigma_db=4.0),
            distance_m=5.0,
            snr_threshold_db=12.0,
            access="tdma",
            sources=_BLE_SOURCES,
            notes=_BLE_NOTES,
        ),
    )

# --- LoRa (EU868) --------------------------------------------------------------------------

_LORA_SOURCES = (
    "Semtech AN1200.13 LoRa Modem Designer's Guide: "
    "https://www.semtech.com/uploads/documents/LoraDesignGuide_STD.pdf",
    "https://www.semtech.com/products/wireless-rf/lora-connect/sx1276",
    "Petajajarvi et al., On the coverage of LPWANs, ITST 2015, doi:10.1109/ITST.2015.7377400",
    "Bor et al., Do LoRa LPWANs scale?, MSWiM 2016 (LoRaSim SX1272 currents): "
    "https://www.lancaster.ac.uk/scc/sites/lora/lorasim.html",
    "ETSI EN 300 220-2 (868 MHz sub-band duty cycle 1 %)",
)
_LORA_NOTES = (
    "125 kHz, CR 4/5, 8 preamble symbols, explicit header, CRC on, LDRO on SF11/SF12. "
    "NF 6 dB reproduces the SX1276 sensitivity (-137 dBm at SF12/125 kHz with its -20 dB "
    "SNR limit); SNR limits per SF from the SX1276 datasheet. Radio draw at 3.0 V: TX "
    "+14 dBm 44 mA (LoRaSim/SX1272 table), RX 11.5 mA (SX1276). Channel: Petajajarvi "
    "Oulu ground measurement, PL = 128.95 + 23.2 log10(d/1 km), sigma 7.8 dB. Airtime "
    "is the time on air; the 1 % duty-cycle silence between fragments is reported as "
    "duty_cycle_wait_s, not added to time_s."
)
for _sf in range(7, 13):
    _cfg = LoraConfig(spreading_factor=_sf)
    PRESETS.add(
        f"lora-sf{_sf}",
        LinkPreset(
            name=f"lora-sf{_sf}",
            description=f"LoRa EU868 SF{_sf}/125 kHz, 14 dBm, urban outdoor",
            bandwidth_hz=125e3,
            carrier_hz=868.1e6,
            tx_power_dbm=14.0,
            noise_figure_db=6.0,
            efficiency=1.0,
            max_rate_bps=None,
            tx_draw_w=44e-3 * 3.0,
            rx_draw_w=11.5e-3 * 3.0,
            latency_s=0.0,
            pathloss=LogDistanceModel(
                exponent=2.32,
                reference_distance_m=1000.0,
                reference_loss_db=128.95,
                sigma_db=7.8,
            ),
            distance_m=2000.0,
            snr_threshold_db=_cfg.snr_limit_db,
            lora=_cfg,
            duty_cycle=0.01,
            access="tdma",
            sources=_LORA_SOURCES,
            notes=_LORA_NOTES,
        ),
    )

# --- NB-IoT --------------------------------------------------------------------------------

PRESETS.add(
    "nb-iot",
    LinkPreset(
        name="nb-iot",
        description="NB-IoT Cat-NB1, 180 kHz at 800 MHz (band 20), UMa NLOS",
        bandwidth_hz=180e3,
        carrier_hz=800e6,
        tx_power_dbm=23.0,
        noise_figure_db=5.0,
        efficiency=0.4,
        max_rate_bps=62.5e3,
        tx_draw_w=0.167 * 3.6,
        rx_draw_w=0.054 * 3.6,
        latency_s=1.6,
        pathloss=Tr38901Model(scenario="uma", los=False),
        distance_m=1000.0,
        snr_threshold_db=-24.5,
        downlink_tx_power_dbm=43.0,
        max_rate_down_bps=21.25e3,
        sources=(
            "3GPP TS 36.306 (UE category NB1)",
            "3GPP TR 45.820 (164 dB MCL; 10 s exception-report latency)",
            "3GPP TR 36.942 Annex A.2 (attenuated Shannon, eta = 0.4 uplink)",
            "https://docs.m5stack.com/zh_CN/module/nb-iot (M5311 module currents, rates)",
        ),
        notes=(
            "Caps: Cat-NB1 multi-tone 62.5 kbit/s UL, 21.25 kbit/s DL (module datasheet; "
            "Cat-NB2 reaches 159/127 kbit/s). Draw at 3.6 V: TX 23 dBm 167 mA, RX 54 mA. "
            "Threshold: the SNR at the 164 dB MCL over 180 kHz with NF 5 dB, "
            "23 - 164 - (-174 + 52.55 + 5) = -24.5 dB. Latency 1.6 s is the good-coverage "
            "end of the 1.6-10 s range (estimate); 10 s is the TR 45.820 bound at 164 dB. "
            "eNB downlink 43 dBm (stand-alone deployment)."
        ),
    ),
)

# --- Wi-Fi 6 (MCU-class station) -----------------------------------------------------------

PRESETS.add(
    "wifi6",
    LinkPreset(
        name="wifi6",
        description="Wi-Fi 6 HE20 at 2.4 GHz, MCU-class station (ESP32-C6), indoor",
        bandwidth_hz=20e6,
        carrier_hz=2.437e9,
        tx_power_dbm=20.0,
        noise_figure_db=7.0,
        efficiency=0.6,
        max_rate_bps=30e6,
        tx_draw_w=0.35 * 3.3,
        rx_draw_w=0.08 * 3.3,
        latency_s=1e-3,
        pathloss=Tr38901Model(scenario="inh", los=False),
        distance_m=15.0,
        snr_threshold_db=4.0,
        sources=(
            "https://www.espressif.com/sites/default/files/documentation/esp32-c6_datasheet_en.pdf",
            "https://docs.espressif.com/projects/esp-idf/en/latest/esp32c6/api-guides/wifi.html",
            "IEEE Std 802.11ax-2021 (HE-MCS0 minimum sensitivity -82 dBm at 20 MHz)",
        ),
        notes=(
            "Cap: ESP32-C6 UDP throughput of 30 Mbit/s (ESP-IDF Wi-Fi guide); the HE20 "
            "MCS9 PHY rate is 114.7 Mbit/s. Draw at 3.3 V: TX up to ~350 mA (datasheet "
            "peak), RX ~80 mA (estimate). Threshold 4 dB: the SNR behind the -82 dBm "
            "HE-MCS0 sensitivity (NF 10 dB + 5 dB margin in the standard's derivation). "
            "Latency 1 ms of contention and block-ack (estimate). Channel: TR 38.901 InH "
            "NLOS, AP at 3 m."
        ),
    ),
)

# --- 5G NR ---------------------------------------------------------------------------------

_NR_SOURCES = (
    "3GPP TS 38.306 section 4.1.2 (max data rate)",
    "3GPP TR 38.901 Table 7.4.1-1 (path loss) and Table 7.3-1 (8 dBi element gain)",
    "ITU-R M.2410-0 (user-plane latency 4 ms eMBB, 1 ms URLLC): "
    "https://www.itu.int/pub/R-REP-M.2410-2017",
    "3GPP TR 36.942 Annex A.2 (attenuated Shannon, SNR_min -10 dB)",
)
PRESETS.add(
    "nr-sub6",
    LinkPreset(
        name="nr-sub6",
        description="5G NR n78: 100 MHz at 3.5 GHz, UMa NLOS",
        bandwidth_hz=100e6,
        carrier_hz=3.5e9,
        tx_power_dbm=23.0,
        noise_figure_db=5.0,
        efficiency=0.6,
        max_rate_bps=nr_max_data_rate_bps(
            n_prb=273, numerology=1, modulation_order=6, overhead=0.08
        ),
        tx_draw_w=2.5,
        rx_draw_w=1.5,
        latency_s=4e-3,
        pathloss=Tr38901Model(scenario="uma", los=False),
        distance_m=300.0,
        snr_threshold_db=-10.0,
        antenna_gain_db=8.0,
        downlink_tx_power_dbm=46.0,
        downlink_noise_figure_db=9.0,
        max_rate_down_bps=nr_max_data_rate_bps(
            n_prb=273, numerology=1, modulation_order=8, overhead=0.14
        ),
        sources=_NR_SOURCES,
        notes=(
            "Caps: TS 38.306 one layer, 273 PRB at 30 kHz: UL 64-QAM 468.8 Mbit/s, DL "
            "256-QAM 584.3 Mbit/s (TDD UL/DL split not modelled). UE 23 dBm, NF 9 dB; gNB "
            "46 dBm, NF 5 dB, 8 dBi element gain. UE modem draw TX 2.5 W, RX 1.5 W are "
            "estimates (no single datasheet)."
        ),
    ),
)
PRESETS.add(
    "nr-mmwave",
    LinkPreset(
        name="nr-mmwave",
        description="5G NR FR2: 400 MHz at 28 GHz, UMi street canyon LOS, beamformed",
        bandwidth_hz=400e6,
        carrier_hz=28e9,
        tx_power_dbm=23.0,
        noise_figure_db=7.0,
        efficiency=0.6,
        max_rate_bps=nr_max_data_rate_bps(
            n_prb=264, numerology=3, modulation_order=6, overhead=0.10
        ),
        tx_draw_w=3.0,
        rx_draw_w=2.0,
        latency_s=1e-3,
        pathloss=Tr38901Model(scenario="umi", los=True),
        distance_m=100.0,
        snr_threshold_db=-10.0,
        antenna_gain_db=30.0,
        downlink_tx_power_dbm=35.0,
        downlink_noise_figure_db=10.0,
        max_rate_down_bps=nr_max_data_rate_bps(
            n_prb=264, numerology=3, modulation_order=6, overhead=0.18
        ),
        rician_k_db=9.0,
        fading_model="rician",
        sources=_NR_SOURCES,
        notes=(
            "Caps: TS 38.306 one layer, 264 PRB at 120 kHz, 64-QAM: UL 1773.9 Mbit/s, DL "
            "1616.2 Mbit/s. Antenna gain 30 dB: gNB array plus UE module beamforming "
            "(estimate). gNB 35 dBm, NF 7 dB; UE NF 10 dB. Latency 1 ms (0.125 ms slots; "
            "ITU-R M.2410 URLLC target). UE draw TX 3 W, RX 2 W are estimates."
        ),
    ),
)

# --- 6G sub-THz ----------------------------------------------------------------------------

PRESETS.add(
    "6g-subthz",
    LinkPreset(
        name="6g-subthz",
        description="6G sub-THz: 10 GHz at 140 GHz (D band), 20 m LOS, high-gain arrays",
        bandwidth_hz=10e9,
        carrier_hz=140e9,
        tx_power_dbm=15.0,
        noise_figure_db=10.0,
        efficiency=0.6,
        max_rate_bps=100e9,
        tx_draw_w=3.0,
        rx_draw_w=2.0,
        latency_s=1e-4,
        pathloss=SubThzModel(),
        distance_m=20.0,
        snr_threshold_db=-5.0,
        antenna_gain_db=50.0,
        fading_model="rician",
        rician_k_db=15.0,
        sources=(
            "ITU-R M.2160-0 (IMT-2030 framework; 0.1-1 ms latency): "
            "https://www.itu.int/rec/R-REC-M.2160-0-202311-I/en",
            "Rappaport et al., Wireless communications and applications above 100 GHz, "
            "IEEE Access 2019, doi:10.1109/ACCESS.2019.2921522",
            "https://www.itu.int/rec/R-REC-P.676-12-201908-S/en",
        ),
        notes=(
            "A forward-looking preset: bandwidth, power, 25 dBi per side, 100 Gbit/s cap, "
            "K = 15 dB and the 3 W / 2 W transceiver draws are estimates in the range of the "
            "sub-THz literature, not a product. Channel: free space + P.676 absorption."
        ),
    ),
)

# --- wired ---------------------------------------------------------------------------------

PRESETS.add(
    "ethernet",
    LinkPreset(
        name="ethernet",
        description="Gigabit Ethernet (1000BASE-T), wired backhaul, no channel",
        bandwidth_hz=0.0,
        carrier_hz=0.0,
        tx_power_dbm=0.0,
        noise_figure_db=0.0,
        efficiency=1460 / 1538,
        max_rate_bps=1e9,
        tx_draw_w=0.5,
        rx_draw_w=0.5,
        latency_s=1e-4,
        pathloss=None,
        distance_m=0.0,
        snr_threshold_db=0.0,
        access="tdma",
        sources=(
            "IEEE Std 802.3-2022 clause 40 (1000BASE-T)",
            "https://www.ti.com/product/DP83867IR (1000BASE-T PHY, ~0.5 W)",
        ),
        notes=(
            "Goodput 1 Gbit/s x 1460/1538 (TCP/IPv4 payload per 1538 bytes on the wire "
            "incl. preamble, header, FCS, inter-frame gap). PHY draw 0.5 W and 0.1 ms "
            "per-transfer latency are estimates."
        ),
    ),
)
