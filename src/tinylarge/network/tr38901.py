"""3GPP TR 38.901 large-scale models: path loss, LOS probability, shadow fading.

Implements, for the UMa, UMi street canyon, InH office and RMa scenarios,

- the path loss of Table 7.4.1-1 (LOS and NLOS; NLOS is ``max(PL_LOS, PL'_NLOS)``
  as the table specifies; the optional simplified NLOS formulas are not used),
- the LOS probability of Table 7.4.2-1,
- the shadow-fading standard deviations of Table 7.4.1-1 and the mean Rician K
  factors of Table 7.5-6,
- for UMa, the aerial UE of 3GPP TR 36.777 V15.0.0 Annex B (22.5 m < h_UT <= 300 m:
  the UMa-AV path loss and shadow fading of Table B-2, LOS up to 300 m and NLOS up to
  100 m, d_2D up to 4 km; the LOS probability of Table B-1, 1 above 100 m). The UE may
  fly above the base station.

Reference: 3GPP TR 38.901 V17.0.0 (2022-03) "Study on channel model for
frequencies from 0.5 to 100 GHz", https://www.3gpp.org/ftp/Specs/archive/38_series/38.901/
(the equations are unchanged in V18).

Conventions (all from Table 7.4.1-1 and its notes):

- ``fc`` is the carrier in GHz inside the formulas; the breakpoint distances use
  fc in Hz and c = 3.0e8 m/s (note 1).
- ``d_2D`` is the ground distance and ``d_3D = sqrt(d_2D^2 + (h_BS - h_UT)^2)``.
- UMa/UMi breakpoint: ``d'_BP = 4 h'_BS h'_UT fc / c`` with effective heights
  ``h' = h - h_E``. UMi uses ``h_E = 1 m``. For UMa, note 1 draws ``h_E`` at random
  when ``h_UT >= 13 m``; below 13 m it is exactly 1 m. We always use 1 m, which is
  exact for the default ``h_UT = 1.5 m`` and a deterministic choice above 13 m.
- RMa breakpoint: ``d_BP = 2 pi h_BS h_UT fc / c`` with the actual heights (note 5).
- InH office path loss is the same for the mixed and the open office; the
  ``"inh"`` scenario uses the *mixed office* LOS probability, and
  :func:`los_probability_inh_open_office` gives the open-office one.

Validity: carriers outside 0.5-100 GHz (0.5-30 GHz for RMa) and distances outside
the table's ranges (below 10 m or above 5 km, RMa LOS up to 10 km; InH 1-150 m in
3D) are rejected with a :class:`~tinylarge.errors.TinylargeError` rather than
extrapolated: a simulator that silently extrapolates an empirical fit reports
numbers nobody measured.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from tinylarge.errors import TinylargeError
from tinylarge.network import _checks
from tinylarge.registry import Registry

#: Speed of light used by TR 38.901 for the breakpoint distances (Table 7.4.1-1 note 1).
C_M_S = 3.0e8

#: Source string used in error messages and docs.
SOURCE = "3GPP TR 38.901 Table 7.4.1-1"


@dataclass(frozen=True)
class Geometry:
    """A validated BS-UT geometry at one carrier; the input of every path-loss formula."""

    distance_2d_m: float
    distance_3d_m: float
    carrier_ghz: float
    bs_height_m: float
    ut_height_m: float
    street_width_m: float = 20.0
    building_height_m: float = 5.0


def distance_3d_m(*, distance_2d_m: float, bs_height_m: float, ut_height_m: float) -> float:
    """3D BS-UT distance from the ground distance and the antenna heights (metres)."""
    return math.hypot(distance_2d_m, bs_height_m - ut_height_m)


def breakpoint_distance_m(
    *,
    bs_height_m: float,
    ut_height_m: float,
    carrier_ghz: float,
    effective_height_m: float = 1.0,
) -> float:
    """UMa/UMi breakpoint ``d'_BP = 4 (h_BS - h_E)(h_UT - h_E) fc / c`` (Table 7.4.1-1 note 1)."""
    return (
        4.0
        * (bs_height_m - effective_height_m)
        * (ut_height_m - effective_height_m)
        * carrier_ghz
        * 1e9
        / C_M_S
    )


def rma_breakpoint_distance_m(
    *, bs_height_m: float, ut_height_m: float, carrier_ghz: float
) -> float:
    """RMa breakpoint ``d_BP = 2 pi h_BS h_UT fc / c`` (Table 7.4.1-1 note 5)."""
    return 2.0 * math.pi * bs_height_m * ut_height_m * carrier_ghz * 1e9 / C_M_S


