"""``tinylarge report RUN_DIR``: (re)build the HTML report of a run."""

from __future__ import annotations

import argparse
from typing import Any

ORDER = 25


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "report",
        help="(re)build report.html of a completed run directory",
        description="Write RUN_DIR/report.html: summary, device fit, energy per profile, "
        "accuracy and latency plots, per-round table; all read from the run's files.",
    )
    p.add_argument("run_dir", help="a completed run directory (has summary.json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tinylarge.results.report import build_report

    print(build_report(args.run_dir))
    return 0
