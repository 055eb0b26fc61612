"""``tinylarge plan CONFIG``: the cut-point / partition / offload plan, before running."""

from __future__ import annotations

import argparse
from typing import Any

from tinylarge.cli._output import print_json, print_table
from tinylarge.config import load_config
from tinylarge.errors import TinylargeError

ORDER = 40


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "plan",
        help="plan split points or offloading for a config (split learning, split inference)",
        description="Evaluate every candidate point (cut layer, partition point, threshold) "
        "for the config's scheme with the profiler, the compute cost model and the link "
        "model, print the table and mark the choice.",
    )
    p.add_argument("config", help="experiment YAML file")
    p.add_argument("--device", help="plan for this device profile only")
    p.add_argument("--link", help="plan over this link preset instead of the config's")
    p.add_argument("--distance-m", type=float, help="link distance in metres")
    p.add_argument(
        "--sweep-distance-m",
        help="comma-separated distances in metres: plan at each to show how the choice moves",
    )
    p.add_argument("--objective", choices=["latency", "energy"], help="override the objective")
    p.add_argument("--json", action="store_true", help="print the rows as a JSON list")
    p.set_defaults(func=run)


def _distances(text: str | None) -> tuple[float, ...]:
    if not text:
        return ()
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise TinylargeError(
            f"--sweep-distance-m {text!r}: expected comma-separated metres, e.g. 10,100,1000"
        ) from None
    if not values or any(v <= 0 for v in values):
        raise TinylargeError(f"--sweep-distance-m {text!r}: distances must be > 0")
    return values


def run(args: argparse.Namespace) -> int:
    from tinylarge.orchestration import PLANNERS, PlanRequest
    from tinylarge.orchestration.base import load_planners

    cfg = load_config(args.config)
    if args.distance_m is not None and args.distance_m <= 0:
        raise TinylargeError(f"--distance-m {args.distance_m}: must be > 0")
    load_planners()
    planner = PLANNERS[cfg.scheme.name]
    plan = planner(
        PlanRequest(
            config=cfg,
            device=args.device,
            link=args.link,
            distance_m=args.distance_m,
            sweep_distances_m=_distances(args.sweep_distance_m),
            objective=args.objective,
        )
    )
    if args.json:
        print_json(list(plan.rows))
        return 0
    print_table(
        list(plan.columns),
        [[row.get(c) for c in plan.columns] for row in plan.rows],
        title=plan.title,
    )
    for note in plan.notes:
        print(note)
    return 0
