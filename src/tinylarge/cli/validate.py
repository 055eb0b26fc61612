"""``tinylarge validate CONFIG``: check a config without running it."""

from __future__ import annotations

import argparse
from typing import Any

from tinylarge.cli._output import print_json
from tinylarge.config import load_config

ORDER = 30


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "validate",
        help="check an experiment config; one line per problem, exit code 2",
        description="Validate an experiment config. Each problem is reported on one line "
        "naming the field and what is allowed; the exit code is 2 if there is any.",
    )
    p.add_argument("config", help="experiment YAML file")
    p.add_argument("--json", action="store_true", help="print the resolved config as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if args.json:
        print_json(cfg.model_dump(mode="json"))
    else:
        groups = ", ".join(f"{g.count}x {g.profile} over {g.link}" for g in cfg.topology.devices)
        print(
            f"{args.config}: ok: scheme {cfg.scheme.name}, dataset {cfg.task.dataset}, "
            f"model {cfg.model.name}, {cfg.training.rounds} rounds, devices: {groups}"
        )
    return 0
