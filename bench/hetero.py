"""Knowledge transfer between heterogeneous tiny models and a large server model, side by side.

On Fashion-MNIST with a Dirichlet(0.5) label skew over a mixed fleet
(4 STM32H743 and 2 STM32F746 over BLE 2M, 4 Raspberry Pi 4 over Wi-Fi 6; an
L4 edge server), the same rounds of

- FedAvg of the tiny model (``cnn-tiny``, width 8) where it can be trained,
- FedAvg of the large model (``cnn-large``, width 16) where it fits (the Pis),
- TL and FTL: the tiny model pre-trained at the server on 10% of the data it
  holds, each device fine-tuning (TL) or federating (FTL) the part its SRAM fits,
- FedGKT: the tiny model's first conv stage as the device extractor, the large
  model on the server, with the reference implementation's settings (Adam at
  1e-3 on devices and server, 20 server epochs per round, temperature 3, no
  distillation on the server); as published, and with the devices' extractors
  averaged every round (``sync_extractor``, not part of FedGKT),
- FedDF-style federated distillation and federated mutual learning with a
  different device model per profile (``cnn-tiny`` width 8 on the Pis, width 4
  on the H743s, an ``mlp`` on the F746s),

and reports device-side and server-side test accuracy, device MACs (from the
ledger), bytes per round, device energy and which devices took part. Beside
it, FedGKT's edge-compute saving: device MACs per training sample of FedAvg
with the large model over those of FedGKT, against the 9-17x that He et al.
(NeurIPS 2020) report.

If ``bench/ffm_bench.py`` exists, its FFM table (federated LoRA on MiniLM:
tuned against frozen accuracy, adapter bytes against full-model bytes) is
printed after this one (``--no-ffm`` skips it).

    TINYLARGE_DATA=../shared/datasets .venv/bin/python bench/hetero.py \
        [--subset 6000] [--rounds 10] [--backend sequential] [--only fedavg,fedgkt]
        [--no-ffm] [--quick] [--json rows.json] [--validation] [--gkt-ablation]

``--validation`` evaluates on 1,200 other training images instead of the test set:
hyper-parameters are chosen there, never on the test set. ``--gkt-ablation`` runs
the FedGKT settings table (each row one change from the reference settings).
About 12 minutes for the default on 2 busy cores (plus the FFM table's run), most
of it FedGKT's 20 server epochs per round.
Results and discussion: docs/knowledge_transfer.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

import tinylarge.sim.context
from tinylarge.config import parse_config
from tinylarge.data.dataset import DATASETS, Dataset
from tinylarge.data.splits import stratified_choice
from tinylarge.sim.context import Context
from tinylarge.sim.engine import run_experiment
from tinylarge.sim.ledger import Ledger

DEVICES: list[dict[str, Any]] = [
    {"profile": "stm32h743", "count": 4, "link": "ble-2m", "distance_m": 8},
    {"profile": "stm32f746", "count": 2, "link": "ble-2m", "distance_m": 8},
    {"profile": "rpi4", "count": 4, "link": "wifi6", "distance_m": 15},
]
TINY = {"name": "cnn-tiny", "options": {"width": 8}}
LARGE = {"name": "cnn-large", "options": {"width": 16}}
#: A different device model per profile for the distillation schemes.
HETERO = {
    "rpi4": {"name": "cnn-tiny", "options": {"width": 8}},
    "stm32h743": {"name": "cnn-tiny", "options": {"width": 4}},
    "stm32f746": {"name": "mlp", "options": {"hidden": 16}},
}

#: The shared model of mutual learning: small enough to train beside the private one.
SHARED = {"name": "mlp", "options": {"hidden": 16}}

#: FedGKT's devices and server train with the reference implementation's optimizer (FedML
#: fedgkt: Adam at lr 1e-3, weight decay 1e-4, kept across rounds); the other rows keep the
#: bench's SGD at lr 0.05, which is what suits FedAvg (with Adam at 1e-3 it reaches 0.746 on
#: the validation split against 0.817 with SGD).
GKT_TRAINING = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-4}

#: (label, scheme, model, options, overrides of the training section)
RUNS: list[tuple[str, str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ("FedAvg, tiny model", "fedavg", TINY, {}, {}),
    ("FedAvg, large model", "fedavg", LARGE, {}, {}),
    ("TL (server pre-train, local fine-tune)", "tl", TINY, {}, {}),
    ("FTL (per-profile parts, averaged)", "ftl", TINY, {}, {}),
    ("FedGKT", "fedgkt", TINY, {"server_model": LARGE}, GKT_TRAINING),
    (
        "FedGKT + extractor averaging",
        "fedgkt",
        TINY,
        {"server_model": LARGE, "sync_extractor": True},
        GKT_TRAINING,
    ),
    (
        "FedDF-style distillation",
        "feddf",
        TINY,
        {"client_models": HETERO, "server_model": LARGE, "public_fraction": 0.05},
        {},
    ),
    (
        "Mutual learning (FML)",
        "fml",
        TINY,
        {"client_models": HETERO, "shared_model": SHARED, "alpha": 0.8},
        {},
    ),
]


#: FedGKT settings side by side (``--gkt-ablation``, meant with ``--validation``): what the
#: FedGKT defaults rest on. Each row changes one thing from the reference settings.
GKT_ABLATION: list[tuple[str, str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ("FedAvg, tiny model", "fedavg", TINY, {}, {}),
    ("FedAvg, tiny model, Adam 1e-3", "fedavg", TINY, {}, GKT_TRAINING),
    ("FedGKT, reference settings", "fedgkt", TINY, {"server_model": LARGE}, GKT_TRAINING),
    (
        "FedGKT, the paper's server loss (KD weight 1)",
        "fedgkt",
        TINY,
        {"server_model": LARGE, "server_kd_weight": 1.0},
        GKT_TRAINING,
    ),
    (
        "FedGKT, 3 server epochs",
        "fedgkt",
        TINY,
        {"server_model": LARGE, "server_epochs": 3},
        GKT_TRAINING,
    ),
    ("FedGKT, devices on SGD 0.05", "fedgkt", TINY, {"server_model": LARGE}, {}),
    (
        "FedGKT, devices on SGD 0.05, 3 server epochs",
        "fedgkt",
        TINY,
        {"server_model": LARGE, "server_epochs": 3},
        {},
    ),
]


def config(
    scheme: str,
    model: dict[str, Any],
    options: dict[str, Any],
    args: argparse.Namespace,
    training: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "name": f"hetero-{scheme}",
        "seed": args.seed,
        "task": {
            "dataset": "fashion-mnist",
            "subset": args.subset,
            "partition": {"name": "dirichlet", "options": {"alpha": 0.5}},
        },
        "model": model,
        "topology": {"server": {"profile": "l4"}, "devices": DEVICES},
        "scheme": {"name": scheme, "options": options},
        "training": {
            "rounds": args.rounds,
            "local_epochs": 1,
            "batch_size": 8,
            "lr": 0.05,
            "optimizer": "sgd",
            **(training or {}),
        },
        "engine": {"backend": args.backend, "eval_every": args.rounds, "threads": args.threads},
    }


def validation_dataset(name: str, *, subset: int, seed: int) -> Dataset:
    """The bench's training subset with, as its test set, ``subset // 5`` other training images.

    The training images are exactly those of ``load_dataset(name, subset=subset, seed=seed)``;
    the validation images are drawn (stratified) from the rest of the publisher's training
    split, so tuning on them never sees the test set.
    """
    full = DATASETS[name](data_dir=None, cache_dir=None, seed=seed)
    chosen = full.subset(subset, seed=seed)
    train = stratified_choice(full.y_train, subset, np.random.default_rng(seed))
    assert np.array_equal(full.y_train[train], chosen.y_train)
    rest = np.setdiff1d(np.arange(full.num_train), train)
    val = rest[stratified_choice(full.y_train[rest], subset // 5, np.random.default_rng([seed, 7]))]
    return dataclasses.replace(chosen, x_test=full.x_train[val], y_test=full.y_train[val])


@contextlib.contextmanager
def validation_split() -> Iterator[None]:
    """Within this block, runs evaluate on :func:`validation_dataset` instead of the test set."""
    module: Any = tinylarge.sim.context  # the context's data loader, swapped for this block
    original = module.load_task_data

    def load(name: str, *, data_dir: Any = None, subset: int | None = None, seed: int = 0) -> Any:
        assert subset is not None, "the validation split needs --subset"
        return validation_dataset(name, subset=subset, seed=seed), None

    module.load_task_data = load
    try:
        yield
    finally:
        module.load_task_data = original


def fedavg_train_samples(cfg_dict: dict[str, Any], ledger: Ledger) -> int:
    """Samples FedAvg trained on devices: each local-train event is a client's whole set."""
    ctx = Context(parse_config(cfg_dict))
    sizes = {c.node: len(c.indices) for c in ctx.clients}
    epochs = ctx.settings.epochs
    return sum(sizes[e.node] * epochs for e in ledger.select(kind="compute", what="local-train"))


