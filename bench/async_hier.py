"""Time to accuracy on the simulated clock: synchronous FedAvg, FedBuff, FedAsync, HierFAVG.

One mixed 6G/IoT fleet (examples/fedbuff_fleet.yaml): 8 Raspberry Pi 4 on Wi-Fi 6,
8 Galaxy S24 on 5G NR sub-6 GHz, 8 STM32H743 on NB-IoT and 8 on LoRa SF7, Fashion-MNIST
(16,000 training images from ``TINYLARGE_DATA``, IID), the ``mlp`` (32 hidden units), one
local epoch of SGD (batch 32, lr 0.1) per update, seed 0. Each scheme runs until the
first evaluated round with test accuracy at ``--target`` (or its round budget):

- ``fedavg``: 8 devices a round (``training.fraction`` 0.25); a round waits for its
  slowest device, and a LoRa board is in most rounds.
- ``fedbuff``: 8 devices training at once, a server step on every ``--buffer`` (4)
  arrivals, staleness weight ``1/sqrt(1 + s)``, server lr 1.
- ``fedasync``: 8 at once, every arrival mixed in with ``alpha = 0.6 (1 + s)^-0.5``.
- ``hierfavg``: an edge server per radio (Wi-Fi, 5G, NB-IoT, LoRa cells) on gigabit
  Ethernet to the cloud, 8 devices a cloud round, ``kappa2 = 2`` edge rounds in each.
- ``fedavg+channel``, ``fedavg+energy``, ``fedavg+power-of-choice``: FedAvg whose 8
  devices a round are the best uplinks, those that have spent the least energy, or those
  with the highest local loss (each candidate downloads the model and reports its loss),
  of 16 uniform candidates (``training.selection``, :mod:`tinylarge.sim.selection`).
- ``fedavg+oort``: FedAvg whose 8 devices a round Oort picks (Lai et al. 2021): untrained
  devices explored best uplink first, trained ones by loss and duration.

Printed (markdown): per scheme the simulated seconds to the target, server updates (the
metric rounds) it took, final accuracy, device energy, bytes on air, mean and largest
staleness, and wall seconds; then the speed-ups over synchronous FedAvg, with FedBuff's
published ones beside them (Nguyen et al. 2022, https://arxiv.org/abs/2106.06639: up to
3.8x faster than synchronous FL in the arXiv abstract, 3.3x in the AISTATS version, and up
to 2.5x faster than FedAsync). Every figure comes from the runs' summary.json.

    TINYLARGE_DATA=../shared/datasets nice .venv/bin/python bench/async_hier.py \
        [--target 0.80] [--seed 0] [--schemes fedavg,fedbuff,...] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from tinylarge.config import parse_config
from tinylarge.sim.engine import run_experiment

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "fedbuff_fleet.yaml"
#: Each row: its scheme, the scheme's options, the most metric rounds (server updates) it may
#: take, and training settings over the example's (FedAvg's selection policies).
SCHEMES: dict[str, tuple[str, dict[str, Any], int, dict[str, Any]]] = {
    "fedavg": ("fedavg", {}, 60, {}),
    "fedbuff": ("fedbuff", {"concurrency": 8, "buffer_size": 4}, 400, {}),
    "fedasync": ("fedasync", {"concurrency": 8, "alpha": 0.6}, 800, {}),
    "hierfavg": ("hierfavg", {"kappa2": 2}, 40, {}),
    "fedavg+channel": ("fedavg", {}, 60, {"selection": "channel"}),
    "fedavg+energy": ("fedavg", {}, 60, {"selection": "energy"}),
    "fedavg+power-of-choice": ("fedavg", {}, 60, {"selection": "power-of-choice"}),
    "fedavg+oort": ("fedavg", {}, 60, {"selection": "oort"}),
}
#: FedBuff's published speed-ups (Nguyen et al. 2022).
PUBLISHED_SYNC = "2.5-3.8x (up to 3.8x, arXiv; 3.3x, AISTATS)"
PUBLISHED_ASYNC = "up to 2.5x"


def config(label: str, args: argparse.Namespace) -> dict[str, Any]:
    """examples/fedbuff_fleet.yaml with row ``label``'s scheme and settings."""
    cfg: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    name, options, rounds, training = SCHEMES[label]
    if name == "fedbuff":
        options = {**options, "buffer_size": args.buffer}
    cfg["name"] = f"async-hier-{label.replace('+', '-')}"
    cfg["seed"] = args.seed
    cfg["scheme"] = {"name": name, "options": options}
    cfg["training"] = {
        **cfg["training"],
        **training,
        "rounds": rounds,
        "target_accuracy": args.target,
    }
    if name == "hierfavg":  # an edge server per radio, each its own cell
        groups = [g["name"] for g in cfg["topology"]["devices"]]
        cfg["topology"]["edges"] = [{"name": f"{g}-edge", "serves": [g]} for g in groups]
    return cfg


