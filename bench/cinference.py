"""Collaborative inference: cascade, early exit, split inference vs device-only and server-only.

On Fashion-MNIST, NSL-KDD and FSDD, one STM32H743 microcontroller per link (BLE to 6G
sub-THz), an edge server (Jetson Orin Nano) and, for early exits, an A100 cloud
behind Ethernet. Each mode is one run (``tinylarge run``) whose devices all serve
the whole test set (``assignment: replicate``), so every link sees the same
requests; the device-only and server-only baselines come from the same runs.

    TINYLARGE_DATA=../shared/datasets .venv/bin/python bench/cinference.py \
        [--datasets fashion-mnist,fsdd,nsl-kdd] [--out runs/bench-cinference] \
        [--plot docs/collaborative_inference.png]

Prints a markdown table per dataset and the done-when check of issue 7 (cascade:
>= 99% of the large model's accuracy with <= 30% offloaded, and less device energy
than offloading everything over NB-IoT), and saves the plot (accuracy against
device energy per inference; mean latency per link).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

from tinylarge.config import parse_config
from tinylarge.sim.engine import run_experiment

DEVICE = "stm32h743"
SERVER = "jetson-orin-nano"
#: (preset, distance in metres): from BLE to 6G sub-THz, each at a typical range.
LINKS: tuple[tuple[str, float], ...] = (
    ("ble-2m", 5.0),
    ("nb-iot", 1000.0),
    ("wifi6", 15.0),
    ("nr-sub6", 300.0),
    ("nr-mmwave", 100.0),
    ("6g-subthz", 20.0),
)
TRAINING = {"batch_size": 128, "lr": 0.001, "optimizer": "adam"}

#: Per dataset: subset, epochs (rounds), the cascade's tiny and large models, the
#: early-exit backbone and widths, and the split-inference model (a bottleneck MLP).
DATASETS: dict[str, dict[str, Any]] = {
    "fashion-mnist": {
        "subset": 20000,
        "rounds": 5,
        "tiny": ("mlp", {"hidden": 128}),
        "large": ("cnn-tiny", {"width": 32}),
        "early": {"backbone": "cnn", "widths": [8, 32, 64]},
        "split": ("mlp", {"hidden": [64, 1024, 1024]}),
    },
    "fsdd": {
        "subset": None,
        "rounds": 12,
        "tiny": ("mlp", {"hidden": 32}),
        "large": ("cnn-large", {"width": 16}),
        "early": {"backbone": "cnn", "widths": [8, 32, 64]},
        "split": ("mlp", {"hidden": [64, 1024, 1024]}),
    },
    "nsl-kdd": {
        "subset": None,
        "rounds": 3,
        "tiny": ("mlp", {"hidden": 8}),
        "large": ("mlp", {"hidden": [256, 256]}),
        "early": {"backbone": "mlp", "widths": [8, 128, 256]},
        "split": ("mlp", {"hidden": [16, 512, 512]}),
    },
}
MODES = ("cascade", "early-exit", "split-inference")
#: Offload budget of the threshold modes: spent on validation, held online on every device.
BUDGET = {"target": "offload", "target_value": 0.27, "adapt": True}


def config(dataset: str, mode: str) -> dict[str, Any]:
    spec = DATASETS[dataset]
    model, model_options = spec["split"] if mode == "split-inference" else spec["tiny"]
    options: dict[str, Any]
    if mode == "cascade":
        large, large_options = spec["large"]
        options = {"large_model": large, "large_options": large_options, **BUDGET}
    elif mode == "early-exit":
        options = {
            **spec["early"],
            "placement": ["device", "edge", "cloud"],
            "cloud": "a100",
            **BUDGET,
        }
    else:
        options = {"objective": "energy"}
    return {
        "name": f"cinference-{dataset}-{mode}",
        "seed": 0,
        "task": {"dataset": dataset, "subset": spec["subset"]},
        "model": {"name": model, "options": model_options},
        "topology": {
            "server": {"profile": SERVER},
            "devices": [
                {"profile": DEVICE, "count": 1, "link": link, "distance_m": d} for link, d in LINKS
            ],
        },
        "scheme": {"name": mode, "options": {**options, "assignment": "replicate"}},
        "training": {"rounds": spec["rounds"], **TRAINING},
        "engine": {"threads": 1},
    }


def rows_of(dataset: str, mode: str, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per link and variant (the mode and its two baselines)."""
    out = []
    for link, _ in LINKS:
        group = summary["by_group"][f"{DEVICE}/{link}"]
        for variant, figs in group.items():
            out.append(
                {
                    "dataset": dataset,
                    "mode": mode,
                    "variant": mode if variant == "mode" else variant,
                    "link": link,
                    "accuracy": figs["accuracy"],
                    "offload_fraction": figs["offload_fraction"],
                    "latency_mean_s": figs["latency_mean_s"],
                    "latency_p95_s": figs["latency_p95_s"],
                    "device_mj": 1e3 * figs["device_energy_per_inference_j"],
                    "bytes_per_inference": figs["bytes_on_air_per_inference"],
                }
            )
    return out