# --- UMa ---------------------------------------------------------------------------------


# --- UMa aerial UE (TR 36.777 Annex B, 22.5 m < h_UT <= 300 m) ---------------------------

#: Above this UE height UMa uses the aerial-UE model of TR 36.777 (Table B-1, B-2).
AERIAL_MIN_HEIGHT_M = 22.5
#: UMa-AV NLOS is defined up to this height (above it the LOS probability is 1).
AERIAL_NLOS_MAX_HEIGHT_M = 100.0
#: UMa-AV 2D distance limit, Table B-2.
AERIAL_MAX_DISTANCE_M = 4000.0


def _uma_av_los(g: Geometry) -> float:
    """UMa-AV LOS, TR 36.777 Table B-2: ``28 + 22 log10(d_3D) + 20 log10(fc)``."""
    return 28.0 + 22.0 * math.log10(g.distance_3d_m) + 20.0 * math.log10(g.carrier_ghz)


def _uma_av_nlos(g: Geometry) -> float:
    """UMa-AV NLOS, Table B-2: ``-17.5 + (46 - 7 log10 h_UT) log10(d_3D) + 20 log10(40 pi fc / 3)``
    (never below LOS, as every NLOS formula of TR 38.901 Table 7.4.1-1)."""
    nlos = (
        -17.5
        + (46.0 - 7.0 * math.log10(g.ut_height_m)) * math.log10(g.distance_3d_m)
        + 20.0 * math.log10(40.0 * math.pi * g.carrier_ghz / 3.0)
    )
    return max(_uma_av_los(g), nlos)


def _uma_sigma(g: Geometry, los: bool) -> float:
    if g.ut_height_m > AERIAL_MIN_HEIGHT_M:  # Table B-2: 4.64 exp(-0.0066 h_UT) LOS, 6 NLOS
        return 4.64 * math.exp(-0.0066 * g.ut_height_m) if los else 6.0
    return 4.0 if los else 6.0


def _uma_los(g: Geometry) -> float:
    if g.ut_height_m > AERIAL_MIN_HEIGHT_M:
        return _uma_av_los(g)
    d_bp = breakpoint_distance_m(
        bs_height_m=g.bs_height_m, ut_height_m=g.ut_height_m, carrier_ghz=g.carrier_ghz
    )
    fc = 20.0 * math.log10(g.carrier_ghz)
    if g.distance_2d_m <= d_bp:
        return 28.0 + 22.0 * math.log10(g.distance_3d_m) + fc
    return (
        28.0
        + 40.0 * math.log10(g.distance_3d_m)
        + fc
        - 9.0 * math.log10(d_bp**2 + (g.bs_height_m - g.ut_height_m) ** 2)
    )


def _uma_nlos(g: Geometry) -> float:
    if g.ut_height_m > AERIAL_MIN_HEIGHT_M:
        return _uma_av_nlos(g)
    nlos = (
        13.54
        + 39.08 * math.log10(g.distance_3d_m)
        + 20.0 * math.log10(g.carrier_ghz)
        - 0.6 * (g.ut_height_m - 1.5)
    )
    return max(_uma_los(g), nlos)


# --- UMi street canyon ---------------------------------------------------------------------


def _umi_los(g: Geometry) -> float:
    d_bp = breakpoint_distance_m(
        bs_height_m=g.bs_height_m, ut_height_m=g.ut_height_m, carrier_ghz=g.carrier_ghz
    )
    fc = 20.0 * math.log10(g.carrier_ghz)
    if g.distance_2d_m <= d_bp:
        return 32.4 + 21.0 * math.log10(g.distance_3d_m) + fc
    return (
        32.4
        + 40.0 * math.log10(g.distance_3d_m)
        + fc
        - 9.5 * math.log10(d_bp**2 + (g.bs_height_m - g.ut_height_m) ** 2)
    )


def _umi_nlos(g: Geometry) -> float:
    nlos = (
        35.3 * math.log10(g.distance_3d_m)
        + 22.4
        + 21.3 * math.log10(g.carrier_ghz)
        - 0.3 * (g.ut_height_m - 1.5)
    )
    return max(_umi_los(g), nlos)


# --- InH office ----------------------------------------------------------------------------


def _inh_los(g: Geometry) -> float:
    return 32.4 + 17.3 * math.log10(g.distance_3d_m) + 20.0 * math.log10(g.carrier_ghz)


def _inh_nlos(g: Geometry) -> float:
    nlos = 38.3 * math.log10(g.distance_3d_m) + 17.30 + 24.9 * math.log10(g.carrier_ghz)
    return max(_inh_los(g), nlos)


