"""The small base every integration scheme subclasses, generic over its options.

A scheme is a protocol that moves tensors along links and runs compute on
nodes. It says what ran (train N samples of model M on device X, send these
bytes over that link) through the round clock (:mod:`tinylarge.sim.rounds`),
and the context (:mod:`tinylarge.sim.context`) prices and bills it; a scheme
never computes a cost, calls a link or knows the backend. The loop over rounds
lives once, in :mod:`tinylarge.sim.engine`.

Subclasses set ``name`` (the registry key), are typed by their options model
(``class FedProx(FedAvgFamily[FedProxOptions])``; the models live in
:mod:`tinylarge.schemes.options`, importable without PyTorch) and implement
:meth:`setup`, :meth:`run_round`, :meth:`evaluate`, :meth:`state` and
:meth:`load_state`. A scheme with choices to make before it runs (where to cut
a model, which partition to serve) answers :meth:`plan`.
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from tinylarge.errors import TinylargeError
from tinylarge.registry import Registry
from tinylarge.schemes.options import SchemeOptions

if TYPE_CHECKING:
    from tinylarge.sim.context import Context
    from tinylarge.sim.rounds import RoundReport

OptionsT = TypeVar("OptionsT", bound=SchemeOptions)


@dataclass(frozen=True)
class PlanRequest:
    """What to plan: optionally one device, another link or distance, or a distance sweep.

    Attributes:
        device: a device profile id to plan for (default: every profile of the topology).
        link: a link preset to plan over (default: each device group's link).
        distance_m: link distance override in metres.
        sweep_distances_m: plan once per distance, to show how the choice moves.
        objective: ``"latency"`` or ``"energy"``; ``None`` takes the scheme's.
    """

    device: str | None = None
    link: str | None = None
    distance_m: float | None = None
    sweep_distances_m: tuple[float, ...] = ()
    objective: str | None = None


@dataclass(frozen=True)
class Plan:
    """A table of candidates, each a dict with the same keys; ``chosen`` marks the pick."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[dict[str, Any], ...]
    notes: tuple[str, ...] = field(default_factory=tuple)


def sweep_left_out(left_out: list[str], *, planned: bool) -> list[str]:
    """A plan's notes naming what a ``--sweep-distance-m`` sweep left out (each group and
    distance its link model does not cover, with why); a user error when nothing was left
    to plan."""
    if left_out and not planned:
        raise TinylargeError(
            "--sweep-distance-m: no distance is valid for any device group: " + "; ".join(left_out)
        )
    return [f"left out of the sweep: {why}" for why in left_out]


class Scheme(ABC, Generic[OptionsT]):
    """Base of all integration schemes."""

    name: ClassVar[str]

    def __init__(self, ctx: Context, options: OptionsT) -> None:
        self.ctx = ctx
        self.options: OptionsT = options

    @abstractmethod
    def setup(self) -> None:
        """Build the initial models (deterministic from the run seed) and admit the devices
        that can take part (:meth:`tinylarge.sim.context.Context.admit`)."""

    @abstractmethod
    def run_round(self, rnd: int) -> RoundReport:
        """Run one round on the round clock and return its report."""

    @abstractmethod
    def evaluate(self) -> dict[str, float | None]:
        """Test metrics: ``accuracy`` (device side), ``loss``, ``large_accuracy`` or None."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """Everything needed to resume after the last completed round: numpy arrays, lists,
        dicts (str or int keys) and JSON scalars only (see :mod:`tinylarge.results.checkpoint`)."""

    @abstractmethod
    def load_state(self, state: dict[str, Any]) -> None: ...

    def summary_extras(self) -> dict[str, Any]:
        """Scheme-specific entries for summary.json."""
        return {}

    @classmethod
    def has_plan(cls) -> bool:
        return cls.plan is not Scheme.plan

    def plan(self, request: PlanRequest) -> Plan:
        """The choices this scheme would make for the topology, as a table (``tinylarge plan``)."""
        with_plan = ", ".join(n for n, c in SCHEMES.items() if c.has_plan())
        raise TinylargeError(
            f"scheme {self.name!r} has nothing to plan; schemes with a plan: {with_plan}"
        )


def _import_schemes() -> None:
    """Import every scheme module of this folder (they register themselves)."""
    folder = str(Path(__file__).parent)
    for info in sorted(pkgutil.iter_modules([folder]), key=lambda m: m.name):
        if info.name not in ("base", "options") and not info.name.startswith("_"):
            importlib.import_module(f"{__package__}.{info.name}")


#: Every scheme class by name; the scheme modules are imported on first use.
SCHEMES: Registry[type[Scheme[Any]]] = Registry("scheme", load=_import_schemes)
S = TypeVar("S", bound=type[Scheme[Any]])


def register_scheme(cls: S) -> S:
    """Class decorator: add a scheme to :data:`SCHEMES` under ``cls.name``."""
    SCHEMES.add(cls.name, cls)
    return cls
