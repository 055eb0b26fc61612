"""The planner registry and its request and result types."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tinylarge.config import ExperimentConfig
from tinylarge.registry import Registry


@dataclass(frozen=True)
class PlanRequest:
    """What to plan: a config, optionally narrowed to one device/link, or a link sweep.

    Attributes:
        config: the experiment config (its scheme selects the planner).
        device: a device profile id to plan for (default: every profile of the topology).
        link: a link preset to plan over (default: each device group's link).
        distance_m: link distance override in metres.
        sweep_distances_m: plan once per distance, to show how the choice moves.
        objective: ``"latency"`` or ``"energy"``; ``None`` takes the config's.
    """

    config: ExperimentConfig
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


Planner = Callable[[PlanRequest], Plan]
PLANNERS: Registry[Planner] = Registry("planner (scheme with a plan)")


def register_planner(*scheme_names: str) -> Callable[[Planner], Planner]:
    """Decorator: register a planner for one or more scheme names."""

    def deco(fn: Planner) -> Planner:
        for name in scheme_names:
            PLANNERS.add(name, fn)
        return fn

    return deco


def load_planners() -> None:
    """Import the planner modules of tinylarge.orchestration and tinylarge.inference."""
    for package in ("tinylarge.orchestration", "tinylarge.inference"):
        try:
            pkg = importlib.import_module(package)
        except ModuleNotFoundError:
            continue
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.name.startswith("_") and info.name != "base":
                importlib.import_module(f"{package}.{info.name}")