# --- RMa -----------------------------------------------------------------------------------


def _rma_pl1(g: Geometry, d_3d: float) -> float:
    h = g.building_height_m
    h_172 = math.pow(h, 1.72)
    return (
        20.0 * math.log10(40.0 * math.pi * d_3d * g.carrier_ghz / 3.0)
        + min(0.03 * h_172, 10.0) * math.log10(d_3d)
        - min(0.044 * h_172, 14.77)
        + 0.002 * math.log10(h) * d_3d
    )


def _rma_los(g: Geometry) -> float:
    d_bp = rma_breakpoint_distance_m(
        bs_height_m=g.bs_height_m, ut_height_m=g.ut_height_m, carrier_ghz=g.carrier_ghz
    )
    if g.distance_2d_m <= d_bp:
        return _rma_pl1(g, g.distance_3d_m)
    return _rma_pl1(g, d_bp) + 40.0 * math.log10(g.distance_3d_m / d_bp)


def _rma_nlos(g: Geometry) -> float:
    w, h, h_bs, h_ut = g.street_width_m, g.building_height_m, g.bs_height_m, g.ut_height_m
    nlos = (
        161.04
        - 7.1 * math.log10(w)
        + 7.5 * math.log10(h)
        - (24.37 - 3.7 * (h / h_bs) ** 2) * math.log10(h_bs)
        + (43.42 - 3.1 * math.log10(h_bs)) * (math.log10(g.distance_3d_m) - 3.0)
        + 20.0 * math.log10(g.carrier_ghz)
        - (3.2 * math.log10(11.75 * h_ut) ** 2 - 4.97)
    )
    return max(_rma_los(g), nlos)


def _rma_sigma(g: Geometry, los: bool) -> float:
    if not los:
        return 8.0
    d_bp = rma_breakpoint_distance_m(
        bs_height_m=g.bs_height_m, ut_height_m=g.ut_height_m, carrier_ghz=g.carrier_ghz
    )
    return 4.0 if g.distance_2d_m <= d_bp else 6.0


# --- LOS probability (Table 7.4.2-1) -------------------------------------------------------


def _los_prob_rma(d_2d: float, h_ut: float) -> float:
    return 1.0 if d_2d <= 10.0 else math.exp(-(d_2d - 10.0) / 1000.0)


def _los_prob_umi(d_2d: float, h_ut: float) -> float:
    if d_2d <= 18.0:
        return 1.0
    return 18.0 / d_2d + math.exp(-d_2d / 36.0) * (1.0 - 18.0 / d_2d)


def _los_prob_uma(d_2d: float, h_ut: float) -> float:
    if h_ut > AERIAL_MIN_HEIGHT_M:  # UMa-AV, TR 36.777 Table B-1
        if h_ut > AERIAL_NLOS_MAX_HEIGHT_M:
            return 1.0
        d1 = max(460.0 * math.log10(h_ut) - 700.0, 18.0)
        p1 = 4300.0 * math.log10(h_ut) - 3800.0
        return 1.0 if d_2d <= d1 else d1 / d_2d + math.exp(-d_2d / p1) * (1.0 - d1 / d_2d)
    if d_2d <= 18.0:
        return 1.0
    c_prime = 0.0 if h_ut <= 13.0 else ((h_ut - 13.0) / 10.0) ** 1.5
    base = 18.0 / d_2d + math.exp(-d_2d / 63.0) * (1.0 - 18.0 / d_2d)
    return base * (1.0 + c_prime * 5.0 / 4.0 * (d_2d / 100.0) ** 3 * math.exp(-d_2d / 150.0))


def _los_prob_inh_mixed(d_2d: float, h_ut: float) -> float:
    if d_2d <= 1.2:
        return 1.0
    if d_2d < 6.5:
        return math.exp(-(d_2d - 1.2) / 4.7)
    return math.exp(-(d_2d - 6.5) / 32.6) * 0.32


def los_probability_inh_open_office(*, distance_2d_m: float) -> float:
    """InH open-office LOS probability (TR 38.901 Table 7.4.2-1)."""
    d = _checks.non_negative("distance_2d_m", distance_2d_m, " m")
    if d <= 5.0:
        return 1.0
    if d <= 49.0:
        return math.exp(-(d - 5.0) / 70.8)
    return math.exp(-(d - 49.0) / 211.7) * 0.54


