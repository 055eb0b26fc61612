"""Path-loss models behind one small protocol, so a link does not care which it holds.

Each model is a frozen dataclass with two methods, ``loss_db`` and
``shadowing_sigma_db``, both taking the link distance in metres and the carrier
in Hz, and a ``describe()`` for people. ``distance_m`` is the 2D ground distance
for the TR 38.901 scenarios (heights are added by the model) and the straight-line
distance for the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tinylarge.errors import TinylargeError
from tinylarge.network import _checks, logdistance, subthz, tr38901
from tinylarge.network.freespace import free_space_pathloss_db


class PathLossModel(Protocol):
    """What a link needs from a channel model."""

    def loss_db(self, *, distance_m: float, carrier_hz: float) -> float:
        """Deterministic (median) path loss in dB."""
        ...

    def shadowing_sigma_db(self, *, distance_m: float, carrier_hz: float) -> float:
        """Standard deviation of log-normal shadowing in dB (0 for none)."""
        ...

    def describe(self) -> str:
        """One line naming the model and its parameters."""
        ...


@dataclass(frozen=True)
class Tr38901Model:
    """3GPP TR 38.901 Table 7.4.1-1 path loss for a scenario and a LOS state."""

    scenario: str
    los: bool
    bs_height_m: float | None = None
    ut_height_m: float | None = None

    def __post_init__(self) -> None:
        tr38901.SCENARIOS[self.scenario]  # unknown scenario -> UnknownNameError

    def loss_db(self, *, distance_m: float, carrier_hz: float) -> float:
        return tr38901.pathloss_db(
            self.scenario,
            los=self.los,
            carrier_ghz=carrier_hz / 1e9,
            distance_2d_m=distance_m,
            bs_height_m=self.bs_height_m,
            ut_height_m=self.ut_height_m,
        )

    def shadowing_sigma_db(self, *, distance_m: float, carrier_hz: float) -> float:
        return tr38901.shadow_fading_sigma_db(
            self.scenario,
            los=self.los,
            carrier_ghz=carrier_hz / 1e9,
            distance_2d_m=distance_m,
            bs_height_m=self.bs_height_m,
            ut_height_m=self.ut_height_m,
        )

    @property
    def rician_k_db(self) -> float:
        """Mean LOS K factor of the scenario, TR 38.901 Table 7.5-6."""
        return tr38901.SCENARIOS[self.scenario].rician_k_db

    def describe(self) -> str:
        return f"TR 38.901 {self.scenario.upper()} {'LOS' if self.los else 'NLOS'}"


@dataclass(frozen=True)
class FreeSpaceModel:
    """Free-space (Friis) path loss, optionally with log-normal shadowing."""

    sigma_db: float = 0.0

    def loss_db(self, *, distance_m: float, carrier_hz: float) -> float:
        return free_space_pathloss_db(distance_m=distance_m, carrier_hz=carrier_hz)

    def shadowing_sigma_db(self, *, distance_m: float, carrier_hz: float) -> float:
        return self.sigma_db

    def describe(self) -> str:
        return "free space (Friis)"


@dataclass(frozen=True)
class LogDistanceModel:
    """``PL(d0) + 10 n log10(d/d0)``; ``reference_loss_db=None`` is free space at d0."""

    exponent: float
    reference_distance_m: float = 1.0
    reference_loss_db: float | None = None
    sigma_db: float = 0.0
    min_distance_m: float = 1.0

    def loss_db(self, *, distance_m: float, carrier_hz: float) -> float:
        d = _checks.finite("distance_m", distance_m)
        if d < self.min_distance_m:
            raise TinylargeError(
                f"distance_m={d:g} m is below the {self.min_distance_m:g} m minimum of "
                f"the log-distance model"
            )
        return logdistance.log_distance_pathloss_db(
            distance_m=d,
            carrier_hz=carrier_hz,
            exponent=self.exponent,
            reference_distance_m=self.reference_distance_m,
            reference_loss_db=self.reference_loss_db,
        )

    def shadowing_sigma_db(self, *, distance_m: float, carrier_hz: float) -> float:
        return self.sigma_db

    def describe(self) -> str:
        ref = "free space" if self.reference_loss_db is None else f"{self.reference_loss_db:g} dB"
        return f"log-distance n={self.exponent:g}, PL(d0={self.reference_distance_m:g} m)={ref}"


@dataclass(frozen=True)
class SubThzModel:
    """Free space plus ITU-R P.676 molecular absorption, 100-300 GHz."""

    sigma_db: float = 0.0

    def loss_db(self, *, distance_m: float, carrier_hz: float) -> float:
        return subthz.pathloss_db(distance_m=distance_m, carrier_ghz=carrier_hz / 1e9)

    def shadowing_sigma_db(self, *, distance_m: float, carrier_hz: float) -> float:
        return self.sigma_db

    def describe(self) -> str:
        return "sub-THz: free space + ITU-R P.676 absorption"
