"""``tinylarge plan CONFIG``: the cut-point / partition / offload plan, before running.

The config gets every check ``tinylarge validate`` runs, then the run's context
(data, devices, links, model profiles) and scheme are built as a run would
build them, and the scheme answers :meth:`~tinylarge.schemes.base.Scheme.plan`.
A scheme with nothing to plan says so in one line, naming the schemes that have
a plan.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from tinylarge.errors import TinylargeError

ORDER = 40
#: Farthest distance a plan may be asked for, in metres (the config's bound on ``distance_m``).
MAX_DISTANCE_M = 1e7
#: Most distances one ``--sweep-distance-m`` may list.
MAX_SWEEP = 1000


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


def _distance(flag: str, value: float) -> float:
    if not (math.isfinite(value) and 0 < value <= MAX_DISTANCE_M):
        raise TinylargeError(f"{flag} {value:g}: distances must be > 0 and <= {MAX_DISTANCE_M:g} m")
    return value


def _distances(text: str | None) -> tuple[float, ...]:
    if not text:
        return ()
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise TinylargeError(
            f"--sweep-distance-m {text!r}: expected comma-separated metres, e.g. 10,100,1000"
        ) from None
    if not values:
        raise TinylargeError(f"--sweep-distance-m {text!r}: distances must be > 0")
    if len(values) > MAX_SWEEP:
        raise TinylargeError(
            f"--sweep-distance-m: at most {MAX_SWEEP} distances, got {len(values)}"
        )
    return tuple(_distance("--sweep-distance-m", v) for v in values)


def run(args: argparse.Namespace) -> int:
    from tinylarge.cli._config import load_checked
    from tinylarge.cli._output import print_json, print_table
    from tinylarge.hardware.catalogue import get_device
    from tinylarge.network.presets import PRESETS
    from tinylarge.schemes.base import PlanRequest

    cfg = load_checked(args.config)
    if args.device is not None:
        get_device(args.device)
    if args.link is not None:
        PRESETS[args.link]
    request = PlanRequest(
        device=args.device,
        link=args.link,
        distance_m=None if args.distance_m is None else _distance("--distance-m", args.distance_m),
        sweep_distances_m=_distances(args.sweep_distance_m),
        objective=args.objective,
    )
    from tinylarge.sim.context import Context  # PyTorch loads once the request is valid
    from tinylarge.sim.engine import build_scheme

    ctx = Context(cfg)
    try:
        plan = build_scheme(ctx).plan(request)
    finally:
        ctx.close()
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
