"""``tinylarge run CONFIG``: run one experiment into a run directory.

The config gets every check ``tinylarge validate`` runs before anything is
loaded or written (:func:`tinylarge.cli._config.load_checked`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tinylarge.config import ExperimentConfig
    from tinylarge.sim.ledger import Ledger

ORDER = 10


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "run",
        help="run an experiment (federated, split, ...) and write a run directory",
        description="Run an experiment config on the simulated network. Writes config.yaml, "
        "metrics.csv, ledger.csv, a checkpoint each round and summary.json (last).",
    )
    p.add_argument("config", help="experiment YAML file")
    p.add_argument("--out", help="run directory (default: runs/<config name>)")
    p.add_argument(
        "--backend",
        choices=["sequential", "process", "batched", "ray"],
        help="override engine.backend of the config",
    )
    p.add_argument("--resume", action="store_true", help="continue a stopped run in --out")
    p.add_argument("--json", action="store_true", help="print summary.json to stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-report", action="store_true", help="do not write report.html")
    p.set_defaults(func=run)


def default_out(cfg: ExperimentConfig) -> Path:
    return Path("runs") / cfg.name


def run(args: argparse.Namespace) -> int:
    from tinylarge.cli._config import load_checked, out_dir
    from tinylarge.cli._output import print_json

    cfg = load_checked(args.config)
    out = out_dir(args.out or default_out(cfg), flag="--out" if args.out else "runs/<name>:")
    from tinylarge.sim.engine import run_experiment  # PyTorch loads once the config passed

    summary = run_experiment(
        cfg,
        out=out,
        backend=args.backend,
        resume=args.resume,
        progress=not (args.json or args.quiet),
    )
    from tinylarge.results.rundir import RunDir
    from tinylarge.sim.ledger import Ledger

    # read once for the report and the printed figures; not at all when neither is made
    path = RunDir(out).ledger_path
    wanted = not (args.no_report and args.json)
    ledger = Ledger.from_csv(path) if wanted and path.is_file() else None
    if not args.no_report:
        from tinylarge.results.report import build_report

        build_report(out, ledger=ledger)
    if args.json:
        print_json(summary)
    else:
        print_summary(summary, out, ledger)
        if not args.no_report:
            print(f"report: {out / 'report.html'}")
    return 0


def print_summary(s: dict[str, Any], out: Path, ledger: Ledger | None = None) -> None:
    """The run's summary as tables, then the scheme's own figures (from ``ledger``, the
    run's, when given)."""
    from tinylarge.cli._output import print_table

    rows: list[list[Any]] = [
        ["scheme / dataset / model", f"{s['scheme']} / {s['dataset']} / {s['model']}"],
        ["rounds", s["rounds"]],
        ["accuracy (device-side model)", _pct(s["accuracy"])],
    ]
    if s.get("large_accuracy") is not None:
        rows.append(["accuracy (server-side model)", _pct(s["large_accuracy"])])
    if s.get("target_accuracy") is not None:
        reached = s.get("rounds_to_target")
        rows.append(
            [
                f"rounds to {_pct(s['target_accuracy'])}",
                reached if reached is not None else f"not reached in {s['rounds']} rounds",
            ]
        )
    rows += [
        ["simulated time", f"{s['total_latency_s']:.2f} s"],
        ["device energy", f"{s['device_energy_j']:.4g} J"],
        ["bytes up / down", f"{s['bytes_up']:,} / {s['bytes_down']:,}"],
        [
            "devices / excluded",
            f"{s['num_devices']} / {sum(v['count'] for v in s['excluded'].values())}",
        ],
        ["wall time", f"{s['wall_time_s']:.1f} s"],
    ]
    if "delta" in s:  # differential privacy: the guarantee the accountant gives
        eps = s.get("epsilon")
        guarantee = "unbounded (no noise)" if eps is None else f"({eps:.3g}, {s['delta']:g})-DP"
        rows.append(
            ["privacy", f"{guarantee}, noise multiplier {s['noise_multiplier']:.4g}, "
             f"{s['accountant']} accountant"]
        )  # fmt: skip
    if "privacy_device_energy_j" in s:
        rows.append(
            ["privacy's cost on devices", f"{s['privacy_device_energy_j']:.4g} J, "
             f"{s['privacy_device_seconds']:.4g} s, {s['privacy_bytes']:,} bytes"]
        )  # fmt: skip
    for pid, info in s["excluded"].items():
        rows.append([f"excluded {pid} x{info['count']}", info["reason"]])
    print_table(["", ""], rows, title=f"run {out}")
    per = s.get("per_profile", {})
    if per:
        print_table(
            [
                "profile",
                "tier",
                "link",
                "devices",
                "compute J",
                "radio J",
                "compute s",
                "airtime s",
                "bytes up",
            ],
            [
                [
                    pid,
                    v["tier"],
                    v["link"],
                    v["devices"],
                    v["compute_j"],
                    v["radio_j"],
                    v["compute_s"],
                    v["airtime_s"],
                    v["bytes_up"],
                ]
                for pid, v in per.items()
            ],
            title="where the energy and the bytes went",
        )
    from tinylarge.results.figures import scheme_sections
    from tinylarge.results.rundir import RunDir

    run = RunDir(out)
    metrics = run.read_metrics() if run.path.is_dir() else []
    for sec in scheme_sections(s, metrics, ledger):  # the scheme's own figures
        print_table(list(sec.headers), [list(r) for r in sec.rows], title=sec.title)
        if sec.note:
            print(sec.note)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"
