"""FedAvg in Flower's simulation engine and in tinylarge: client updates per second.

One run, three workloads, each on both engines: (1) the ``mlp`` on Fashion-MNIST
(``TINYLARGE_DATA``) split IID over 100 clients, 10 a round; (2) the ``mlp`` over
1,000 small clients (60 samples each), 100 a round; (3) ``cnn-tiny`` over 100
clients, 10 a round. One local epoch of plain SGD (batch 32, lr 0.05), 20 rounds,
seed 0. tinylarge builds each workload (partition indices, initial weights, the
clients sampled each round and their training seeds); Flower gets it through a
directory and trains the same clients with the same seeds through the same
local-training function (``tinylarge.sim.training.fit``), so what is compared is
the engine around the training: Flower's message passing and Ray actors against
tinylarge's round loop with its ledger billing, on each of its backends
(``sequential``, the reference; ``process``, one worker per core; ``batched``,
clients of one architecture trained together on those workers; ``ray`` with
``--ray``). Flower's side runs in its own virtual environment (``flwr[simulation]``
pins a Ray and protobuf that clash with the main .venv), as a subprocess: see
bench/_flower_side.py.

    make bench-flower
    # or, with .venv-flower built (make bench-flower does both):
    TINYLARGE_DATA=../shared/datasets .venv/bin/python bench/fedavg_vs_flower.py \
        [--workloads mlp-100,mlp-1000,cnn-tiny] [--rounds 20] [--ray] [--end-to-end]

Printed per workload and engine (markdown): client updates, wall seconds of the
federated rounds, updates per second, their ratio to Flower's and the final global
model's test accuracy; with ``--end-to-end`` also the seconds of the whole
``run_simulation`` / ``run_experiment`` call (start-up, rounds, final evaluation;
tinylarge also writes its run directory and a checkpoint every round). The rounds
clock excludes one-off start-up on both sides: Ray start, worker start, data
loading, Flower's node registration and a query round mapping its node ids to
partitions, and one untimed local training in every worker process (torch's first
call costs about a second). Flower runs on Ray actors of one CPU each. Accuracies
agree up to float rounding (Flower averages in float32, tinylarge in float64; the
batched backend's products round differently from the per-client loop's).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from tinylarge.config import ExperimentConfig, parse_config
from tinylarge.sim.backends import fit_many
from tinylarge.sim.context import Context
from tinylarge.sim.engine import build_scheme, run_experiment
from tinylarge.sim.rounds import sample
from tinylarge.sim.training import FitTask

ROOT = Path(__file__).resolve().parents[1]


def config(args: argparse.Namespace, backend: str) -> ExperimentConfig:
    """The tinylarge experiment: every client a Raspberry Pi 4 on Wi-Fi 6 (all can train)."""
    return parse_config(
        {
            "name": "fedavg-vs-flower",
            "seed": args.seed,
            "task": {
                "dataset": args.dataset,
                "subset": args.subset,
                "partition": {"name": "iid"},
            },
            "model": {"name": args.model},
            "topology": {
                "server": {"profile": "l4"},
                "devices": [{"profile": "rpi4", "count": args.clients, "link": "wifi6"}],
            },
            "training": {
                "rounds": args.rounds,
                "fraction": args.per_round / args.clients,
                "min_clients": args.per_round,
                "local_epochs": args.epochs,
                "batch_size": args.batch_size,
                "lr": args.lr,
                "optimizer": "sgd",
            },
            "engine": {"backend": backend, "eval_every": args.rounds},
        }
    )


def write_workload(cfg: ExperimentConfig, out: Path) -> int:
    """Write what Flower's side needs to run the same FedAvg; return the planned updates."""
    ctx = Context(cfg)
    scheme = build_scheme(ctx)
    scheme.setup()
    ds = ctx.dataset
    out.mkdir(parents=True, exist_ok=True)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        np.save(out / f"{name}.npy", np.ascontiguousarray(getattr(ds, name)))
    sizes = [len(c.indices) for c in ctx.clients]
    np.savez(
        out / "partition.npz",
        flat=np.concatenate([c.indices for c in ctx.clients]),
        offsets=np.concatenate([[0], np.cumsum(sizes)]),
    )
    weights = scheme.state()["weights"]
    np.savez(out / "init.npz", **{f"w{i}": w for i, w in enumerate(weights)})
    plan = [
        [[c.id, ctx.task_seed(rnd, c.id)] for c in sample(ctx, rnd, ctx.clients)]
        for rnd in range(cfg.training.rounds)
    ]
    s = ctx.settings
    meta = {
        "num_clients": len(ctx.clients),
        "model": ctx.spec.name,
        "input_shape": list(ctx.spec.input_shape),
        "num_classes": ctx.spec.num_classes,
        "model_options": ctx.spec.options,
        "settings": {
            "epochs": s.epochs,
            "batch_size": s.batch_size,
            "lr": s.lr,
            "optimizer": s.optimizer,
            "momentum": s.momentum,
            "weight_decay": s.weight_decay,
        },
        "plan": plan,
    }
    (out / "workload.json").write_text(json.dumps(meta))
    return sum(len(r) for r in plan)


