"""`tinylarge privacy`: the epsilon of a noisy, subsampled training run, from an accountant.

    tinylarge privacy (--noise-multiplier Z | --target-epsilon E) --sampling-rate Q
                      (--steps T | --epochs EPOCHS) --delta D [--accountant rdp|pld]
                      [--sampling poisson|fixed] [--population N] [--json]

With ``--noise-multiplier`` it prints the epsilon at ``--delta`` of ``T`` steps of the
Gaussian mechanism with that noise multiplier on a sample of rate ``Q``; with
``--target-epsilon`` it prints the smallest noise multiplier that reaches it, and the
epsilon there. ``--epochs`` counts steps as TF Privacy's ``compute_dp_sgd_privacy`` does:
``ceil(EPOCHS / Q)``. ``--sampling fixed`` (batches of ``round(Q * N)`` records drawn
without replacement, replace-one neighbours) needs ``--population N``; with either
sampling a given ``N`` requires ``D < 1/N``. The accounting is
:mod:`tinylarge.security.accounting` (dp-accounting, the ``privacy`` extra).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from tinylarge.errors import TinylargeError
from tinylarge.security.accounting import ACCOUNTANTS, SAMPLINGS

ORDER = 80


def register(sub: Any) -> None:
    """Add the `privacy` command to the subparsers `sub`."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "privacy",
        help="epsilon of DP-SGD or DP federated averaging from an accountant",
        description="The (epsilon, delta) of a Gaussian mechanism repeated over subsampled "
        "steps (DP-SGD, DP-FedAvg), from an RDP or PLD accountant; or the smallest noise "
        "multiplier reaching a target epsilon.",
    )
    noise = parser.add_mutually_exclusive_group(required=True)
    noise.add_argument(
        "--noise-multiplier",
        type=float,
        metavar="Z",
        help="sigma: the noise's standard deviation over the clipping norm",
    )
    noise.add_argument(
        "--target-epsilon",
        type=float,
        metavar="E",
        help="solve for the smallest noise multiplier whose epsilon is at most E",
    )
    parser.add_argument(
        "--sampling-rate",
        type=float,
        required=True,
        metavar="Q",
        help="q in (0, 1]: batch size over records (poisson: each record's chance per step)",
    )
    length = parser.add_mutually_exclusive_group(required=True)
    length.add_argument("--steps", type=int, metavar="T", help="steps (or rounds) composed")
    length.add_argument(
        "--epochs",
        type=float,
        metavar="EPOCHS",
        help="passes over the data: ceil(EPOCHS / Q) steps",
    )
    parser.add_argument("--delta", type=float, required=True, metavar="D", help="delta in (0, 1)")
    parser.add_argument(
        "--accountant",
        choices=ACCOUNTANTS,
        default="rdp",
        help="rdp (Renyi DP: fast; default) or pld (privacy loss distributions: tighter)",
    )
    parser.add_argument(
        "--sampling",
        choices=SAMPLINGS,
        default="poisson",
        help="poisson (add/remove-one neighbours, default) or fixed-size batches without "
        "replacement (replace-one neighbours; needs --population)",
    )
    parser.add_argument(
        "--population",
        type=int,
        metavar="N",
        help="records sampled from; delta must be below 1/N",
    )
    parser.add_argument("--json", action="store_true", help="machine output, full precision")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Account (or solve), print the figures."""
    from tinylarge.cli._output import print_json, print_table
    from tinylarge.security.accounting import (
        NEIGHBOURING,
        DpSpec,
        epsilon,
        solve_noise_multiplier,
        steps_for_epochs,
    )

    if args.sampling == "fixed" and args.population is None:
        raise TinylargeError(
            "--sampling fixed needs --population N (the number of records sampled from)"
        )
    steps = args.steps
    if args.epochs is not None:
        steps = steps_for_epochs(args.epochs, args.sampling_rate)
    setting: dict[str, Any] = {
        "sampling_rate": args.sampling_rate,
        "steps": steps,
        "delta": args.delta,
        "accountant": args.accountant,
        "sampling": args.sampling,
        "population": args.population,
    }
    solved = args.target_epsilon is not None
    if solved:
        sigma = solve_noise_multiplier(args.target_epsilon, **setting)
    else:
        sigma = args.noise_multiplier
    eps = epsilon(DpSpec(noise_multiplier=sigma, **setting))
    fixed = args.sampling == "fixed"
    out: dict[str, Any] = {
        "epsilon": eps,
        "delta": args.delta,
        "noise_multiplier": sigma,
        "target_epsilon": args.target_epsilon,
        "sampling_rate": args.sampling_rate,
        "steps": steps,
        "epochs": args.epochs,
        "accountant": args.accountant,
        "sampling": args.sampling,
        "neighbouring": NEIGHBOURING[args.sampling],
        "population": args.population,
        "sample_size": round(args.sampling_rate * args.population) if fixed else None,
    }
    if args.json:
        print_json(out)
        return 0
    rows: list[list[str]] = [["epsilon", _two_decimals(eps)], ["delta", f"{args.delta:g}"]]
    if solved:
        rows.insert(0, ["target epsilon", f"{args.target_epsilon:g}"])
        rows.append(["noise multiplier (solved)", f"{sigma:.4g}"])
    else:
        rows.append(["noise multiplier", f"{sigma:g}"])
    rows += [["sampling rate", f"{args.sampling_rate:g}"], ["steps", str(steps)]]
    if args.epochs is not None:
        rows.append(["epochs", f"{args.epochs:g}"])
    rows.append(["sampling", f"{args.sampling} ({NEIGHBOURING[args.sampling]} neighbours)"])
    if args.population is not None:
        rows.append(["population", str(args.population)])
    if fixed:
        rows.append(["records per step", str(out["sample_size"])])
    print_table(["quantity", "value"], rows, title=f"tinylarge privacy: {args.accountant}")
    return 0


def _two_decimals(value: float) -> str:
    """Two decimals, or two significant digits below 0.01 (never a bare "0.00")."""
    if not math.isfinite(value):
        return "inf (no noise)"
    return f"{value:.2f}" if value >= 0.01 or value == 0 else f"{value:.2g}"