def run(label: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    started = time.perf_counter()
    s = run_experiment(parse_config(config(label, args)), out=out / label, progress=False)
    reached = s["rounds_to_target"] is not None
    return {
        "scheme": label,
        "reached": reached,
        "time_to_target_s": s["total_latency_s"] if reached else None,
        "simulated_s": s["total_latency_s"],
        "updates": s["rounds"],
        "accuracy": s["accuracy"],
        "device_energy_j": s["device_energy_j"],
        "bytes": s["bytes_up"] + s["bytes_down"],
        "staleness_mean": s.get("staleness_mean"),
        "staleness_max": s.get("staleness_max"),
        "wall_s": time.perf_counter() - started,
    }


def fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(rows: list[dict[str, Any]], target: float) -> str:
    lines = [
        f"Time to {target:.0%} test accuracy on the simulated clock (Fashion-MNIST, mixed fleet)",
        "",
        "| scheme | time to target (sim s) | server updates | accuracy | device energy (J) "
        "| bytes on air (MB) | staleness mean / max | wall (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        when = (
            fmt(r["time_to_target_s"], ".1f")
            if r["reached"]
            else (f"not reached ({r['simulated_s']:.1f})")
        )
        stale = (
            "-"
            if r["staleness_mean"] is None
            else f"{r['staleness_mean']:.2f} / {r['staleness_max']}"
        )
        lines.append(
            f"| {r['scheme']} | {when} | {r['updates']} | {r['accuracy']:.4f} "
            f"| {r['device_energy_j']:.1f} | {r['bytes'] / 1e6:.1f} | {stale} | {r['wall_s']:.0f} |"
        )
    by = {r["scheme"]: r for r in rows}
    buff = by.get("fedbuff")
    if buff is not None and buff["reached"]:
        lines.append("")
        for other, published in (("fedavg", PUBLISHED_SYNC), ("fedasync", PUBLISHED_ASYNC)):
            o = by.get(other)
            if o is None:
                continue
            if o["reached"]:
                ratio = f"{o['time_to_target_s'] / buff['time_to_target_s']:.2f}x"
            else:
                ratio = f"> {o['simulated_s'] / buff['time_to_target_s']:.2f}x (not reached)"
            lines.append(f"- {other} / fedbuff time to target: {ratio} (published: {published})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", type=float, default=0.80, help="test accuracy to reach")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--buffer", type=int, default=4, help="FedBuff's K")
    p.add_argument("--schemes", default=",".join(SCHEMES), help="comma-separated rows")
    p.add_argument("--json", action="store_true", help="print the rows as JSON too")
    args = p.parse_args(argv)
    names = [n for n in args.schemes.split(",") if n]
    unknown = [n for n in names if n not in SCHEMES]
    if unknown:
        print(f"unknown scheme {unknown[0]!r}; choose from {', '.join(SCHEMES)}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run(n, args, Path(tmp)) for n in names]
    print(table(rows, args.target))
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
