"""Sub-THz (100-300 GHz) path loss: free space plus molecular absorption.

``PL(d) = FSPL(d, f) + gamma(f) * d / 1000`` with ``FSPL = 20 log10(4 pi d f / c)``
(Friis) and ``gamma`` the specific attenuation of the standard sea-level
atmosphere in dB/km.

``gamma`` is a documented simplification of ITU-R P.676: the table below holds the
line-by-line sum of Recommendation ITU-R P.676-12 (08/2019) Annex 1 (oxygen and
water-vapour lines, eqs. (1)-(9)) for the reference atmosphere of its Figure 1:
1013.25 hPa total pressure, 15 degC, 7.5 g/m3 water vapour. The values were
computed once from the Annex 1 line tables and are interpolated linearly in
log(gamma); on a 0.05 GHz grid from 100 to 300 GHz the interpolation stays within
6 % of the full line-by-line sum. The table shows the 118.75 GHz oxygen line, the
183.31 GHz water-vapour line (28 dB/km), and the windows around 140 GHz
(0.9 dB/km) and 200-300 GHz (2.4-5.2 dB/km).
https://www.itu.int/rec/R-REC-P.676-12-201908-S/en

Rain, fog, and humidity other than 7.5 g/m3 are not modelled; carriers outside
100-300 GHz are rejected (use :mod:`tinylarge.network.tr38901` below 100 GHz).
"""

from __future__ import annotations

import itertools
import math

from tinylarge.network import _checks
from tinylarge.network.freespace import free_space_pathloss_db

#: Valid carrier range of this model, GHz.
CARRIER_RANGE_GHZ = (100.0, 300.0)

#: (frequency GHz, specific attenuation dB/km), ITU-R P.676-12 Annex 1, standard atmosphere.
ABSORPTION_TABLE: tuple[tuple[float, float], ...] = (
    (100.0, 0.454),
    (105.0, 0.506),
    (110.0, 0.582),
    (114.0, 0.730),
    (116.0, 0.975),
    (117.5, 1.485),
    (118.75, 1.944),
    (120.0, 1.505),
    (122.0, 0.950),
    (125.0, 0.786),
    (130.0, 0.786),
    (140.0, 0.915),
    (150.0, 1.114),
    (160.0, 1.458),
    (165.0, 1.790),
    (170.0, 2.468),
    (174.0, 3.796),
    (177.0, 6.361),
    (179.0, 10.320),
    (181.0, 18.449),
    (182.5, 26.372),
    (183.31, 28.260),
    (184.0, 27.246),
    (185.5, 20.039),
    (187.0, 13.324),
    (189.0, 8.273),
    (192.0, 5.044),
    (196.0, 3.473),
    (200.0, 2.864),
    (210.0, 2.449),
    (220.0, 2.466),
    (230.0, 2.612),
    (240.0, 2.820),
    (250.0, 3.071),
    (260.0, 3.362),
    (270.0, 3.694),
    (280.0, 4.082),
    (290.0, 4.554),
    (300.0, 5.203),
)


def absorption_db_per_km(*, carrier_ghz: float) -> float:
    """Specific attenuation of the standard atmosphere at ``carrier_ghz`` (100-300 GHz), dB/km."""
    lo, hi = CARRIER_RANGE_GHZ
    f = _checks.in_range(
        "carrier_ghz", carrier_ghz, lo, hi, unit=" GHz", source="the sub-THz model"
    )
    for (f0, g0), (f1, g1) in itertools.pairwise(ABSORPTION_TABLE):
        if f0 <= f <= f1:
            t = (f - f0) / (f1 - f0)
            return math.exp(math.log(g0) + t * (math.log(g1) - math.log(g0)))
    raise AssertionError("unreachable: the table covers 100-300 GHz")  # pragma: no cover


def pathloss_db(*, distance_m: float, carrier_ghz: float) -> float:
    """Sub-THz path loss in dB: free space plus molecular absorption over ``distance_m``."""
    gamma = absorption_db_per_km(carrier_ghz=carrier_ghz)
    fspl = free_space_pathloss_db(distance_m=distance_m, carrier_hz=carrier_ghz * 1e9)
    return fspl + gamma * distance_m / 1000.0
