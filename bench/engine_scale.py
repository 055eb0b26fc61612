"""How the engine scales with the fleet: seconds per round and peak memory at 50,000
registered devices with 5,000 a round, and a fleet of 1,000,000 configured and sampled.

FedAvg of a tiny MLP (784-32-10) on Fashion-MNIST (``TINYLARGE_DATA``), split IID over
the registered devices (about one sample each: the engine's work per client update is
what is measured, not training), half STM32H743 boards on BLE, half Raspberry Pi 4 on
5G sub-6 GHz; batch 8, SGD lr 0.05. Each backend runs in its own process (so its peak
memory is its own): set-up (data, partition, fit checks), one untimed warm-up round
(worker start, torch's first calls), then ``--rounds`` timed rounds of the scheme's round
loop (sampling, downloads, local training, billing, uploads, aggregation; the run
directory's files are not written). Peak memory is the driver's resident peak and the
largest worker's (workers map the training set from one shared file, so their pages of
it are shared, and counted in each).

Then 1,000,000 devices, each holding 2 samples drawn at random (``iid`` with
``per_client: 2``: a million devices outnumber the 60,000 samples): the config is
validated, the context builds every device (profile, link, data) and
``--sample-rounds`` rounds of 0.1 % participants are drawn; its peak memory is
printed.

    TINYLARGE_DATA=../shared/datasets .venv/bin/python bench/engine_scale.py \\
        [--registered 50000] [--per-round 5000] [--rounds 3] [--backends sequential,batched]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tinylarge.config import parse_config

#: The largest device group a config takes (``topology.devices[].count``).
GROUP_MAX = 1_000_000


def groups(registered: int) -> list[dict[str, Any]]:
    """Half the fleet STM32H743 on BLE, half Raspberry Pi 4 on 5G, in groups the config takes."""
    out: list[dict[str, Any]] = []
    for profile, link, count in (
        ("stm32h743", "ble-2m", registered // 2),
        ("rpi4", "nr-sub6", registered - registered // 2),
    ):
        for at in range(0, count, GROUP_MAX):
            out.append({"profile": profile, "count": min(GROUP_MAX, count - at), "link": link})
    return out


def config(
    registered: int, per_round: int, backend: str, rounds: int, per_client: int = 0
) -> dict[str, Any]:
    """The fleet's FedAvg; ``per_client`` > 0: each device draws that many samples (the
    fleet may outnumber the data), else the data is split over the devices."""
    part: dict[str, Any] = {"name": "iid"}
    if per_client:
        part["options"] = {"per_client": per_client}
    return {
        "name": f"scale-{registered}",
        "seed": 0,
        "task": {"dataset": "fashion-mnist", "partition": part},
        "model": {"name": "mlp", "options": {"hidden": 32}},
        "topology": {
            "server": {"profile": "l4"},
            "devices": groups(registered),
        },
        "training": {
            "rounds": rounds + 1,
            "fraction": per_round / registered,
            "min_clients": per_round,
            "batch_size": 8,
            "lr": 0.05,
        },
        "engine": {"backend": backend, "eval_every": rounds + 1},
    }


def peak_gb(who: int) -> float:
    """Resident peak of this process or of its largest child, in GB (Linux: ru_maxrss in kB)."""
    return resource.getrusage(who).ru_maxrss / 1e6


def worker_pids(ctx: Any) -> list[int]:
    """The process ids of a process backend's workers (children of the forkserver, not of
    this process, so ``RUSAGE_CHILDREN`` does not see them)."""
    pool = getattr(ctx._backend, "_pool", None)
    return list(getattr(pool, "_processes", None) or {})


def worker_peak_gb(pid: int) -> float:
    """A live process's resident peak (``VmHWM`` of /proc/PID/status), in GB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1e6
    return 0.0


