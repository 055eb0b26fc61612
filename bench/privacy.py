"""Privacy benches: published figures reproduced through tinylarge's privacy building blocks.

One function per section, chosen with ``--section``:

- ``dpsgd``: sample-level DP-SGD (Abadi et al. 2016, https://arxiv.org/abs/1607.00133)
  through :mod:`tinylarge.security.dpsgd`, against the rows of Opacus's MNIST example
  (``examples/mnist_README.md`` of https://github.com/pytorch/opacus, "Sample parameter
  sets": test accuracy averaged over 10 runs, and the epsilon at delta 1e-5 that Opacus's
  RDP accountant reported then).

The DP-SGD section trains Opacus's ``SampleConvNet`` (conv 1->16 k8 s2 p3, ReLU, max-pool 2
stride 1, conv 16->32 k4 s2, ReLU, max-pool 2 stride 1, fc 512->32, ReLU, fc 32->10; 26,010
parameters) with plain SGD (no momentum) on the 60,000 MNIST training images, Poisson
sampling at rate 0.004 (expected batch 240, 250 steps an epoch), and tests on the 10,000
test images. Pixels are scaled to [0, 1] and standardized with the training set's mean and
std (tinylarge's MNIST loader fits 0.1307 and 0.3081, the constants of Opacus's example).
The no-DP row trains 20 epochs of shuffled batches of 240 at lr 0.1.

Epsilon is ours from :mod:`tinylarge.security.accounting` (Google's dp-accounting) for the
steps actually taken (Poisson-sampled Gaussian, delta 1e-5), by RDP and by PLD. Both are
below Opacus's published figures, which came from its older RDP-to-(epsilon, delta)
conversion (``rdp - log(delta) / (alpha - 1)``, about 1.16 / 2.91 / 6.86 for these rows);
dp-accounting's RDP conversion is tighter and PLD is tighter still. The same noise gives the
same guarantee; it is only measured better.

    TINYLARGE_DATA=../shared/datasets .venv/bin/python bench/privacy.py --section dpsgd \\
        [--rows eps1.19,eps3.01,eps7.10,nodp] [--epochs-scale 1.0] [--quick] [--threads 1] \\
        [--seed 0]

``--quick`` trains each row for 20 steps (a smoke run; its accuracies mean nothing).

Measured (seed 0, one thread, 2-core machine shared with other benchmarks, so the seconds
are noisy), ours against Opacus's mean of 10 runs:

    row      sigma  C    lr    epochs  ours    Opacus          eps RDP  eps PLD  Opacus eps
    eps1.19  1.3    1.5  0.25  15      93.77%  94.63% ± 0.34%  0.92     0.83     1.19
    eps3.01  1.1    1.0  0.15  60      96.79%  96.78% ± 0.21%  2.50     2.30     3.01
    eps7.10  0.7    1.5  0.25  45      97.01%  97.09% ± 0.17%  6.09     5.43     7.10
    nodp     -      -    0.1   20      99.08%  98.94% ± 0.32%  -        -        -

The first row with seeds 1 and 2: 94.34% and 94.42% (mean of the three 94.18%). DP-SGD took
13-30 s an epoch, plain SGD 9 s.

- ``dpfedavg``: user-level DP-FedAvg (McMahan et al. 2018) on Fashion-MNIST, 500 devices:
  accuracy against epsilon for several noise multipliers, and the rounds to 75% it costs
  (:func:`section_dpfedavg`; ``--rounds-scale`` shortens it).
- ``secagg``: SecAgg+ against plaintext FedAvg, bytes and device energy per client and round
  for 10, 100 and 1,000 clients (``--clients``) on BLE and NB-IoT microcontrollers, beside
  Bonawitz et al.'s 1.73x expansion (:func:`section_secagg`).

    TINYLARGE_DATA=../shared/datasets .venv/bin/python bench/privacy.py --section dpfedavg
    TINYLARGE_DATA=../shared/datasets .venv/bin/python bench/privacy.py --section secagg

Their latest figures are in docs/privacy.md.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tinylarge.data.images import load_mnist
from tinylarge.errors import TinylargeError
from tinylarge.security.accounting import DpSpec, epsilon
from tinylarge.security.dpsgd import DpSgdSpec, make_private

DELTA = 1e-5
#: Opacus example: expected batch 240 of 60,000 (sample rate 0.004).
BATCH_SIZE = 240
#: Steps of a ``--quick`` row.
QUICK_STEPS = 20


@dataclass(frozen=True)
class OpacusRow:
    """One row of Opacus's MNIST README: its command and its published figures."""

    name: str
    sigma: float | None  # None: no DP
    clip: float | None
    epochs: int
    lr: float
    accuracy: float  # mean of 10 runs
    accuracy_std: float
    epsilon: float | None


