"""A sweep directory on disk (``tinylarge sweep``).

Layout::

    cells/<cell>/seed-<n>/   one run directory per cell and seed (see rundir.py)
    sweep.json               the grid, the cells and their coordinates, the invalid cells
                             with why, the runs that failed, the objective, the wall time
    runs.csv                 one row per run: grid coordinates, cell, seed, every summary key
    table.csv                one row per cell: seeds aggregated to mean and ``_std``
    table.parquet            the same, when pyarrow is installed
    recommendations.csv      per device profile and link: the recommended cell and why
    report.html              Pareto fronts, cost breakdowns, the recommendation

Everything but the run directories is rebuilt from them (``tinylarge sweep`` again) or,
for the report and the recommendation, from table.csv and sweep.json
(``tinylarge sweep --report DIR``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tinylarge.errors import TinylargeError
from tinylarge.explore import table as tbl
from tinylarge.explore.pareto import Recommendation, describe_objective, recommend
from tinylarge.explore.spec import SweepObjective
from tinylarge.jsonutil import dumps

if TYPE_CHECKING:
    from tinylarge.explore.grid import Axis, InvalidCell
    from tinylarge.explore.runner import Outcome


class SweepDir:
    """Reads and writes one sweep directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.parquet_note: str | None = None
        self._meta: dict[str, Any] | None = None

    @property
    def meta_path(self) -> Path:
        return self.path / "sweep.json"

    @property
    def table_path(self) -> Path:
        return self.path / "table.csv"

    @property
    def runs_path(self) -> Path:
        return self.path / "runs.csv"

    @property
    def recommendations_path(self) -> Path:
        return self.path / "recommendations.csv"

    def write(
        self,
        *,
        config: str,
        axes: Sequence[Axis],
        invalid: Sequence[InvalidCell],
        outcomes: Sequence[Outcome],
        seeds: int,
        objective: SweepObjective,
        wall_time_s: float,
    ) -> None:
        """Write sweep.json, runs.csv, table.csv (and .parquet), recommendations.csv."""
        keys = [a.key for a in axes]
        runs = [
            {**dict(o.job.cell.coords), tbl.CELL: o.job.cell.id, tbl.SEED: o.job.seed,
             **tbl.flatten(o.summary)}
            for o in outcomes
            if o.summary is not None
        ]  # fmt: skip
        cells = list({o.job.cell.id: o.job.cell for o in outcomes}.values())
        self._meta = {
            "config": config,
            "grid": [{"key": a.key, "values": list(a.values)} for a in axes],
            "seeds": seeds,
            "objective": objective.model_dump(mode="json"),
            "cells": [{"cell": c.id, "coords": dict(c.coords)} for c in cells],
            "invalid": [{"coords": dict(b.coords), "reason": b.reason} for b in invalid],
            "failed": [
                {"cell": o.job.cell.id, "seed": o.job.seed, "error": o.error}
                for o in outcomes
                if o.error is not None
            ],
            "runs": len(outcomes),
            "runs_skipped_as_finished": sum(o.skipped for o in outcomes),
            "wall_time_s": wall_time_s,
        }
        self.meta_path.write_text(dumps(self._meta) + "\n")
        if not runs:
            raise TinylargeError(f"no run of the sweep in {str(self.path)!r} completed")
        tbl.write_csv(self.runs_path, runs)
        table = tbl.aggregate(runs, keys=keys)
        tbl.write_csv(self.table_path, table)
        self.parquet_note = tbl.write_parquet(self.path / "table.parquet", table)
        self.write_recommendations()

    # -- reading -------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        if self._meta is None:
            if not self.meta_path.is_file() or not self.table_path.is_file():
                raise TinylargeError(
                    f"{str(self.path)!r} is not a finished sweep directory (it needs "
                    "sweep.json and table.csv, written when `tinylarge sweep` ends)"
                )
            self._meta = json.loads(self.meta_path.read_text())
        return self._meta

    def grid_keys(self) -> list[str]:
        return [a["key"] for a in self.meta()["grid"]]

    def table(self) -> list[dict[str, Any]]:
        self.meta()
        return tbl.read_csv(self.table_path)

    def objective(self) -> SweepObjective:
        return SweepObjective.model_validate(self.meta()["objective"])

    def objective_text(self) -> str:
        return describe_objective(self.objective())

    def set_objective(self, objective: SweepObjective) -> None:
        """Change the objective and rewrite sweep.json and recommendations.csv."""
        meta = self.meta()
        meta["objective"] = objective.model_dump(mode="json")
        self.meta_path.write_text(dumps(meta) + "\n")
        self.write_recommendations()

    def recommendations(self) -> list[Recommendation]:
        return recommend(self.table(), grid_keys=self.grid_keys(), objective=self.objective())

    def recommendations_rows(self) -> list[dict[str, Any]]:
        """The recommendations as flat rows (recommendations.csv, --json)."""
        return [
            {
                "profile": r.profile,
                "link": r.link,
                **{f"given {k}": v for k, v in r.given},
                "recommended": ", ".join(f"{k}={v}" for k, v in r.choice) if r.cell else None,
                "cell": r.cell,
                "metric": r.metric,
                "energy_per_round_j": r.energy_per_round_j,
                "settings": r.settings,
                "within_budget": r.within_budget,
                "why": r.why,
            }
            for r in self.recommendations()
        ]

    def recommendation_table(self) -> tuple[list[str], list[list[Any]]]:
        """The recommendation as one table for people (the report and the printed summary):
        given-key columns after profile and link, then the choice, its accuracy, joules per
        device a round and why."""
        recs = self.recommendations_rows()
        given = [k for k in (recs[0] if recs else {}) if k.startswith("given ")]
        headers = ["profile", "link", *given, "recommended", "accuracy", "J per device a round",
                   "why"]  # fmt: skip
        rows = [
            [r["profile"], r["link"], *(r[g] for g in given), r["recommended"] or "none",
             r["metric"], r["energy_per_round_j"], r["why"]]
            for r in recs
        ]  # fmt: skip
        return headers, rows

    def write_recommendations(self) -> None:
        """Rewrite recommendations.csv from the table and the objective."""
        tbl.write_csv(self.recommendations_path, self.recommendations_rows())

    def build_report(self) -> Path:
        from tinylarge.results.sweep_report import build_sweep_report

        return build_sweep_report(self)
