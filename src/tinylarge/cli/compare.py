"""``tinylarge compare CONFIG...``: run several experiments and print one table.

Every config, under every scheme of ``--schemes``, gets the checks ``tinylarge
validate`` runs before the first run starts, so a bad one never leaves the
others half done.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tinylarge.errors import TinylargeError

if TYPE_CHECKING:
    from tinylarge.config import ExperimentConfig

ORDER = 20


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "compare",
        help="run several configs (or one config under several schemes) side by side",
        description="Run each config (each under every scheme of --schemes, if given) and print "
        "one table of accuracy, simulated time, device energy and bytes on air.",
    )
    p.add_argument("configs", nargs="+", help="experiment YAML files")
    p.add_argument(
        "--schemes",
        help="comma-separated scheme names to run each config under, e.g. fedavg,fedprox",
    )
    p.add_argument("--out", default="runs/compare", help="parent of the run directories")
    p.add_argument("--backend", choices=["sequential", "process", "batched", "ray"])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def expand(configs: list[ExperimentConfig], schemes: str | None) -> list[ExperimentConfig]:
    """Each config under each scheme of ``schemes`` (comma-separated), or as it is."""
    from tinylarge.config import SchemeConfig

    if not schemes:
        return configs
    names = [s.strip() for s in schemes.split(",") if s.strip()]
    if not names:
        raise TinylargeError("--schemes is empty; give names such as fedavg,fedprox")
    return [c.with_overrides(scheme=SchemeConfig(name=n)) for c in configs for n in names]


def run(args: argparse.Namespace) -> int:
    from tinylarge.cli._config import check_scheme, load_user_config, out_dir
    from tinylarge.cli._output import print_json, print_table

    out_dir(args.out)
    configs = [(p, load_user_config(p)) for p in args.configs]
    runs: list[ExperimentConfig] = []
    for path, cfg in configs:
        for each in expand([cfg], args.schemes):
            check_scheme(each, source=f"{path} (scheme {each.scheme.name})")
            runs.append(each)
    from tinylarge.sim.engine import run_experiment  # PyTorch loads once every config passed

    summaries = []
    for cfg in runs:
        out = Path(args.out) / f"{cfg.name}-{cfg.scheme.name}-seed{cfg.seed}"
        summaries.append(run_experiment(cfg, out=out, backend=args.backend, progress=not args.json))
    if args.json:
        print_json(summaries)
        return 0
    cols = [
        "config",
        "scheme",
        "dataset",
        "accuracy",
        "sim time s",
        "device J",
        "bytes up",
        "bytes down",
        "excluded",
    ]
    rows = [
        [
            cfg.name,
            s["scheme"],
            s["dataset"],
            s["accuracy"],
            s["total_latency_s"],
            s["device_energy_j"],
            s["bytes_up"],
            s["bytes_down"],
            sum(v["count"] for v in s["excluded"].values()),
        ]
        for cfg, s in zip(runs, summaries, strict=True)
    ]
    print_table(cols, rows, title="comparison")
    return 0