#: Opacus examples/mnist_README.md, "Sample parameter sets" (-sr=0.004 throughout).
OPACUS_ROWS: dict[str, OpacusRow] = {
    r.name: r
    for r in (
        OpacusRow("eps1.19", 1.3, 1.5, 15, 0.25, 0.9463, 0.0034, 1.19),
        OpacusRow("eps3.01", 1.1, 1.0, 60, 0.15, 0.9678, 0.0021, 3.01),
        OpacusRow("eps7.10", 0.7, 1.5, 45, 0.25, 0.9709, 0.0017, 7.10),
        OpacusRow("nodp", None, None, 20, 0.1, 0.9894, 0.0032, None),
    )
}


@dataclass(frozen=True)
class DpSgdResult:
    """What one row measured."""

    row: OpacusRow
    epochs: float
    steps: int
    accuracy: float
    epsilon_rdp: float | None
    epsilon_pld: float | None
    wall_s: float

    @property
    def s_per_epoch(self) -> float:
        return self.wall_s / self.epochs if self.epochs else math.nan


def sample_conv_net() -> nn.Module:
    """Opacus's ``SampleConvNet`` (examples/mnist.py) as a chain of the same layers."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 8, 2, padding=3),  # -> 16 x 14 x 14
        nn.ReLU(),
        nn.MaxPool2d(2, 1),  # -> 16 x 13 x 13
        nn.Conv2d(16, 32, 4, 2),  # -> 32 x 5 x 5
        nn.ReLU(),
        nn.MaxPool2d(2, 1),  # -> 32 x 4 x 4
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )


def epsilons(sigma: float, sample_rate: float, steps: int, delta: float) -> dict[str, float]:
    """epsilon of ``steps`` Poisson-sampled Gaussian steps, by RDP and by PLD."""
    return {
        name: epsilon(DpSpec(sigma, sample_rate, steps, delta, accountant=name))
        for name in ("rdp", "pld")
    }


@torch.no_grad()
def accuracy_on(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    correct = sum(
        int((model(x[i : i + 2000]).argmax(1) == y[i : i + 2000]).sum())
        for i in range(0, len(x), 2000)
    )
    model.train()
    return correct / len(x)


def _train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader[Any],
    *,
    epochs: float,
    quick: bool,
) -> int:
    """Train for ``epochs`` (a fraction stops mid-epoch), or ``QUICK_STEPS``; return the steps."""
    per_epoch = len(loader)
    total = QUICK_STEPS if quick else round(epochs * per_epoch)
    steps = 0
    model.train()
    while steps < total:
        for xb, yb in loader:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            optimizer.step()
            steps += 1
            if steps == total:
                break
    return steps


def run_dpsgd_row(
    row: OpacusRow,
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    *,
    epochs_scale: float,
    quick: bool,
    seed: int,
) -> DpSgdResult:
    x_train, y_train, x_test, y_test = data
    torch.manual_seed(seed)
    model = sample_conv_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=row.lr, momentum=0.0)
    train = TensorDataset(x_train, y_train)
    per_epoch = math.ceil(len(train) / BATCH_SIZE)
    epochs = row.epochs * epochs_scale
    start = time.perf_counter()
    if row.sigma is None or row.clip is None:
        gen = torch.Generator().manual_seed(seed)
        loader: DataLoader[Any] = DataLoader(
            train, batch_size=BATCH_SIZE, shuffle=True, generator=gen
        )
        steps = _train(model, optimizer, loader, epochs=epochs, quick=quick)
        wall = time.perf_counter() - start
        eps: dict[str, float | None] = {"rdp": None, "pld": None}
    else:
        private = make_private(
            model,
            optimizer,
            train,
            DpSgdSpec(noise_multiplier=row.sigma, max_grad_norm=row.clip),
            seed=seed,
            batch_size=BATCH_SIZE,
        )
        _train(private.model, private.optimizer, private.data_loader, epochs=epochs, quick=quick)
        steps = private.steps
        model = private.close()
        wall = time.perf_counter() - start  # training only, not the accounting
        eps = {**epsilons(row.sigma, private.sample_rate, steps, DELTA)}
    return DpSgdResult(
        row=row,
        epochs=steps / per_epoch,
        steps=steps,
        accuracy=accuracy_on(model, x_test, y_test),
        epsilon_rdp=eps["rdp"],
        epsilon_pld=eps["pld"],
        wall_s=wall,
    )


def dpsgd_table(results: list[DpSgdResult]) -> str:
    def num(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    lines = [
        "| row | sigma | C | lr | epochs | steps | accuracy (ours) | Opacus (10 runs) "
        "| ours - Opacus | eps RDP (ours) | eps PLD (ours) | eps (Opacus) | s/epoch | wall s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        o = r.row
        lines.append(
            f"| {o.name} | {num(o.sigma, 'g')} | {num(o.clip, 'g')} | {o.lr:g} "
            f"| {r.epochs:.2f} | {r.steps} | {r.accuracy:.2%} "
            f"| {o.accuracy:.2%} ± {o.accuracy_std:.2%} "
            f"| {(r.accuracy - o.accuracy) * 100:+.2f} pt | {num(r.epsilon_rdp, '.2f')} "
            f"| {num(r.epsilon_pld, '.2f')} | {num(o.epsilon, '.2f')} "
            f"| {r.s_per_epoch:.1f} | {r.wall_s:.0f} |"
        )
    return "\n".join(lines)


def section_dpsgd(args: argparse.Namespace) -> None:
    """DP-SGD on MNIST against Opacus's example rows."""
    names = [n.strip() for n in args.rows.split(",") if n.strip()]
    unknown = [n for n in names if n not in OPACUS_ROWS]
    if unknown:
        raise TinylargeError(
            f"--rows: unknown {', '.join(unknown)}; known: {', '.join(sorted(OPACUS_ROWS))}"
        )
    mnist = load_mnist()
    data = (
        torch.from_numpy(mnist.x_train),
        torch.from_numpy(mnist.y_train),
        torch.from_numpy(mnist.x_test),
        torch.from_numpy(mnist.y_test),
    )
    mean, std = mnist.preprocessing["mean"], mnist.preprocessing["std"]
    print(
        f"MNIST {len(data[0])} + {len(data[2])} images, standardized with mean "
        f"{np.ravel(mean)[0]:.4f} std {np.ravel(std)[0]:.4f}; {torch.get_num_threads()} "
        f"thread(s); seed {args.seed}{'; QUICK smoke run' if args.quick else ''}",
        flush=True,
    )
    results = []
    for name in names:
        result = run_dpsgd_row(
            OPACUS_ROWS[name],
            data,
            epochs_scale=args.epochs_scale,
            quick=args.quick,
            seed=args.seed,
        )
        results.append(result)
        print(
            f"{name}: {result.accuracy:.2%} after {result.steps} steps, "
            f"{result.wall_s:.0f} s ({result.s_per_epoch:.1f} s/epoch)",
            flush=True,
        )
    print()
    print(dpsgd_table(results))


