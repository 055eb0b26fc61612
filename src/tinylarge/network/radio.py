"""Link-budget arithmetic: noise, SNR, Shannon rate, outage, airtime and radio energy.

Pure functions over scalars, all in the units their names carry:

- thermal noise ``N = -174 dBm/Hz + 10 log10(B) + NF`` (kT0 at T0 = 290 K is
  -173.98 dBm/Hz; 3GPP rounds it to -174, e.g. TR 38.803 / TR 36.942),
- ``SNR = P_tx + G - PL + g_fading - N`` in dB,
- attenuated Shannon rate ``R = eta * B * log2(1 + SNR)``, optionally capped at the
  highest MCS rate (3GPP TR 36.942 Annex A.2 uses eta = 0.6 in DL, 0.4 in UL),
- NR peak data rate of 3GPP TS 38.306 section 4.1.2 (used for the MCS caps),
- outage when the SNR is below the receiver's threshold (no transfer possible).
"""

from __future__ import annotations

import math

from tinylarge.network import _checks

#: Thermal noise power spectral density at 290 K, rounded as 3GPP does, dBm/Hz.
THERMAL_NOISE_DBM_PER_HZ = -174.0


def db_to_linear(value_db: float) -> float:
    """Power ratio from dB."""
    return float(10.0 ** (value_db / 10.0))


def log2_1p_db(value_db: float) -> float:
    """``log2(1 + x)`` of a power ratio ``x`` given in dB, without overflow at any SNR.

    Above 300 dB, ``1 + x`` equals ``x`` in float64, so ``log2(x) = value_db / 10 * log2(10)``
    is exact there (``10 ** (value_db / 10)`` itself overflows above about 3083 dB).

    >>> log2_1p_db(0.0), log2_1p_db(1e6) == 1e5 * math.log2(10.0)
    (1.0, True)
    """
    if value_db > 300.0:
        return value_db / 10.0 * math.log2(10.0)
    return math.log2(1.0 + db_to_linear(value_db))


def linear_to_db(value: float) -> float:
    """dB from a power ratio (``-inf`` for 0)."""
    return -math.inf if value <= 0 else 10.0 * math.log10(value)


def noise_power_dbm(*, bandwidth_hz: float, noise_figure_db: float) -> float:
    """Receiver noise power ``-174 + 10 log10(B) + NF`` in dBm.

    >>> round(noise_power_dbm(bandwidth_hz=20e6, noise_figure_db=7.0), 2)
    -93.99
    """
    b = _checks.positive("bandwidth_hz", bandwidth_hz, " Hz")
    nf = _checks.non_negative("noise_figure_db", noise_figure_db, " dB")
    return THERMAL_NOISE_DBM_PER_HZ + 10.0 * math.log10(b) + nf


def snr_db(
    *,
    tx_power_dbm: float,
    pathloss_db: float,
    noise_power_dbm: float,
    antenna_gain_db: float = 0.0,
    fading_gain_db: float = 0.0,
) -> float:
    """Signal-to-noise ratio ``P_tx + G - PL + g - N`` in dB (no interference)."""
    return tx_power_dbm + antenna_gain_db - pathloss_db + fading_gain_db - noise_power_dbm


def shannon_rate_bps(
    *,
    bandwidth_hz: float,
    snr_db: float,
    efficiency: float = 1.0,
    max_rate_bps: float | None = None,
) -> float:
    """Attenuated Shannon rate ``min(eta * B * log2(1 + SNR), cap)`` in bit/s.

    ``efficiency`` (eta, 0 < eta <= 1) folds in coding, pilots, guard bands and MAC
    overhead; ``max_rate_bps`` is the rate of the highest MCS over the same bandwidth.
    """
    b = _checks.positive("bandwidth_hz", bandwidth_hz, " Hz")
    eta = _checks.fraction("efficiency", efficiency)
    if snr_db == -math.inf:
        return 0.0
    rate = eta * b * log2_1p_db(snr_db)
    if max_rate_bps is not None:
        rate = min(rate, _checks.positive("max_rate_bps", max_rate_bps, " bit/s"))
    return rate


def in_outage(*, snr_db: float, threshold_db: float) -> bool:
    """True when the SNR is below the receiver threshold: no transfer is possible."""
    return snr_db < threshold_db


def airtime_s(*, num_bytes: int, rate_bps: float) -> float:
    """Seconds to send ``num_bytes`` at ``rate_bps`` (``inf`` at rate 0, 0 for no bytes)."""
    n = _checks.byte_count("num_bytes", num_bytes)
    if n == 0:
        return 0.0
    if rate_bps <= 0:
        return math.inf
    return 8.0 * n / rate_bps


def radio_energy_j(*, airtime_s: float, power_w: float) -> float:
    """Radio energy ``airtime x power draw`` in joules."""
    return _checks.non_negative("airtime_s", airtime_s, " s") * _checks.non_negative(
        "power_w", power_w, " W"
    )


def nr_max_data_rate_bps(
    *,
    n_prb: int,
    numerology: int,
    modulation_order: int,
    overhead: float,
    layers: int = 1,
    scaling: float = 1.0,
    max_code_rate: float = 948 / 1024,
) -> float:
    """NR peak data rate of one carrier, 3GPP TS 38.306 section 4.1.2.

    ``v_layers * Q_m * f * R_max * N_PRB * 12 / T_s * (1 - OH)`` with
    ``T_s = 1e-3 / (14 * 2^mu)``; OH is 0.14 (FR1 DL), 0.08 (FR1 UL), 0.18 (FR2 DL),
    0.10 (FR2 UL).

    >>> round(nr_max_data_rate_bps(n_prb=273, numerology=1, modulation_order=8,
    ...                            overhead=0.14) / 1e6, 1)
    584.3
    """
    symbol_s = 1e-3 / (14.0 * math.pow(2.0, numerology))
    return (
        layers
        * modulation_order
        * scaling
        * max_code_rate
        * n_prb
        * 12
        / symbol_s
        * (1.0 - overhead)
    )
