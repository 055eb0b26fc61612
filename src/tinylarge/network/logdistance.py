"""Log-distance path loss, the empirical model used for BLE and LoRa links.

``PL(d) = PL(d0) + 10 n log10(d / d0)`` dB (Rappaport, *Wireless Communications:
Principles and Practice*, 2nd ed., eq. (4.68)), with ``PL(d0)`` either measured or,
when not given, the free-space loss at ``d0``. The exponent ``n`` and the reference
come from a measurement campaign; each preset documents its own.
"""

from __future__ import annotations

import math

from tinylarge.network import _checks
from tinylarge.network.freespace import free_space_pathloss_db


def log_distance_pathloss_db(
    *,
    distance_m: float,
    carrier_hz: float,
    exponent: float,
    reference_distance_m: float = 1.0,
    reference_loss_db: float | None = None,
) -> float:
    """Path loss in dB at ``distance_m``; ``reference_loss_db=None`` means free space at d0."""
    d = _checks.positive("distance_m", distance_m, " m")
    d0 = _checks.positive("reference_distance_m", reference_distance_m, " m")
    n = _checks.positive("exponent", exponent)
    if reference_loss_db is None:
        pl0 = free_space_pathloss_db(distance_m=d0, carrier_hz=carrier_hz)
    else:
        pl0 = _checks.finite("reference_loss_db", reference_loss_db)
    return pl0 + 10.0 * n * math.log10(d / d0)
