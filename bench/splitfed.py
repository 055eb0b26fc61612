"""Split learning on microcontrollers vs FedAvg where the model fits, on Fashion-MNIST.

The same CNN (``cnn-tiny``, width 8, batch 4: 414 KiB of training memory) is
trained for the same rounds on the same IID partition of Fashion-MNIST by

- FedAvg on 8 Raspberry Pi 4 over Wi-Fi 6 (the model fits them), and
- SL, SplitFed V1 (fp32, fp16 and int8 smashed data) and SplitFed V2 on
  4 nRF52840 + 4 STM32F746 over BLE 2M, which cannot train it whole
  (256 and 320 KiB of SRAM): each trains the layers before its planned cut,
  a Jetson Orin Nano trains the rest.

Prints one markdown table: final test accuracy, mean simulated round latency,
device energy per round (all devices, compute + radio), bytes per round and
the cut each device profile used, all read from the runs' summaries and ledgers.

    TINYLARGE_DATA=../shared/datasets .venv/bin/python bench/splitfed.py \
        [--subset 12000] [--rounds 10] [--backend sequential]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from tinylarge.config import parse_config
from tinylarge.sim.engine import run_experiment

MCUS = [
    {"profile": "nrf52840", "count": 4, "link": "ble-2m", "distance_m": 5},
    {"profile": "stm32f746", "count": 4, "link": "ble-2m", "distance_m": 5},
]
PIS = [{"profile": "rpi4", "count": 8, "link": "wifi6", "distance_m": 15}]

#: (label, scheme, options, device groups)
RUNS: list[tuple[str, str, dict[str, Any], list[dict[str, Any]]]] = [
    ("FedAvg (8 x rpi4, whole model)", "fedavg", {}, PIS),
    ("SL, label sharing (MCUs)", "sl", {}, MCUS),
    ("SplitFed V1, fp32 (MCUs)", "fsl", {"variant": "v1"}, MCUS),
    ("SplitFed V1, fp16 (MCUs)", "fsl", {"variant": "v1", "compression": "fp16"}, MCUS),
    ("SplitFed V1, int8 (MCUs)", "fsl", {"variant": "v1", "compression": "int8"}, MCUS),
    ("SplitFed V2, fp32 (MCUs)", "fsl", {"variant": "v2"}, MCUS),
]


def config(
    scheme: str, options: dict[str, Any], devices: list[dict[str, Any]], args: argparse.Namespace
) -> dict[str, Any]:
    return {
        "name": f"bench-{scheme}",
        "seed": args.seed,
        "task": {"dataset": "fashion-mnist", "subset": args.subset, "partition": {"name": "iid"}},
        "model": {"name": "cnn-tiny", "options": {"width": 8}},
        "topology": {"server": {"profile": "jetson-orin-nano"}, "devices": devices},
        "scheme": {"name": scheme, "options": options},
        "training": {
            "rounds": args.rounds,
            "local_epochs": 1,
            "batch_size": 4,
            "lr": 0.05,
            "optimizer": "sgd",
        },
        "engine": {"backend": args.backend, "eval_every": args.rounds},
    }


def cuts(summary: dict[str, Any]) -> str:
    if "cuts" not in summary:
        excluded = ", ".join(sorted(summary["excluded"])) or "none"
        return f"whole model (excluded: {excluded})"
    return ", ".join(f"{pid} {c['cut']}" for pid, c in summary["cuts"].items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=12000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="sequential")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, scheme, options, devices) in enumerate(RUNS):
            cfg = parse_config(config(scheme, options, devices, args))
            start = time.perf_counter()
            s = run_experiment(cfg, out=Path(tmp) / str(i), progress=False)
            wall = time.perf_counter() - start
            rounds = s["rounds"]
            rows.append(
                f"| {label} | {100 * s['accuracy']:.2f} | {s['total_latency_s'] / rounds:.1f} | "
                f"{s['device_energy_j'] / rounds:.2f} | "
                f"{(s['bytes_up'] + s['bytes_down']) / rounds / 1e6:.2f} | {cuts(s)} | {wall:.0f} |"
            )
            print(f"done: {label} ({wall:.0f} s)", flush=True)
    print(
        f"\nFashion-MNIST subset {args.subset}, cnn-tiny width 8, batch 4, {args.rounds} rounds, "
        f"seed {args.seed}, backend {args.backend}\n"
    )
    print(
        "| scheme | accuracy % | round latency s | device energy J/round | MB/round "
        "| cut per profile | wall s |"
    )
    print("|---|---:|---:|---:|---:|---|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
