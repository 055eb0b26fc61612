"""``tinylarge validate CONFIG``: check a config without running it.

The same check every command that takes a config runs first
(:mod:`tinylarge.cli._config`): the config model (types, names, ranges) and
the scheme's options with the settings the scheme cannot honour. It needs no
PyTorch and answers in a fraction of a second.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from tinylarge.errors import USER_ERROR_EXIT_CODE

if TYPE_CHECKING:
    from tinylarge.config import ExperimentConfig

ORDER = 30


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "validate",
        help="check an experiment config; one line per problem, exit code 2",
        description="Validate an experiment config: every field's type and range, every name "
        "(devices, links, models, datasets, partitioners, schemes), the scheme's options and "
        "the settings the scheme cannot honour. Each problem is reported on one line naming "
        "the field and what is allowed; the exit code is 2 if there is any.",
    )
    p.add_argument("config", help="experiment YAML file")
    p.add_argument("--json", action="store_true", help="print the resolved config as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tinylarge.cli._config import load_checked

    cfg = load_checked(args.config)
    if cfg.sweep is not None and cfg.sweep.grid and not _sweep_ok(cfg, args.config, args.json):
        return USER_ERROR_EXIT_CODE
    if args.json:
        from tinylarge.cli._output import print_json

        print_json(cfg.model_dump(mode="json"))
    else:
        groups = ", ".join(f"{g.count}x {g.profile} over {g.link}" for g in cfg.topology.devices)
        print(
            f"{args.config}: ok: scheme {cfg.scheme.name}, dataset {cfg.task.dataset}, "
            f"model {cfg.model.name}, {cfg.training.rounds} rounds, devices: {groups}"
        )
    return 0


def _sweep_ok(cfg: ExperimentConfig, path: str, quiet: bool) -> bool:
    """Check every cell of the config's sweep grid as ``tinylarge sweep`` will: one line on
    stderr per invalid cell; False if no cell is valid."""
    import sys

    from tinylarge.cli._config import check_scheme
    from tinylarge.explore import grid

    axes = grid.axes(cfg.sweep, [])
    cells, invalid = grid.expand(cfg, axes, check=lambda c, source: check_scheme(c, source=source))
    for bad in invalid:
        print(f"{path}: sweep cell {grid.describe(bad.coords)}: {bad.reason}", file=sys.stderr)
    if not cells or not quiet:  # --json keeps stdout for the config
        print(
            f"{path}: sweep: {len(cells)} valid cells, {len(invalid)} invalid",
            file=sys.stderr if not cells else sys.stdout,
        )
    return bool(cells)
