"""Run a sweep's cells, each seed in its own run directory, in parallel, with resume.

Every run is a whole :func:`tinylarge.sim.engine.run_experiment` in
``OUT/cells/<cell>/seed-<seed>``. A run whose summary.json exists is finished and
skipped; one that was stopped after a round continues from its checkpoint (the engine
resumes to the same numbers); one stopped before its first round starts over. So a
killed sweep, run again, ends with the same table. ``jobs > 1`` runs whole runs in a
pool of processes (spawned, one torch thread each: the pool, not torch, uses the cores);
``jobs == 1`` runs them in this process.
"""

from __future__ import annotations

import multiprocessing
import shutil
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinylarge.errors import TinylargeError
from tinylarge.explore.grid import Cell
from tinylarge.results.rundir import RunDir


@dataclass(frozen=True)
class Job:
    """One seed of one cell."""

    cell: Cell
    seed: int
    path: Path


@dataclass(frozen=True)
class Outcome:
    """What became of a job: its summary, or the one-line error that stopped it (``user``:
    a problem of the input found only at run time, not a bug)."""

    job: Job
    summary: dict[str, Any] | None
    error: str | None = None
    user: bool = True
    skipped: bool = False


def jobs_of(cells: Sequence[Cell], *, seeds: int, out: Path) -> list[Job]:
    """Every (cell, seed) to run: seeds ``config.seed`` to ``config.seed + seeds - 1``."""
    return [
        Job(c, c.config.seed + k, out / "cells" / c.id / f"seed-{c.config.seed + k}")
        for c in cells
        for k in range(seeds)
    ]


def run_one(config: dict[str, Any], path: str, backend: str | None) -> tuple[Any, ...]:
    """Run (or finish) one job; top-level so a worker process can run it. Returns
    ``(summary, None, True)`` or ``(None, error line, is a user error)``."""
    from tinylarge.config import parse_config
    from tinylarge.sim.engine import run_experiment

    run = RunDir(path)
    if run.complete:
        return run.read_summary(), None, True
    cfg = parse_config(config)
    resume = run.checkpoint_path.is_file()
    if run.path.exists() and not resume:
        shutil.rmtree(run.path)  # stopped before its first round: nothing to keep
    try:
        summary = run_experiment(cfg, out=run.path, backend=backend, resume=resume, progress=False)
    except TinylargeError as exc:
        return None, " ".join(str(exc).split()), True
    except Exception as exc:  # a bug in one cell must not lose the others: say so, keep it
        run.path.mkdir(parents=True, exist_ok=True)
        (run.path / "error.txt").write_text(traceback.format_exc())
        return None, f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}", False
    return summary, None, True


def _config_of(job: Job) -> dict[str, Any]:
    """The job's config as JSON data, only the fields that were set (a scheme refuses a set
    field it has no use for, so defaults must stay defaults) and its seed."""
    data: dict[str, Any] = job.cell.config.model_dump(mode="json", exclude_unset=True)
    data["seed"] = job.seed
    return data


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def run_jobs(
    jobs: Sequence[Job],
    *,
    backend: str | None = None,
    workers: int = 1,
    on_done: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Run every job not yet finished; return the outcomes in the order of ``jobs``."""
    done: dict[int, Outcome] = {}

    def finish(i: int, result: tuple[Any, ...], *, skipped: bool = False) -> None:
        summary, error, user = result
        done[i] = Outcome(jobs[i], summary, error, user, skipped)
        if on_done is not None:
            on_done(done[i])

    todo = []
    for i, job in enumerate(jobs):
        run = RunDir(job.path)
        if run.complete:
            finish(i, (run.read_summary(), None, True), skipped=True)
        else:
            todo.append(i)
    payload = {i: (_config_of(jobs[i]), str(jobs[i].path)) for i in todo}
    if workers <= 1 or len(todo) <= 1:
        for i in todo:
            finish(i, run_one(*payload[i], backend))
        return [done[i] for i in range(len(jobs))]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=min(workers, len(todo)), mp_context=ctx, initializer=_one_thread
    ) as pool:
        pending: dict[Future[tuple[Any, ...]], int] = {
            pool.submit(run_one, *payload[i], backend): i for i in todo
        }
        try:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    finish(pending.pop(fut), fut.result())
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return [done[i] for i in range(len(jobs))]
