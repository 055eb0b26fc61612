"""Federated LoRA on MiniLM against the frozen model: accuracy and bytes per round.

The FFM row of the issue-6 bench (``bench/hetero.py`` imports :func:`ffm_row`):
phones and Raspberry Pis fine-tune LoRA adapters of all-MiniLM-L6-v2 on their
private intents, MCUs train a hashed bag-of-words MLP distilled from it. For each
dataset it runs the example config twice, with LoRA and with the encoder frozen
(rank 0: the same federation trains only the head), and prints the two test
accuracies beside two more frozen-model references (a central linear probe on
its embeddings, zero-shot by intent name), the tiny student's accuracy, and the
adapter bytes the LoRA devices upload per round against full-model uploads.

    .venv/bin/python bench/ffm_bench.py [--datasets ibn-nlu,clinc150] [--rounds 3]
        [--backend sequential|ray] [--json]

Needs the ffm extra (``pip install -e '.[ffm]'``) and the shared datasets
(``TINYLARGE_DATA``, default ../shared/datasets).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from tinylarge.config import parse_config
from tinylarge.sim.engine import run_experiment

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("TINYLARGE_DATA", REPO.parent / "shared" / "datasets"))
#: The bench runs the examples' configs (rounds and backend overridden).
EXAMPLES = {
    "ibn-nlu": REPO / "examples" / "ffm_intents.yaml",
    "clinc150": REPO / "examples" / "ffm_clinc150.yaml",
}


def ffm_config(
    dataset: str = "ibn-nlu",
    *,
    rounds: int = 3,
    backend: str = "sequential",
    seed: int = 0,
    frozen: bool = False,
) -> dict[str, Any]:
    """The example config of ``dataset``; ``frozen=True``: LoRA rank 0 (only the head trains).

    The frozen run is the same federation with the same data, rounds and optimizer,
    so the two runs differ only in the adapters; it skips distillation and the probe.
    """
    cfg: dict[str, Any] = yaml.safe_load(EXAMPLES[dataset].read_text())
    cfg["seed"] = seed
    cfg["task"]["data_dir"] = str(DATA_DIR)
    cfg["training"]["rounds"] = rounds
    cfg["engine"] = {**cfg.get("engine", {}), "backend": backend, "eval_every": rounds}
    if frozen:
        cfg["name"] += "-frozen"
        options = cfg["scheme"]["options"]
        options.update(lora_rank=0, distill_epochs=0, frozen_baseline=False)
    return cfg


def _run(cfg: dict[str, Any], out: Path | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        summary: dict[str, Any] = run_experiment(
            parse_config(cfg), out=out or Path(tmp) / "run", progress=False
        )
    return summary


def ffm_row(
    dataset: str = "ibn-nlu",
    *,
    rounds: int = 3,
    backend: str = "sequential",
    seed: int = 0,
    out: Path | None = None,
) -> dict[str, Any]:
    """Run federated LoRA and the frozen model on ``dataset``; return the table row (a dict).

    ``out``: keep the LoRA run's directory there (``out/lora``, ``out/frozen``).
    """
    started = time.perf_counter()
    kwargs: dict[str, Any] = {"rounds": rounds, "backend": backend, "seed": seed}
    s = _run(ffm_config(dataset, **kwargs), out and out / "lora")
    frozen = _run(ffm_config(dataset, frozen=True, **kwargs), out and out / "frozen")
    return {
        "dataset": dataset,
        "rounds": s["rounds"],
        "lora_devices": s["lora_devices"],
        "student_devices": s["student_devices"],
        "lora_accuracy": s["large_accuracy"],
        "frozen_accuracy": frozen["large_accuracy"],
        "probe_accuracy": s["frozen_accuracy"],
        "zero_shot_accuracy": s["zero_shot_accuracy"],
        "student_accuracy": s["accuracy"],
        "adapter_bytes": s["adapter_bytes"],
        "full_model_bytes": s["full_model_bytes"],
        "adapter_pct": 100 * s["adapter_fraction"],
        "adapter_bytes_up_per_round": s["adapter_bytes_up_per_round"],
        "full_model_bytes_up_per_round": s["full_model_bytes_up_per_round"],
        "lora_device_macs_per_round": s["device_macs"] / s["rounds"],
        "frozen_device_macs_per_round": frozen["device_macs"] / frozen["rounds"],
        "device_energy_j": s["device_energy_j"],
        "sim_latency_s": s["total_latency_s"],
        "wall_s": time.perf_counter() - started,
    }


COLUMNS = (
    ("dataset", "dataset", "{}"),
    ("rounds", "rounds", "{}"),
    ("LoRA acc", "lora_accuracy", "{:.3f}"),
    ("frozen acc (fed. head)", "frozen_accuracy", "{:.3f}"),
    ("frozen acc (probe)", "probe_accuracy", "{:.3f}"),
    ("zero-shot acc", "zero_shot_accuracy", "{:.3f}"),
    ("MCU student acc", "student_accuracy", "{:.3f}"),
    ("adapter B", "adapter_bytes", "{:,}"),
    ("full model B", "full_model_bytes", "{:,}"),
    ("adapter %", "adapter_pct", "{:.2f}"),
    ("adapter B up/round", "adapter_bytes_up_per_round", "{:,.0f}"),
    ("full-model B up/round", "full_model_bytes_up_per_round", "{:,.0f}"),
    ("device J", "device_energy_j", "{:.1f}"),
    ("wall s", "wall_s", "{:.0f}"),
)


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(c[0] for c in COLUMNS) + " |"]
    lines.append("|---|" + "---:|" * (len(COLUMNS) - 1))
    for row in rows:
        lines.append("| " + " | ".join(fmt.format(row[key]) for _, key, fmt in COLUMNS) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="ibn-nlu,clinc150")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", default="sequential", choices=("sequential", "ray"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [
        ffm_row(name, rounds=args.rounds, backend=args.backend) for name in args.datasets.split(",")
    ]
    print(json.dumps(rows, indent=2) if args.json else markdown(rows))


if __name__ == "__main__":
    main()