def one_backend(args: argparse.Namespace, backend: str) -> dict[str, Any]:
    from tinylarge.sim.context import Context
    from tinylarge.sim.engine import build_scheme

    cfg = parse_config(config(args.registered, args.per_round, backend, args.rounds))
    start = time.perf_counter()
    ctx = Context(cfg)
    try:
        scheme = build_scheme(ctx)
        scheme.setup()
        setup_s = time.perf_counter() - start
        t = time.perf_counter()
        scheme.run_round(0)  # warm-up: workers start, torch's first calls
        warm_s = time.perf_counter() - t
        times = []
        for rnd in range(1, args.rounds + 1):
            t = time.perf_counter()
            report = scheme.run_round(rnd)
            times.append(time.perf_counter() - t)
            assert report.participants == args.per_round, report.participants
        accuracy = scheme.evaluate()["accuracy"]
        worker_peak = max((worker_peak_gb(pid) for pid in worker_pids(ctx)), default=0.0)
    finally:
        ctx.close()
    return {
        "backend": backend,
        "setup_s": setup_s,
        "warm_round_s": warm_s,
        "round_s": sum(times) / len(times),
        "rounds": times,
        "accuracy": accuracy,
        "driver_peak_gb": peak_gb(resource.RUSAGE_SELF),
        "worker_peak_gb": worker_peak,
    }


def million(args: argparse.Namespace) -> dict[str, Any]:
    from tinylarge.sim.context import Context
    from tinylarge.sim.rounds import sample

    n = args.million
    per = max(1, n // 1000)
    start = time.perf_counter()
    cfg = parse_config(config(n, per, "sequential", 1, per_client=2))
    ctx = Context(cfg)
    built_s = time.perf_counter() - start
    t = time.perf_counter()
    drawn = [len(sample(ctx, rnd, ctx.clients)) for rnd in range(args.sample_rounds)]
    sample_s = (time.perf_counter() - t) / args.sample_rounds
    return {
        "devices": len(ctx.clients),
        "per_round": drawn[0],
        "build_s": built_s,
        "sample_s": sample_s,
        "peak_gb": peak_gb(resource.RUSAGE_SELF),
    }


def in_subprocess(argv: list[str]) -> dict[str, Any]:
    """This script with ``argv`` in a fresh interpreter (its peak memory its own): its JSON."""
    proc = subprocess.run(
        [sys.executable, __file__, *argv], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"{' '.join(argv[:2])} failed (exit {proc.returncode}); log above")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registered", type=int, default=50_000)
    parser.add_argument("--per-round", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="sequential,batched")
    parser.add_argument("--million", type=int, default=1_000_000)
    parser.add_argument("--sample-rounds", type=int, default=10)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--million-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_backend(args, args.one)))
        return
    if args.million_only:
        print(json.dumps(million(args)))
        return
    common = [
        f"--registered={args.registered}",
        f"--per-round={args.per_round}",
        f"--rounds={args.rounds}",
        f"--million={args.million}",
        f"--sample-rounds={args.sample_rounds}",
    ]
    rows = [in_subprocess(["--one", b, *common]) for b in args.backends.split(",")]
    print(
        f"FedAvg, mlp 784-32-10 on Fashion-MNIST: {args.registered:,} registered, "
        f"{args.per_round:,} a round, {args.rounds} timed rounds after a warm-up round; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n"
    )
    print(
        "| backend | set-up s | warm-up round s | s/round | per client update ms "
        "| driver peak GB | largest worker peak GB | accuracy |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['backend']} | {r['setup_s']:.1f} | {r['warm_round_s']:.2f} | "
            f"{r['round_s']:.2f} | {1000 * r['round_s'] / args.per_round:.3f} | "
            f"{r['driver_peak_gb']:.2f} | {r['worker_peak_gb']:.2f} | {r['accuracy']:.4f} |"
        )
    m = in_subprocess(["--million-only", *common])
    print(
        f"\n{m['devices']:,} registered devices: configured and built in {m['build_s']:.1f} s, "
        f"{m['per_round']:,} participants drawn in {1000 * m['sample_s']:.1f} ms a round, "
        f"peak memory {m['peak_gb']:.2f} GB"
    )


if __name__ == "__main__":
    main()