# -- DP-FedAvg --------------------------------------------------------------------------------
#: Noise multipliers of the DP-FedAvg section (0: clipping only, unbounded epsilon).
DP_NOISE = (0.0, 0.5, 1.0, 2.0)


def _fed_config(name: str, *, devices: list[dict[str, Any]], **sections: Any) -> Any:
    from tinylarge.config import parse_config

    cfg: dict[str, Any] = {
        "name": name,
        "seed": 0,
        "task": {"dataset": "fashion-mnist", "subset": 30000, "partition": {"name": "iid"}},
        "model": {"name": "mlp", "options": {"hidden": 64}},
        "topology": {"server": {"profile": "jetson-agx-orin"}, "devices": devices},
        "scheme": {"name": "fedavg"},
        "training": {"rounds": 30, "fraction": 0.1, "local_epochs": 1, "batch_size": 16,
                     "lr": 0.1},
    }  # fmt: skip
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_config(cfg)


def section_dpfedavg(args: argparse.Namespace) -> None:
    """User-level DP-FedAvg on Fashion-MNIST: accuracy against epsilon, and the rounds it costs.

    500 devices (250 Raspberry Pi 5 on Wi-Fi 6, 250 phones on 5G), Poisson sampling at 0.1
    (50 expected a round), server-side fixed clipping at 0.5, delta 1e-4, 30 rounds; the
    plain FedAvg row uses the same sampling, unclipped and sample-weighted. "rounds to 75%"
    is the first round whose test accuracy reaches it.
    """
    import tempfile

    from tinylarge.sim.engine import run_experiment

    devices = [
        {"profile": "rpi5", "count": 250, "link": "wifi6", "distance_m": 20},
        {"profile": "galaxy-s24", "count": 250, "link": "nr-sub6", "distance_m": 300},
    ]
    rounds = max(2, round(30 * args.rounds_scale))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        plans: list[tuple[str, dict[str, Any]]] = [("FedAvg (no DP)", {})]
        plans += [
            (f"DP-FedAvg z={z:g}", {"privacy": {"dp": {"noise_multiplier": z,
              "clipping_norm": 0.5, "delta": 1e-4}}})
            for z in DP_NOISE
        ]  # fmt: skip
        for label, extra in plans:
            cfg = _fed_config(
                "dpfedavg", devices=devices,
                training={"rounds": rounds, "sampling": "poisson"}, **extra,
            )  # fmt: skip
            start = time.perf_counter()
            out = f"{tmp}/{len(rows)}"
            s = run_experiment(cfg, out=out, progress=False)
            with open(f"{out}/metrics.csv") as fh:
                import csv

                accs = [float(r["accuracy"]) for r in csv.DictReader(fh) if r["accuracy"]]
            to75 = next((i + 1 for i, a in enumerate(accs) if a >= 0.75), None)
            eps = s.get("epsilon")
            rows.append((label, eps, s["accuracy"], max(accs), to75,
                         time.perf_counter() - start))  # fmt: skip
            print(f"  {label}: acc {s['accuracy']:.4f} eps {eps}", file=sys.stderr)
    print(f"DP-FedAvg, mlp (64) on Fashion-MNIST (30,000 training images), 500 devices, "
          f"Poisson sampling q=0.1, C=0.5, delta 1e-4, {rounds} rounds, seed 0\n")  # fmt: skip
    print("| run | epsilon (RDP) | final accuracy | best accuracy | rounds to 75% | wall s |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, eps, acc, best, to75, wall in rows:
        e = "n/a" if label.startswith("FedAvg") else ("inf" if eps is None else f"{eps:.2f}")
        r = "never" if to75 is None else str(to75)
        print(f"| {label} | {e} | {acc:.2%} | {best:.2%} | {r} | {wall:.0f} |")


# -- SecAgg+ ----------------------------------------------------------------------------------
#: Client counts of the SecAgg section.
SECAGG_CLIENTS = (10, 100, 1000)


def secagg_shares(n: int) -> tuple[int, int]:
    """SecAgg+'s neighbourhood for ``n`` clients: ``k = 2 ceil(log2 n) + 1`` (Bell et al.'s
    O(log n), capped at n), threshold just over half of it."""
    k = min(n, 2 * math.ceil(math.log2(n)) + 1)
    return k, k // 2 + 1


def section_secagg(args: argparse.Namespace) -> None:
    """SecAgg+ against plaintext FedAvg: bytes and device energy per client and round.

    One FedAvg round of every client (mlp of 16 hidden units, 12,730 parameters) on
    Fashion-MNIST (60 images per client), all clients taking part, for each fleet: Cortex-M7
    boards (STM32H743) on BLE 2M at 5 m, or Cortex-M4 boards (STM32L4R5) on NB-IoT at 1 km.
    Beside it, Bonawitz et al.'s 1.73x (2^10 users, 2^20 values of 16 bits, complete graph)
    and our analytic expansion for that setting.
    """
    import tempfile

    from tinylarge.security.secagg import SecAggParams, expansion
    from tinylarge.sim.engine import run_experiment

    fleets = {
        "stm32h743 / ble-2m": {"profile": "stm32h743", "link": "ble-2m", "distance_m": 5},
        "stm32l4r5 / nb-iot": {"profile": "stm32l4r5", "link": "nb-iot", "distance_m": 1000},
    }
    counts = [int(c) for c in args.clients.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fleet, group in fleets.items():
            for n in counts:
                k, t = secagg_shares(n)
                res = {}
                for mode in ("plain", "secagg"):
                    extra = {} if mode == "plain" else {
                        "privacy": {"secagg": {"num_shares": k, "reconstruction_threshold": t}}
                    }  # fmt: skip
                    cfg = _fed_config(
                        "secagg", devices=[{**group, "count": n}],
                        task={"subset": 60 * n}, model={"options": {"hidden": 16}},
                        training={"rounds": 1, "fraction": 1.0}, **extra,
                    )  # fmt: skip
                    start = time.perf_counter()
                    s = run_experiment(
                        cfg, out=f"{tmp}/{fleet.split()[0]}-{n}-{mode}", progress=False
                    )
                    res[mode] = (s, time.perf_counter() - start)
                    print(f"  {fleet} n={n} {mode}: {res[mode][1]:.1f} s", file=sys.stderr)
                (p, _), (sa, wall) = res["plain"], res["secagg"]
                rows.append((fleet, n, k, t, p, sa, wall))
    print("SecAgg+ vs plaintext FedAvg, one round, every client taking part, mlp (16) "
          "12,730 parameters, modulus 2^32, seed 0\n")  # fmt: skip
    print("| fleet | clients | k / t | bytes up per client (plain -> SecAgg+) | bytes up+down "
          "ratio | device J per client (plain -> SecAgg+) | round s (plain -> SecAgg+) | "
          "wall s |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for fleet, n, k, t, p, sa, wall in rows:
        ratio = (sa["bytes_up"] + sa["bytes_down"]) / (p["bytes_up"] + p["bytes_down"])
        print(
            f"| {fleet} | {n:,} | {k} / {t} | {p['bytes_up'] / n:,.0f} -> "
            f"{sa['bytes_up'] / n:,.0f} | {ratio:.3f} | {p['device_energy_j'] / n:.4g} -> "
            f"{sa['device_energy_j'] / n:.4g} | {p['total_latency_s']:.3g} -> "
            f"{sa['total_latency_s']:.3g} | {wall:.0f} |"
        )
    bon = SecAggParams(num_shares=2**10, reconstruction_threshold=2**9 + 1,
                       quantization_range=2**16, modulus_range=2**26)  # fmt: skip
    print(f"\nBonawitz et al. 2017, 2^10 users, 2^20 values of 16 bits, complete graph: 1.73x "
          f"published; ours {expansion(2**10, 2**20, 16, bon):.3f}x (sent and received), "
          f"{expansion(2**10, 2**20, 16, bon, include_received=False):.3f}x (sent)")  # fmt: skip


SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {
    "dpsgd": section_dpsgd,
    "dpfedavg": section_dpfedavg,
    "secagg": section_secagg,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--section", choices=sorted(SECTIONS), required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_STEPS} steps per row")
    dpsgd = parser.add_argument_group("dpsgd")
    dpsgd.add_argument("--rows", default=",".join(OPACUS_ROWS), help=f"of {', '.join(OPACUS_ROWS)}")
    dpsgd.add_argument("--epochs-scale", type=float, default=1.0, help="times each row's epochs")
    fed = parser.add_argument_group("dpfedavg, secagg")
    fed.add_argument("--rounds-scale", type=float, default=1.0, help="times dpfedavg's 30 rounds")
    fed.add_argument(
        "--clients", default=",".join(map(str, SECAGG_CLIENTS)), help="secagg client counts"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    # Opacus's hooks on a first layer, whose input needs no gradient: expected, harmless
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    try:
        SECTIONS[args.section](args)
    except TinylargeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