def run_flower(python: Path, workload: Path) -> dict[str, Any]:
    """Flower's side in its own interpreter; its JSON result (its log is shown on failure)."""
    out = workload / "flower.json"
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "RAY_DEDUP_LOGS": "0"}
    proc = subprocess.run(
        [str(python), str(ROOT / "bench" / "_flower_side.py"), str(workload), str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0 or not out.is_file():
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"the Flower side failed (exit {proc.returncode}); log above")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def warm_up(ctx: Context, weights: list[np.ndarray]) -> None:
    """Start the backend's workers and train once in each, untimed (as Flower's query round)."""
    tasks = [
        FitTask(
            client=c.id,
            round=0,
            seed=0,
            spec=ctx.spec,
            weights=weights,
            indices=c.indices,
            settings=ctx.settings,
        )
        for c in sample(ctx, 0, ctx.clients)
    ]
    fit_many(ctx.backend, tasks)


def run_tinylarge(
    cfg: ExperimentConfig, backend: str, run_dir: Path, end_to_end: bool = False
) -> dict[str, Any]:
    """Time tinylarge's rounds (set-up excluded), then (``end_to_end``) the whole
    ``run_experiment`` call."""
    ctx = Context(cfg, backend=backend)
    try:
        scheme = build_scheme(ctx)
        scheme.setup()
        warm_up(ctx, scheme.state()["weights"])
        updates = 0
        start = time.perf_counter()
        for rnd in range(cfg.training.rounds):
            report = scheme.run_round(rnd)
            if report.dropped:
                raise SystemExit(f"round {rnd} dropped clients {report.dropped}: not the workload")
            updates += report.participants
        rounds_s = time.perf_counter() - start
        accuracy = scheme.evaluate()["accuracy"]
    finally:
        ctx.close()
    if not end_to_end:
        return {"updates": updates, "rounds_s": rounds_s, "accuracy": accuracy}
    start = time.perf_counter()
    summary = run_experiment(cfg, out=run_dir, backend=backend, progress=False)
    total_s = time.perf_counter() - start
    if summary["accuracy"] != accuracy:
        raise SystemExit(f"run_experiment gave {summary['accuracy']}, the round loop {accuracy}")
    return {"updates": updates, "rounds_s": rounds_s, "accuracy": accuracy, "total_s": total_s}


#: The workloads: (model, clients, clients a round).
WORKLOADS = {
    "mlp-100": ("mlp", 100, 10),
    "mlp-1000": ("mlp", 1000, 100),
    "cnn-tiny": ("cnn-tiny", 100, 10),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--subset", type=int, default=None, help="training samples to keep")
    parser.add_argument(
        "--workloads", default=",".join(WORKLOADS), help="of " + str(list(WORKLOADS))
    )
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backends", default="sequential,process,batched")
    parser.add_argument("--ray", action="store_true", help="also tinylarge's Ray backend")
    parser.add_argument("--end-to-end", action="store_true", help="also time run_experiment")
    parser.add_argument("--flower-python", type=Path, default=ROOT / ".venv-flower/bin/python")
    args = parser.parse_args()
    if not args.flower_python.is_file():
        raise SystemExit(f"{args.flower_python} not found: run `make bench-flower` to build it")
    backends = args.backends.split(",")
    if args.ray and importlib.util.find_spec("ray") is not None:
        backends.append("ray")
    load = os.getloadavg()[0]
    print(
        f"FedAvg on {args.dataset}, IID, {args.rounds} rounds, {args.epochs} local epoch(s), "
        f"batch {args.batch_size}, SGD lr {args.lr}, seed {args.seed}; {os.cpu_count()} CPUs, "
        f"load average {load:.1f} at the start\n"
    )
    ratios: list[str] = []
    for name in args.workloads.split(","):
        if name not in WORKLOADS:
            raise SystemExit(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")
        model, clients, per_round = WORKLOADS[name]
        wargs = argparse.Namespace(**vars(args), model=model, clients=clients, per_round=per_round)
        rows: list[tuple[str, dict[str, Any]]] = []
        with tempfile.TemporaryDirectory() as tmp:
            workload = Path(tmp) / "workload"
            planned = write_workload(config(wargs, "sequential"), workload)
            flower = run_flower(args.flower_python, workload)
            rows.append((f"Flower {flower['flwr']} (simulation, Ray {flower['ray']})", flower))
            for b in backends:
                res = run_tinylarge(config(wargs, b), b, Path(tmp) / f"run-{b}", args.end_to_end)
                rows.append((f"tinylarge ({b})", res))
        for engine, r in rows:
            if r["updates"] != planned:
                raise SystemExit(f"{engine} made {r['updates']} client updates, planned {planned}")
        print(f"{name}: {model}, {clients} clients, {per_round} a round\n")
        print(
            "| engine | client updates | rounds wall s | updates/s | ratio to Flower "
            "| final accuracy |" + (" end-to-end s |" if args.end_to_end else "")
        )
        print("|---|---:|---:|---:|---:|---:|" + ("---:|" if args.end_to_end else ""))
        base = flower["updates"] / flower["rounds_s"]
        best = 0.0
        for engine, r in rows:
            rate = r["updates"] / r["rounds_s"]
            if engine.startswith("tinylarge"):
                best = max(best, rate / base)
            tail = f" {r['total_s']:.2f} |" if args.end_to_end else ""
            print(
                f"| {engine} | {r['updates']} | {r['rounds_s']:.2f} | {rate:.1f} | "
                f"{rate / base:.2f} | {r['accuracy']:.4f} |{tail}"
            )
        print()
        ratios.append(f"{name} {best:.2f}x")
    print("best tinylarge backend against Flower: " + ", ".join(ratios))


if __name__ == "__main__":
    main()
