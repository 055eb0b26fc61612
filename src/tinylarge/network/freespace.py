"""Free-space path loss (Friis), the reference every other model is compared with.

``FSPL = 20 log10(4 pi d f / c)`` dB, Recommendation ITU-R P.525-4 eq. (4) written
for metres and hertz. https://www.itu.int/rec/R-REC-P.525/en
"""

from __future__ import annotations

import math

from tinylarge.network import _checks

#: Speed of light in vacuum, m/s.
SPEED_OF_LIGHT_M_S = 299_792_458.0


def free_space_pathloss_db(*, distance_m: float, carrier_hz: float) -> float:
    """Free-space path loss in dB between isotropic antennas ``distance_m`` apart."""
    d = _checks.positive("distance_m", distance_m, " m")
    f = _checks.positive("carrier_hz", carrier_hz, " Hz")
    return 20.0 * math.log10(4.0 * math.pi * d * f / SPEED_OF_LIGHT_M_S)
