"""The typed ``sweep:`` section of an experiment config (``tinylarge sweep``, docs/explore.md).

A sweep is the experiment config around it (the *base*) run once per *cell* of a grid:
every combination of the values of ``grid``, each value written at a config path
(``scheme.name``, ``topology.devices.0.link``, ``topology.devices.*.distance_m`` for every
group, ``scheme.options.cut``, ``training.rounds``...). ``when`` adds settings that go with
one value of one key (a scheme's own options, the training settings it takes), and
``objective`` says what the recommendation per device profile and link optimises.
``tinylarge run`` runs the base alone and ignores this section.

>>> s = SweepConfig.model_validate({"grid": {"scheme.name": ["fedavg", "fsl"]}})
>>> s.seeds, s.objective.metric, s.objective.energy_budget_j
(1, 'accuracy', 1.0)
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: A config path: dotted names and list indices, ``*`` for every element of a list.
_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.([A-Za-z_][A-Za-z0-9_-]*|[0-9]+|\*))*")
#: Most values one grid key may take, and most cells a grid may have.
MAX_VALUES = 1000
MAX_CELLS = 100_000
#: A grid value: what a YAML scalar parses to.
Scalar = str | int | float | bool | None


def check_path(key: str) -> str:
    """``key`` if it is a config path (``a.b.0.c``, ``topology.devices.*.link``)."""
    if not _PATH.fullmatch(key):
        raise ValueError(
            f"{key[:60]!r} is not a config path: dotted field names and list indices, '*' for "
            "every element of a list (e.g. scheme.name, topology.devices.*.distance_m)"
        )
    return key


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class SweepObjective(_Frozen):
    """What the recommendation for each device profile and link optimises: the most
    ``metric`` among the cells where each device of that profile spends at most
    ``energy_budget_j`` joules a round (compute and radio, from the ledger). The default,
    1 J a round, is about 2,400 rounds from a CR2032 coin cell (225 mAh at 3 V)."""

    metric: Literal["accuracy", "large_accuracy"] = "accuracy"
    #: Joules per device of the profile per round; ``null``: no budget (the most accurate).
    energy_budget_j: Annotated[float, Field(gt=0, le=1e9)] | None = 1.0
    #: Grid keys the recommendation takes as the situation, not as a choice: one
    #: recommendation per value (e.g. ``topology.devices.*.distance_m``).
    given: list[str] = Field(default_factory=list, max_length=64)

    @field_validator("given")
    @classmethod
    def _paths(cls, v: list[str]) -> list[str]:
        return [check_path(k) for k in v]


class SweepConfig(_Frozen):
    """The grid of a sweep, its seeds, the settings that go with a value, the objective."""

    #: Config path -> the values it takes; every combination is a cell.
    grid: dict[str, Annotated[list[Scalar], Field(min_length=1, max_length=MAX_VALUES)]] = Field(
        default_factory=dict
    )
    #: Seeds per cell: the config's seed, seed + 1, ...; the table holds mean and std.
    seeds: Annotated[int, Field(ge=1, le=1000)] = 1
    #: ``{key: {value: {path: setting}}}``: settings applied to every cell where ``key``
    #: takes ``value`` (before the grid's own values, which win).
    when: dict[str, dict[Scalar, dict[str, Any]]] = Field(default_factory=dict)
    objective: SweepObjective = Field(default_factory=SweepObjective)

    @field_validator("grid")
    @classmethod
    def _grid_paths(cls, v: dict[str, list[Scalar]]) -> dict[str, list[Scalar]]:
        for key in v:
            check_path(key)
        return v

    @field_validator("when")
    @classmethod
    def _when_paths(
        cls, v: dict[str, dict[Scalar, dict[str, Any]]]
    ) -> dict[str, dict[Scalar, dict[str, Any]]]:
        for key, by_value in v.items():
            check_path(key)
            for settings in by_value.values():
                for path in settings:
                    check_path(path)
        return v