def run(
    label: str,
    scheme: str,
    model: dict[str, Any],
    options: dict[str, Any],
    training: dict[str, Any],
    args: Any,
) -> dict[str, Any]:
    cfg_dict = config(scheme, model, options, args, training)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        s = run_experiment(parse_config(cfg_dict), out=Path(tmp) / "run", progress=False)
        wall = time.perf_counter() - start
        ledger = Ledger.from_csv(Path(tmp) / "run" / "ledger.csv")
    samples = s.get("device_train_samples") or fedavg_train_samples(cfg_dict, ledger)
    taking_part = sum(n for pid, n in devices_by_profile().items() if pid not in s["excluded"])
    return {
        "label": label,
        "scheme": scheme,
        "accuracy": s["accuracy"],
        "large_accuracy": s["large_accuracy"],
        "device_macs": s["device_macs"],
        "macs_per_sample": s["device_macs"] / max(samples, 1),
        "bytes_per_round": (s["bytes_up"] + s["bytes_down"]) / s["rounds"],
        "device_energy_j": s["device_energy_j"],
        "devices": f"{taking_part}/{sum(devices_by_profile().values())}",
        "excluded": sorted(s["excluded"]),
        "parts": {pid: p["part"] for pid, p in s.get("parts", {}).items()},
        "wall_s": wall,
    }


