"""``tinylarge sweep CONFIG --grid KEY=V1,V2 ...``: design-space exploration.

Every cell of the grid (the config's ``sweep:`` section and the ``--grid`` flags) is a
config validated as ``tinylarge run`` validates one; an invalid cell is reported in one
line and skipped (exit code 2 only when no cell is valid). The valid cells run in
parallel into ``OUT/cells/``, finished runs are skipped (a killed sweep, run again,
resumes to the same table), and ``OUT`` gets ``table.csv`` (and ``table.parquet`` with
pyarrow), ``runs.csv``, ``recommendations.csv``, ``sweep.json`` and ``report.html``.
``tinylarge sweep --report OUT`` rebuilds the report (and the recommendation, with
``--energy-budget``) from the table. See docs/explore.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tinylarge.cli._choices import LazyChoices
from tinylarge.errors import USER_ERROR_EXIT_CODE, TinylargeError

if TYPE_CHECKING:
    from tinylarge.explore.runner import Outcome

ORDER = 22


def _backends() -> list[str]:
    from tinylarge.sim.backends import BACKENDS

    return BACKENDS.names()


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "sweep",
        help="run a grid of variants of a config; Pareto fronts and a recommendation",
        description="Run every cell of a grid over an experiment config (its sweep: section "
        "and --grid flags), in parallel and resumable; write one table of every summary key "
        "with the grid coordinates (seeds aggregated to mean and std), the Pareto fronts of "
        "accuracy against device energy, simulated latency and bytes on air, and the "
        "recommended scheme and setting per device profile and link.",
    )
    p.add_argument("config", nargs="?", help="experiment YAML file (the base of every cell)")
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="a config path and its values (YAML scalars), e.g. scheme.name=fedavg,fsl or "
        "topology.devices.*.distance_m=10,300; repeatable; adds to or replaces sweep.grid",
    )
    p.add_argument("--seeds", type=int, help="seeds per cell (default: sweep.seeds or 1)")
    p.add_argument("--out", help="sweep directory (default: runs/sweep-<config name>)")
    p.add_argument(
        "--backend",
        choices=LazyChoices(_backends),
        metavar="BACKEND",
        help="engine backend of every run (%(choices)s)",
    )
    p.add_argument(
        "--jobs", type=int, help="runs at once, each in its own process (default: the cores)"
    )
    p.add_argument(
        "--energy-budget",
        type=float,
        metavar="J",
        help="the recommendation's budget: joules per device a round (default: "
        "sweep.objective.energy_budget_j, 1 J); 0 for none",
    )
    p.add_argument(
        "--report", metavar="DIR", help="rebuild DIR/report.html from DIR's table; runs nothing"
    )
    p.add_argument("--json", action="store_true", help="print the table and recommendations")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.report:
        if args.config or args.grid:
            raise TinylargeError("--report DIR rebuilds a report from a table; give no CONFIG")
        return _rebuild(args)
    if not args.config:
        raise TinylargeError("give a CONFIG to sweep, or --report DIR to rebuild a report")
    if args.seeds is not None and not 1 <= args.seeds <= 1000:
        raise TinylargeError(f"--seeds {args.seeds}: give 1 to 1000")
    if args.jobs is not None and not 1 <= args.jobs <= 1024:
        raise TinylargeError(f"--jobs {args.jobs}: give 1 to 1024")
    from tinylarge.cli._config import check_scheme, load_user_config, out_dir, quick, reduced
    from tinylarge.config import parse_config
    from tinylarge.explore import grid

    base = load_user_config(args.config)
    axes = grid.axes(base.sweep, args.grid)
    if quick():  # TINYLARGE_QUICK: the first two values of each axis, every cell reduced
        axes = [grid.Axis(a.key, a.values[:2]) for a in axes]
    cells, invalid = grid.expand(
        base, axes, check=lambda cfg, source: check_scheme(cfg, source=source)
    )
    if quick():
        small = [
            (c.coords, parse_config(reduced(c.config.model_dump(mode="json", exclude_unset=True))))
            for c in cells
        ]
        cells = [grid.Cell(coords, cfg, grid.cell_id(coords, cfg)) for coords, cfg in small]
    for bad in invalid:
        print(f"skipped cell {grid.describe(bad.coords)}: {bad.reason}", file=sys.stderr)
    if not cells:
        print(f"error: none of the {len(invalid)} cells of the grid is valid", file=sys.stderr)
        return USER_ERROR_EXIT_CODE
    out = out_dir(args.out or Path("runs") / f"sweep-{base.name}")
    out.mkdir(parents=True, exist_ok=True)
    seeds = args.seeds or (base.sweep.seeds if base.sweep else 1)
    objective = _objective(base.sweep.objective if base.sweep else None, args.energy_budget)
    from tinylarge.explore import runner

    jobs = runner.jobs_of(cells, seeds=seeds, out=out)
    workers = args.jobs or os.cpu_count() or 1
    progress = not (args.json or args.quiet)
    if progress:
        print(
            f"sweep: {len(cells)} cells x {seeds} seed(s) = {len(jobs)} runs "
            f"({len(invalid)} invalid cells skipped), {min(workers, len(jobs))} at a time, "
            f"into {out}",
            file=sys.stderr,
        )
    started = time.perf_counter()
    counter = _Progress(len(jobs), started, enabled=progress)
    from concurrent.futures.process import BrokenProcessPool

    try:
        outcomes = runner.run_jobs(jobs, backend=args.backend, workers=workers, on_done=counter)
    except BrokenProcessPool:
        print(
            "error: a worker process died (out of memory?); finished runs are kept: run the "
            "same command again to resume, with fewer --jobs",
            file=sys.stderr,
        )
        return 1
    failed = [o for o in outcomes if o.error is not None]
    if len(failed) == len(outcomes):
        bugs = any(not o.user for o in failed)
        print(f"error: none of the {len(outcomes)} runs completed (see above)", file=sys.stderr)
        return 1 if bugs else USER_ERROR_EXIT_CODE
    from tinylarge.results.sweepdir import SweepDir

    sweep = SweepDir(out)
    sweep.write(
        config=str(args.config),
        axes=axes,
        invalid=invalid,
        outcomes=outcomes,
        seeds=seeds,
        objective=objective,
        wall_time_s=time.perf_counter() - started,
    )
    report = sweep.build_report()
    if args.json:
        from tinylarge.cli._output import print_json

        print_json(
            {
                "table": sweep.table(),
                "recommendations": sweep.recommendations_rows(),
                "invalid": [{"cell": grid.describe(b.coords), "reason": b.reason} for b in invalid],
                "failed": [{"run": str(o.job.path), "error": o.error} for o in failed],
            }
        )
    else:
        _print(sweep, report)
    if sweep.parquet_note:
        print(sweep.parquet_note, file=sys.stderr)
    return 1 if any(not o.user for o in failed) else 0


def _objective(base: Any, budget: float | None) -> Any:
    from tinylarge.explore.spec import SweepObjective

    objective = base or SweepObjective()
    if budget is None:
        return objective
    if budget < 0:
        raise TinylargeError(f"--energy-budget {budget:g}: give joules per device a round, >= 0")
    return objective.model_copy(update={"energy_budget_j": budget or None})


def _rebuild(args: argparse.Namespace) -> int:
    from tinylarge.results.sweepdir import SweepDir

    sweep = SweepDir(args.report)
    if args.energy_budget is not None:
        sweep.set_objective(_objective(sweep.objective(), args.energy_budget))
    else:
        sweep.write_recommendations()  # derived from the table: rebuilt with the report
    report = sweep.build_report()
    if args.json:
        from tinylarge.cli._output import print_json

        print_json({"table": sweep.table(), "recommendations": sweep.recommendations_rows()})
    else:
        _print(sweep, report)
    return 0


def _print(sweep: Any, report: Path) -> None:
    from tinylarge.cli._output import print_table

    keys = sweep.grid_keys()
    rows = sweep.table()
    print_table(
        [*keys, "accuracy", "device J", "sim time s", "bytes on air"],
        [
            [
                *(r.get(k) for k in keys),
                r.get("accuracy"),
                r.get("device_energy_j"),
                r.get("total_latency_s"),
                (r.get("bytes_up") or 0) + (r.get("bytes_down") or 0),
            ]
            for r in rows
        ],
        title=f"sweep {sweep.path} ({len(rows)} cells)",
    )
    headers, recs = sweep.recommendation_table()
    if recs:
        print_table(headers, recs, title=f"recommendation: {sweep.objective_text()}")
    print(f"table: {sweep.table_path}")
    print(f"report: {report}")


class _Progress:
    """One line on stderr per finished run: ``[12/48] fsl nb-iot 300: accuracy ...``."""

    def __init__(self, total: int, started: float, *, enabled: bool) -> None:
        self.total, self.started, self.enabled, self.count = total, started, enabled, 0

    def __call__(self, outcome: Outcome) -> None:
        from tinylarge.explore.grid import describe

        self.count += 1
        if not self.enabled and outcome.error is None:
            return
        what = f"{describe(outcome.job.cell.coords)} seed {outcome.job.seed}"
        if outcome.error is not None:
            line = f"failed {what}: {outcome.error}"
        else:
            s = outcome.summary or {}
            acc = s.get("accuracy")
            state = "finished before" if outcome.skipped else f"{s.get('wall_time_s', 0):.0f} s"
            line = (
                f"{what}: accuracy {'n/a' if acc is None else f'{acc:.3f}'}, "
                f"{s.get('device_energy_j', 0):.3g} J ({state})"
            )
        elapsed = time.perf_counter() - self.started
        print(f"[{self.count}/{self.total} {elapsed:.0f} s] {line}", file=sys.stderr, flush=True)
