"""Model inversion of smashed data against NoPeek and cut noise, per cut (issue 13, item 3).

Split learning (``sl``, label sharing) of ``cnn-tiny`` (width 8) on MNIST (or Fashion-
MNIST) by four Raspberry Pi 4 over Wi-Fi 6 with a Jetson Orin Nano, cut at a shallow and
a deeper layer of the model (:func:`tinylarge.models.cuts.cut_points`: 2 = after the
first conv's ReLU, 8 x 28 x 28 smashed values; 6 = after the second max-pool, 16 x 7 x
7). At the end of every run the honest-but-curious server trains a decoder on auxiliary
training images passed through the final device side (He et al. 2019; noise-aware under
cut noise, since it passes its images through the devices' noise too) and inverts the
smashed data of 256 test images. For every cut and every defense setting (none, NoPeek
at several weights, Gaussian cut noise at several sigmas) the bench prints one markdown
table row: test accuracy (the deployed model, noise included), its change in points
against the undefended run of the same cut, the inversion's SSIM and PSNR (pixels in [0,
1]), the untrained decoder's SSIM and the class prior's (each victim guessed as the mean
auxiliary image of its class: what an attacker gets from the class alone, which a model
that classifies must carry), the SSIM's ratio to the undefended one and that of its gain
over the class prior, and the device seconds the defense cost (``defense-<name>`` in the
ledger); then the SSIM-against-accuracy curve per cut and defense, the settings that
halve the SSIM at a cost of at most 2 accuracy points (the issue's Done-when), the class
prior's SSIM as a share of the undefended attack's, and the settings that halve the
attack's gain over the class prior at that cost.

    TINYLARGE_DATA=../shared/datasets .venv/bin/python bench/sl_inversion.py \\
        [--dataset mnist|fashion-mnist] [--subset 12000] [--rounds 4] [--cuts 2,6] \\
        [--nopeek 1,4,16] [--noise 0.5,1,1.5,2] [--aux 2000] [--epochs 10] \\
        [--both W:S,...] [--lr 0.05] [--optimizer sgd|momentum|adam] [--seed 0] [--out FILE]

``--nopeek`` and ``--noise`` list the weights and sigmas (empty: none of that defense);
``--both`` lists NoPeek weight and cut-noise sigma pairs run as one defense;
``--aux`` and ``--epochs`` are the attacker's auxiliary images and decoder epochs;
``--out`` also writes the table and the curve to a markdown file. Each run takes about a
minute on one core (16 runs with the defaults).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from tinylarge.config import parse_config
from tinylarge.sim.engine import run_experiment

DEVICES = [{"profile": "rpi4", "count": 4, "link": "wifi6", "distance_m": 10}]


def config(cut: int, defense: dict[str, Any] | None, args: argparse.Namespace) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": "bench-sl-inversion",
        "seed": args.seed,
        "task": {"dataset": args.dataset, "subset": args.subset, "partition": {"name": "iid"}},
        "model": {"name": "cnn-tiny", "options": {"width": 8}},
        "topology": {"server": {"profile": "jetson-orin-nano"}, "devices": DEVICES},
        "scheme": {"name": "sl", "options": {"cut": cut}},
        "training": {
            "rounds": args.rounds,
            "local_epochs": 1,
            "batch_size": 32,
            "lr": args.lr,
            "optimizer": args.optimizer,
        },
        "attack": {
            "name": "model-inversion",
            "options": {"aux_samples": args.aux, "epochs": args.epochs, "victim_samples": 256},
        },
    }
    if defense is not None:
        cfg["defense"] = defense
    return cfg


def settings(args: argparse.Namespace) -> list[tuple[str, dict[str, Any] | None]]:
    out: list[tuple[str, dict[str, Any] | None]] = [("none", None)]
    out += [(f"nopeek {w:g}", {"name": "nopeek", "options": {"weight": w}}) for w in args.nopeek]
    out += [
        (f"cut-noise {s:g}", {"name": "cut-noise", "options": {"sigma": s}}) for s in args.noise
    ]
    out += [
        (f"nopeek {w:g} + noise {s:g}", {"name": "nopeek", "options": {"weight": w, "sigma": s}})
        for w, s in args.both
    ]
    return out


def pairs(text: str) -> list[tuple[float, float]]:
    """``W:S,W:S``: NoPeek weight and cut-noise sigma pairs."""
    out: list[tuple[float, float]] = []
    for item in text.split(","):
        if item:
            w, _, s = item.partition(":")
            out.append((float(w), float(s)))
    return out


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"])
    parser.add_argument("--subset", type=int, default=12000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--cuts", default="2,6")
    parser.add_argument("--nopeek", type=floats, default=floats("1,4,16"))
    parser.add_argument("--noise", type=floats, default=floats("0.5,1,1.5,2"))
    parser.add_argument(
        "--both", type=pairs, default=pairs(""), help="NoPeek weight:noise sigma pairs, e.g. 6:1"
    )
    parser.add_argument("--aux", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.05, help="devices' and server's lr")
    parser.add_argument("--optimizer", default="sgd", choices=["sgd", "momentum", "adam"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    cuts = [int(c) for c in args.cuts.split(",")]

    header = (
        "| cut | layer | defense | accuracy | change (points) | SSIM | PSNR dB | "
        "baseline SSIM | class-prior SSIM | SSIM / undefended | gain / undefended | "
        "defense device s |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [header]
    curve: dict[tuple[int, str], list[tuple[float, float]]] = {}
    halving: list[str] = []
    halving_gain: list[str] = []
    prior: dict[int, float] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for cut in cuts:
            plain: dict[str, Any] | None = None
            for i, (label, defense) in enumerate(settings(args)):
                cfg = parse_config(config(cut, defense, args))
                s = run_experiment(cfg, out=Path(tmp) / f"c{cut}-{i}", progress=False)
                inv = s["inversion"][str(cut)]
                if plain is None:
                    plain = {"accuracy": s["accuracy"], "ssim": inv["ssim"]}
                    prior[cut] = inv["class_prior_ssim"] / inv["ssim"]
                change = 100 * (s["accuracy"] - plain["accuracy"])
                ratio = inv["ssim"] / plain["ssim"]
                floor = inv["class_prior_ssim"]
                gain = (inv["ssim"] - floor) / (plain["ssim"] - floor)
                lines.append(
                    f"| {cut} | {inv['layer']} | {label} | {s['accuracy']:.4f} | "
                    f"{change:+.2f} | {inv['ssim']:.3f} | {inv['psnr']:.2f} | "
                    f"{inv['baseline_ssim']:.3f} | {inv['class_prior_ssim']:.3f} | {ratio:.2f} | "
                    f"{gain:.2f} | "
                    f"{s.get('defense_device_seconds', 0.0):.4f} |"
                )
                print(lines[-1], flush=True)
                family = label.split(" ")[0]
                curve.setdefault((cut, family), []).append((inv["ssim"], s["accuracy"]))
                if defense is not None and ratio <= 0.5 and change >= -2.0:
                    halving.append(f"cut {cut}, {label}: SSIM x{ratio:.2f}, {change:+.2f} points")
                if defense is not None and gain <= 0.5 and change >= -2.0:
                    halving_gain.append(
                        f"cut {cut}, {label}: gain x{gain:.2f}, {change:+.2f} points"
                    )
    out = ["\n".join(lines), "", "SSIM against accuracy (the curve, per cut and defense):", ""]
    for (cut, family), points in curve.items():
        pts = ", ".join(f"({ssim:.3f}, {acc:.4f})" for ssim, acc in points)
        out.append(f"- cut {cut}, {family}: {pts}")
    out += ["", "Settings that halve the SSIM at a cost of at most 2 points:", ""]
    out += [f"- {h}" for h in halving] or ["- none"]
    out += [
        "",
        "The class prior's SSIM against the undefended attack's (what knowing only each "
        "victim's class gives, a floor for any defense that keeps the class readable): "
        + ", ".join(f"cut {c} x{r:.2f}" for c, r in prior.items()),
        "",
        "Settings that halve the attack's SSIM gain over the class prior at a cost of at "
        "most 2 points:",
        "",
    ]
    out += [f"- {h}" for h in halving_gain] or ["- none"]
    out.append("")
    out.append(
        f"({args.dataset}, subset {args.subset}, {args.rounds} rounds, seed {args.seed}, "
        f"aux {args.aux}, "
        f"decoder epochs {args.epochs}; {time.perf_counter() - started:.0f} s)"
    )
    text = "\n".join(out)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