def devices_by_profile() -> dict[str, int]:
    return {g["profile"]: g["count"] for g in DEVICES}


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| scheme | device acc | server acc | device MACs | MACs / train sample "
        "| bytes / round | device energy (J) | devices | wall (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {_fmt(r['accuracy'], '.3f')} | {_fmt(r['large_accuracy'], '.3f')} "
            f"| {r['device_macs']:.3g} | {r['macs_per_sample']:.3g} | {r['bytes_per_round']:.3g} "
            f"| {r['device_energy_j']:.3g} | {r['devices']} | {r['wall_s']:.0f} |"
        )
    return "\n".join(lines)


def ffm_section(args: argparse.Namespace) -> str | None:
    """The FFM table from bench/ffm_bench.py (federated LoRA on MiniLM), if that file exists.

    Uses its ``ffm_row(dataset, rounds=, backend=, seed=)`` and ``markdown(rows)``.
    """
    path = Path(__file__).with_name("ffm_bench.py")
    if args.no_ffm or not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("ffm_bench", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    row: Callable[..., dict[str, Any]] = module.ffm_row
    rows = [
        row(name, rounds=args.ffm_rounds, backend=args.backend, seed=args.seed)
        for name in args.ffm_datasets.split(",")
    ]
    text: str = module.markdown(rows)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="sequential")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of server work")
    parser.add_argument("--only", default="", help="comma-separated scheme names or row labels")
    parser.add_argument("--no-ffm", action="store_true", help="skip the FFM table")
    parser.add_argument("--ffm-datasets", default="ibn-nlu", help="datasets of the FFM table")
    parser.add_argument("--ffm-rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2 rounds on 2000 samples")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument(
        "--gkt-ablation",
        action="store_true",
        help="run the FedGKT settings table instead of the schemes (use with --validation)",
    )
    parser.add_argument(
        "--validation",
        action="store_true",
        help="evaluate on held-out training images instead of the test set (for tuning)",
    )
    args = parser.parse_args()
    if args.quick:
        args.subset, args.rounds = 2000, 2
    only = set(filter(None, args.only.split(",")))
    rows = []
    for label, scheme, model, options, training in GKT_ABLATION if args.gkt_ablation else RUNS:
        if only and scheme not in only and label not in only:
            continue
        with validation_split() if args.validation else contextlib.nullcontext():
            rows.append(run(label, scheme, model, options, training, args))
        print(f"done: {label} ({rows[-1]['wall_s']:.0f} s)", file=sys.stderr)
    print(table(rows))
    by = {r["label"]: r for r in rows}
    large, tiny = by.get("FedAvg, large model"), by.get("FedAvg, tiny model")
    for label in ("FedGKT", "FedGKT + extractor averaging"):
        gkt = by.get(label)
        if gkt and large and tiny:
            ratio = large["macs_per_sample"] / gkt["macs_per_sample"]
            print(
                f"\n{label}: {ratio:.1f}x fewer device MACs per training sample than FedAvg "
                f"of the large model (He et al., NeurIPS 2020, report 9-17x); server model "
                f"{gkt['large_accuracy']:.3f} vs FedAvg large {large['accuracy']:.3f} "
                f"and FedAvg tiny {tiny['accuracy']:.3f}."
            )
    for r in rows:
        if r["parts"]:
            print(f"{r['label']}: parts per profile {r['parts']}")
        if r["excluded"]:
            print(f"{r['label']}: excluded profiles {r['excluded']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    ffm = ffm_section(args)
    if ffm is not None:
        print("\nFederated foundation model (FFM, bench/ffm_bench.py):\n")
        print(ffm)


if __name__ == "__main__":
    main()