def table(rows: list[dict[str, Any]], dataset: str) -> str:
    """Markdown: per link, each mode and its baselines (accuracy, offload, latency, energy)."""
    lines = [
        f"#### {dataset}",
        "",
        "| link | variant | accuracy | offloaded | mean latency | p95 latency "
        "| device mJ/inf | B/inf |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for link, _ in LINKS:
        for r in rows:
            if r["dataset"] != dataset or r["link"] != link:
                continue
            name = r["variant"] if r["variant"] == r["mode"] else f"{r['mode']}: {r['variant']}"
            lines.append(
                f"| {link} | {name} | {100 * r['accuracy']:.2f}% "
                f"| {100 * r['offload_fraction']:.1f}% "
                f"| {_ms(r['latency_mean_s'])} | {_ms(r['latency_p95_s'])} "
                f"| {r['device_mj']:.3g} | {r['bytes_per_inference']:.0f} |"
            )
    return "\n".join(lines)


def _ms(seconds: float) -> str:
    return f"{1e3 * seconds:.3g} ms"


def done_when(summaries: dict[tuple[str, str], dict[str, Any]]) -> str:
    """Issue 7's criterion for the cascade on every dataset run."""
    lines = [
        "| dataset | large model | cascade | ratio | offloaded (max over links) "
        "| cascade mJ/inf over NB-IoT | server-only mJ/inf over NB-IoT | met |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for (dataset, mode), s in summaries.items():
        if mode != "cascade":
            continue
        large = s["baselines"]["server_only"]["accuracy"]
        acc = s["inference"]["accuracy"]
        offload = max(g["mode"]["offload_fraction"] for g in s["by_group"].values())
        nb = s["by_group"][f"{DEVICE}/nb-iot"]
        ours = 1e3 * nb["mode"]["device_energy_per_inference_j"]
        theirs = 1e3 * nb["server_only"]["device_energy_per_inference_j"]
        met = acc >= 0.99 * large and offload <= 0.30 and ours < theirs
        lines.append(
            f"| {dataset} | {100 * large:.2f}% | {100 * acc:.2f}% | {acc / large:.4f} "
            f"| {100 * offload:.1f}% | {ours:.3g} | {theirs:.3g} | {'yes' if met else 'no'} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Per dataset: accuracy vs device energy per inference, and mean latency per link."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    variants = list(dict.fromkeys(_label(r) for r in rows))
    colors = {v: plt.get_cmap("tab10")(i % 10) for i, v in enumerate(variants)}
    markers = dict(zip([link for link, _ in LINKS], "os^Dv*", strict=True))
    fig, axes = plt.subplots(len(datasets), 2, figsize=(13, 4 * len(datasets)), squeeze=False)
    width = 0.8 / len(variants)
    for (left, right), dataset in zip(axes, datasets, strict=True):
        mine = [r for r in rows if r["dataset"] == dataset]
        for r in mine:
            left.scatter(
                r["device_mj"],
                100 * r["accuracy"],
                marker=markers[r["link"]],
                color=colors[_label(r)],
                s=36,
                alpha=0.85,
            )
        left.set_xscale("log")
        left.set_xlabel("device energy per inference (mJ)")
        left.set_ylabel("accuracy (%)")
        left.set_title(f"{dataset}: accuracy vs device energy")
        left.grid(alpha=0.3)
        for k, variant in enumerate(variants):
            ys = [
                next(
                    1e3 * r["latency_mean_s"]
                    for r in mine
                    if _label(r) == variant and r["link"] == link
                )
                for link, _ in LINKS
            ]
            xs = [i + k * width for i in range(len(LINKS))]
            right.bar(xs, ys, width=width, color=colors[variant])
        right.set_yscale("log")
        right.set_xticks(
            [i + 0.4 - width / 2 for i in range(len(LINKS))], [link for link, _ in LINKS]
        )
        right.set_ylabel("mean end-to-end latency (ms)")
        right.set_title(f"{dataset}: latency per link")
        right.grid(axis="y", alpha=0.3)
    handles = [Line2D([], [], marker="s", linestyle="", color=colors[v], label=v) for v in variants]
    handles += [
        Line2D([], [], marker=m, linestyle="", color="0.3", label=link)
        for link, m in markers.items()
    ]
    fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _label(r: dict[str, Any]) -> str:
    return r["variant"] if r["variant"] == r["mode"] else f"{r['mode']}: {r['variant']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--out", default="runs/bench-cinference")
    parser.add_argument("--plot", default="docs/collaborative_inference.png")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rebuild the tables and the plot from the runs already in --out",
    )
    args = parser.parse_args()
    out = Path(args.out)
    rows: list[dict[str, Any]] = []
    summaries: dict[tuple[str, str], dict[str, Any]] = {}
    started = time.perf_counter()
    for dataset in args.datasets.split(","):
        for mode in args.modes.split(","):
            run_dir = out / f"{dataset}-{mode}"
            if args.report_only:
                s = json.loads((run_dir / "summary.json").read_text())
            else:
                shutil.rmtree(run_dir, ignore_errors=True)
                t = time.perf_counter()
                s = run_experiment(parse_config(config(dataset, mode)), out=run_dir, progress=False)
                print(f"{dataset} {mode}: {time.perf_counter() - t:.0f} s", flush=True)
            summaries[(dataset, mode)] = s
            rows += rows_of(dataset, mode, s)
    (out / "rows.json").write_text(json.dumps(rows, indent=1))
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        print()
        print(table(rows, dataset))
    print()
    print(done_when(summaries))
    plot(rows, Path(args.plot))
    print(f"\nplot: {args.plot}; runs: {out}; total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
