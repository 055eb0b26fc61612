"""How the engine scales with the fleet: seconds per round for 10 to 1000 tiny clients.

Runs FedAvg of a small MLP on the digits set (each client holds a slice) on the
sequential backend and, if Ray is installed, on Ray, side by side in one run,
and prints wall seconds per round and the Ray/sequential ratio.

    .venv/bin/python bench/engine_scale.py [--clients 10,100,1000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path
from typing import Any

from tinylarge.config import parse_config
from tinylarge.sim.engine import run_experiment


def config(clients: int, rounds: int, backend: str) -> dict[str, Any]:
    return {
        "name": f"scale-{clients}",
        "seed": 0,
        "task": {"dataset": "digits", "partition": {"name": "iid"}},
        "model": {"name": "mlp", "options": {"hidden": 32}},
        "topology": {
            "server": {"profile": "l4"},
            "devices": [
                {"profile": "stm32h743", "count": clients // 2, "link": "ble-2m"},
                {"profile": "rpi4", "count": clients - clients // 2, "link": "nr-sub6"},
            ],
        },
        "training": {"rounds": rounds, "batch_size": 8, "lr": 0.05},
        "engine": {"backend": backend, "eval_every": rounds},
    }


def seconds_per_round(clients: int, rounds: int, backend: str) -> tuple[float, float]:
    cfg = parse_config(config(clients, rounds, backend))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = run_experiment(cfg, out=Path(tmp) / "run", progress=False)
        return (time.perf_counter() - start) / rounds, float(summary["accuracy"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="10,100,1000")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    backends = ["sequential"]
    if importlib.util.find_spec("ray") is not None:
        backends.append("ray")
    print("| clients | " + " | ".join(f"{b} s/round" for b in backends) + " | ray / sequential |")
    print("|---:|" + "---:|" * len(backends) + "---:|")
    for n in (int(v) for v in args.clients.split(",")):
        times = [seconds_per_round(n, args.rounds, b)[0] for b in backends]
        ratio = f"{times[1] / times[0]:.2f}" if len(times) > 1 else "n/a"
        print(f"| {n} | " + " | ".join(f"{t:.2f}" for t in times) + f" | {ratio} |")


if __name__ == "__main__":
    main()