# --- scenario registry ---------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One TR 38.901 deployment scenario: default heights, validity ranges and formulas.

    Distance ranges are 2D except for InH, where the table bounds the 3D distance.
    """

    name: str
    title: str
    bs_height_m: float
    ut_height_m: float
    carrier_ghz_range: tuple[float, float]
    ut_height_range_m: tuple[float, float]
    bs_height_range_m: tuple[float, float]
    distance_los_m: tuple[float, float]
    distance_nlos_m: tuple[float, float]
    distance_is_3d: bool
    los_pathloss: Callable[[Geometry], float]
    nlos_pathloss: Callable[[Geometry], float]
    sigma_los_db: float
    sigma_nlos_db: float
    los_probability: Callable[[float, float], float]
    rician_k_db: float
    sigma_fn: Callable[[Geometry, bool], float] | None = None

    def shadow_sigma_db(self, g: Geometry, los: bool) -> float:
        """Shadow-fading standard deviation in dB (Table 7.4.1-1)."""
        if self.sigma_fn is not None:
            return self.sigma_fn(g, los)
        return self.sigma_los_db if los else self.sigma_nlos_db


SCENARIOS: Registry[Scenario] = Registry("TR 38.901 scenario")

SCENARIOS.add(
    "uma",
    Scenario(
        name="uma",
        title="Urban macro (UMa)",
        bs_height_m=25.0,
        ut_height_m=1.5,
        carrier_ghz_range=(0.5, 100.0),
        ut_height_range_m=(1.5, 300.0),
        bs_height_range_m=(10.0, 150.0),
        distance_los_m=(10.0, 5000.0),
        distance_nlos_m=(10.0, 5000.0),
        distance_is_3d=False,
        los_pathloss=_uma_los,
        nlos_pathloss=_uma_nlos,
        sigma_los_db=4.0,
        sigma_nlos_db=6.0,
        los_probability=_los_prob_uma,
        rician_k_db=9.0,
        sigma_fn=_uma_sigma,
    ),
)
SCENARIOS.add(
    "umi",
    Scenario(
        name="umi",
        title="Urban micro street canyon (UMi)",
        bs_height_m=10.0,
        ut_height_m=1.5,
        carrier_ghz_range=(0.5, 100.0),
        ut_height_range_m=(1.5, 22.5),
        bs_height_range_m=(3.0, 150.0),
        distance_los_m=(10.0, 5000.0),
        distance_nlos_m=(10.0, 5000.0),
        distance_is_3d=False,
        los_pathloss=_umi_los,
        nlos_pathloss=_umi_nlos,
        sigma_los_db=4.0,
        sigma_nlos_db=7.82,
        los_probability=_los_prob_umi,
        rician_k_db=9.0,
    ),
)
SCENARIOS.add(
    "inh",
    Scenario(
        name="inh",
        title="Indoor hotspot office (InH, mixed office LOS probability)",
        bs_height_m=3.0,
        ut_height_m=1.5,
        carrier_ghz_range=(0.5, 100.0),
        ut_height_range_m=(0.5, 3.0),
        bs_height_range_m=(1.5, 10.0),
        distance_los_m=(1.0, 150.0),
        distance_nlos_m=(1.0, 150.0),
        distance_is_3d=True,
        los_pathloss=_inh_los,
        nlos_pathloss=_inh_nlos,
        sigma_los_db=3.0,
        sigma_nlos_db=8.03,
        los_probability=_los_prob_inh_mixed,
        rician_k_db=7.0,
    ),
)
SCENARIOS.add(
    "rma",
    Scenario(
        name="rma",
        title="Rural macro (RMa, W = 20 m streets, h = 5 m buildings)",
        bs_height_m=35.0,
        ut_height_m=1.5,
        carrier_ghz_range=(0.5, 30.0),
        ut_height_range_m=(1.0, 10.0),
        bs_height_range_m=(10.0, 150.0),
        distance_los_m=(10.0, 10000.0),
        distance_nlos_m=(10.0, 5000.0),
        distance_is_3d=False,
        los_pathloss=_rma_los,
        nlos_pathloss=_rma_nlos,
        sigma_los_db=4.0,
        sigma_nlos_db=8.0,
        los_probability=_los_prob_rma,
        rician_k_db=7.0,
        sigma_fn=_rma_sigma,
    ),
)


def geometry(
    scenario: str,
    *,
    los: bool,
    carrier_ghz: float,
    distance_2d_m: float,
    bs_height_m: float | None = None,
    ut_height_m: float | None = None,
) -> Geometry:
    """Validate the inputs against the scenario's ranges and return the geometry.

    Raises :class:`~tinylarge.errors.TinylargeError` naming the bad value and the
    allowed range, and :class:`~tinylarge.errors.UnknownNameError` for a scenario
    that is not one of ``sorted(SCENARIOS)``.
    """
    spec = SCENARIOS[scenario]
    where = f"{SOURCE} ({spec.name})"
    lo, hi = spec.carrier_ghz_range
    fc = _checks.in_range("carrier_ghz", carrier_ghz, lo, hi, unit=" GHz", source=where)
    h_bs = spec.bs_height_m if bs_height_m is None else bs_height_m
    h_ut = spec.ut_height_m if ut_height_m is None else ut_height_m
    h_bs = _checks.in_range("bs_height_m", h_bs, *spec.bs_height_range_m, unit=" m", source=where)
    h_ut = _checks.in_range("ut_height_m", h_ut, *spec.ut_height_range_m, unit=" m", source=where)
    aerial = spec.name == "uma" and h_ut > AERIAL_MIN_HEIGHT_M
    if h_ut >= h_bs and not aerial:
        raise TinylargeError(f"ut_height_m={h_ut:g} m must be below bs_height_m={h_bs:g} m")
    if aerial and not los and h_ut > AERIAL_NLOS_MAX_HEIGHT_M:
        raise TinylargeError(
            f"ut_height_m={h_ut:g} m: an aerial UE's NLOS path loss is defined up to "
            f"{AERIAL_NLOS_MAX_HEIGHT_M:g} m (TR 36.777 Table B-2; above it P_LOS is 1)"
        )
    d_2d = _checks.non_negative("distance_2d_m", distance_2d_m, " m")
    d_3d = distance_3d_m(distance_2d_m=d_2d, bs_height_m=h_bs, ut_height_m=h_ut)
    lo, hi = spec.distance_los_m if los else spec.distance_nlos_m
    if aerial:
        hi, where = AERIAL_MAX_DISTANCE_M, "3GPP TR 36.777 Table B-2 (uma aerial UE)"
    state = "LOS" if los else "NLOS"
    if spec.distance_is_3d:
        _checks.in_range("3D distance", d_3d, lo, hi, unit=" m", source=f"{where} {state}")
    else:
        _checks.in_range("distance_2d_m", d_2d, lo, hi, unit=" m", source=f"{where} {state}")
    return Geometry(
        distance_2d_m=d_2d,
        distance_3d_m=d_3d,
        carrier_ghz=fc,
        bs_height_m=h_bs,
        ut_height_m=h_ut,
    )


def pathloss_db(
    scenario: str,
    *,
    los: bool,
    carrier_ghz: float,
    distance_2d_m: float,
    bs_height_m: float | None = None,
    ut_height_m: float | None = None,
) -> float:
    """Path loss in dB of TR 38.901 Table 7.4.1-1 (no shadowing, no O2I loss).

    >>> round(pathloss_db("uma", los=True, carrier_ghz=3.5, distance_2d_m=100.0), 2)
    83.14
    """
    g = geometry(
        scenario,
        los=los,
        carrier_ghz=carrier_ghz,
        distance_2d_m=distance_2d_m,
        bs_height_m=bs_height_m,
        ut_height_m=ut_height_m,
    )
    spec = SCENARIOS[scenario]
    return spec.los_pathloss(g) if los else spec.nlos_pathloss(g)


def shadow_fading_sigma_db(
    scenario: str,
    *,
    los: bool,
    carrier_ghz: float,
    distance_2d_m: float,
    bs_height_m: float | None = None,
    ut_height_m: float | None = None,
) -> float:
    """Shadow-fading standard deviation in dB (Table 7.4.1-1; RMa LOS is 4 dB before and
    6 dB after the breakpoint)."""
    g = geometry(
        scenario,
        los=los,
        carrier_ghz=carrier_ghz,
        distance_2d_m=distance_2d_m,
        bs_height_m=bs_height_m,
        ut_height_m=ut_height_m,
    )
    return SCENARIOS[scenario].shadow_sigma_db(g, los)


def los_probability(scenario: str, *, distance_2d_m: float, ut_height_m: float = 1.5) -> float:
    """Probability of line of sight at a 2D (outdoor) distance, TR 38.901 Table 7.4.2-1.

    ``ut_height_m`` matters only for UMa (the ``C'(h_UT)`` term above 13 m).
    """
    spec = SCENARIOS[scenario]
    d = _checks.non_negative("distance_2d_m", distance_2d_m, " m")
    h = _checks.positive("ut_height_m", ut_height_m, " m")
    return spec.los_probability(d, h)
