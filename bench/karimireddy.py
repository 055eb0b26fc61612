"""Karimireddy et al.'s reference protocol: Byzantine-robust SGD with worker momentum on
non-IID MNIST, run with tinylarge's own robust rules, bucketing and attacks.

Issue 13, item 6 ("Beside it, the published reference of Karimireddy et al."). The
protocol is the one of experiment 3 of Karimireddy, He and Jaggi, "Byzantine-Robust
Learning on Heterogeneous Datasets via Bucketing", ICLR 2022
(https://arxiv.org/abs/2006.09365), as set in their code,
https://github.com/epfml/byzantine-robust-noniid-optimizer (commit 0e27349;
``exp3.py``, ``utils.py``, ``codes/``):

- 25 workers, the first 20 honest, 5 Byzantine. The MNIST training set is sorted by
  label and cut into 20 contiguous parts of 3,000 images, one per honest worker (one
  or two digits each); the Byzantine workers draw from the whole training set (IID).
- Every iteration each worker takes a batch of 32 of its own data (a fresh shuffle of
  its data every 30 batches, their "epoch") and computes the gradient of the
  cross-entropy. Honest workers send their momentum ``m <- 0.9 m + g`` (worker
  momentum, no dampening); the server aggregates the 25 messages with the rule and
  takes an SGD step of learning rate 0.01 (no server momentum). 600 iterations.
- Model: two 3x3 convolutions (32, 64 channels; ReLU after the first only, as in
  their ``codes/tasks/mnist.py``), 2x2 max-pool, channel dropout 0.25, a 128-unit
  ReLU layer, dropout 0.5, 10 outputs (1,199,882 parameters).
- Attacks (Byzantine messages): ``alie`` mean - z std of the honest momenta with z
  from n=25, f=5 counted over the honest workers (z = 0.2533, ``z_rule="honest"``);
  ``ipm`` -0.1 times their mean; ``bit-flip`` minus the attacker's own gradient;
  ``label-flip`` the attacker's own gradient on labels 9 - y. As in their code, the
  bit-flip and label-flip attackers send plain gradients (no momentum). ``none``: the
  20 honest workers alone.
- Rules (f = 5 wherever a rule takes it): ``mean``; ``cm`` coordinate median; ``krum``;
  ``rfa`` geometric median by 8 smoothed Weiszfeld steps, nu = 0.1; ``tm`` trimmed mean
  cutting 5 values per tail; ``cc`` centered clipping, tau = 10, 3 steps from the
  previous aggregate; ``+b`` suffix: bucketing with s = 2 first (13 buckets of the 25
  messages).
- The score is the test accuracy (all 10,000 MNIST test images) after the last
  iteration.

The published figures beside each cell are the means over their seeds 0-2 of the test
accuracy at iteration 600 with momentum 0.9, from ``outputs/exp3/all/output/exp3.csv``
of that repository (commit 0e27349); they published no ``mean``, ``tm`` or ``none`` run
under this protocol.

Differences left on purpose: their simulator restores the global RNG after every
worker, so all workers share one dropout mask, the same at every iteration; here every
worker draws its own (``--shared-dropout`` reproduces theirs: the torch RNG is reset to
its state after the model's initialisation before every gradient). Their exp3 never calls
its samplers' ``set_epoch``, so every "epoch" replays the same shuffle: each worker sees
only the first 30 x 32 = 960 samples of its part, always in the same order
(``--fixed-order`` reproduces it; here each epoch reshuffles). Their RFA starts
Weiszfeld at zero, tinylarge's at the mean.
The ALIE and IPM attackers' own gradients are not computed (their code computes and
discards them).

    TINYLARGE_DATA=../shared/datasets .venv/bin/python bench/karimireddy.py \\
        [--attacks none,alie,ipm,bit-flip,label-flip] [--rules mean,cm,cm+b,...] \\
        [--iterations 600] [--seed 0] [--eval-every 150] [--threads 1] [--quick]

Output (stdout, markdown): one row per attack, one column per rule, cells ``measured
(published)`` in percent of test accuracy. Wall time per run and the accuracy every
``--eval-every`` iterations go to stderr. Cost: about 2 s of CPU per iteration
(20 gradients of the 1.2 M-parameter network plus the float64 rule on the 25 x 1.2 M
matrix; coordinate median 1.2 s, centered clipping 1.4 s, RFA 3.6 s per call), so one
600-iteration cell is 15 to 25 CPU-minutes and the 40-cell grid a few hours; run cells
in parallel processes (``--attacks``, ``--rules``). ``--quick`` is a smoke run (2 iterations
on batches of 8 from 3,000 images, three rules, one attack); its accuracies mean
nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tinylarge.data import Dataset, load_dataset, partition
from tinylarge.errors import TinylargeError
from tinylarge.security import attacks, robust
from tinylarge.sim.training import accuracy, predict_logits, tensor


@dataclass(frozen=True)
class Protocol:
    """The settings of their experiment 3 (``exp3.py``, ``utils.py``)."""

    workers: int = 25
    byzantine: int = 5
    batch_size: int = 32
    batches_per_epoch: int = 30
    lr: float = 0.01
    momentum: float = 0.9
    iterations: int = 600
    clip_tau: float = 10.0
    clip_steps: int = 3
    bucket_size: int = 2
    rfa_steps: int = 8
    rfa_nu: float = 0.1
    ipm_epsilon: float = 0.1

    @property
    def honest(self) -> int:
        return self.workers - self.byzantine


ATTACKS = ("none", "alie", "ipm", "bit-flip", "label-flip")
RULES = ("mean", "cm", "cm+b", "krum", "rfa", "tm", "cc", "cc+b")
EXTRA_RULES = ("krum+b", "rfa+b", "tm+b")

#: Published test accuracy (%) at iteration 600, momentum 0.9, mean of seeds 0-2:
#: epfml/byzantine-robust-noniid-optimizer, outputs/exp3/all/output/exp3.csv, commit 0e27349.
PUBLISHED: dict[tuple[str, str], float] = {
    ("alie", "cc"): 98.19,
    ("alie", "cc+b"): 98.13,
    ("alie", "cm"): 9.93,
    ("alie", "cm+b"): 39.2,
    ("alie", "krum"): 11.37,
    ("alie", "krum+b"): 10.19,
    ("alie", "rfa"): 11.37,
    ("alie", "rfa+b"): 68.76,
    ("ipm", "cc"): 97.83,
    ("ipm", "cc+b"): 97.87,
    ("ipm", "cm"): 32.13,
    ("ipm", "cm+b"): 59.91,
    ("ipm", "krum"): 9.99,
    ("ipm", "krum+b"): 41.62,
    ("ipm", "rfa"): 11.28,
    ("ipm", "rfa+b"): 96.21,
    ("bit-flip", "cc"): 97.77,
    ("bit-flip", "cc+b"): 97.85,
    ("bit-flip", "cm"): 44.63,
    ("bit-flip", "cm+b"): 60.29,
    ("bit-flip", "krum"): 9.98,
    ("bit-flip", "krum+b"): 26.98,
    ("bit-flip", "rfa"): 84.17,
    ("bit-flip", "rfa+b"): 96.97,
    ("label-flip", "cc"): 97.8,
    ("label-flip", "cc+b"): 97.85,
    ("label-flip", "cm"): 46.69,
    ("label-flip", "cm+b"): 71.51,
    ("label-flip", "krum"): 1.08,
    ("label-flip", "krum+b"): 43.79,
    ("label-flip", "rfa"): 96.21,
    ("label-flip", "rfa+b"): 97.61,
}

#: A rule over the message matrix (rows x values, float64) -> the aggregate.
Aggregate = Callable[[np.ndarray], np.ndarray]


def reference_net() -> nn.Module:
    """The MNIST network of their ``codes/tasks/mnist.py`` (logits out; the loss applies
    the log-softmax)."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3),
        nn.MaxPool2d(2),
        nn.Dropout2d(0.25),
        nn.Flatten(),
        nn.Linear(9216, 128),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(128, 10),
    )


def make_aggregate(name: str, p: Protocol, rows: int, rng: np.random.Generator) -> Aggregate:
    """Rule ``name`` (:data:`RULES`) for ``rows`` messages, from :mod:`tinylarge.security.robust`.

    Raises :class:`TinylargeError` when the rule does not allow that many rows (Krum
    with f = 5 needs more than 12).
    """
    base, _, suffix = name.partition("+")
    pre = robust.make_pre("bucketing", {"s": p.bucket_size}, num_clients=rows) if suffix else None
    seen = pre.output_rows(rows) if pre is not None else rows
    f = p.byzantine
    rule: robust.RobustRule | None = None
    if base == "cm":
        rule = robust.make_rule("median", {}, num_clients=seen)
    elif base == "krum":
        rule = robust.make_rule("krum", {"f": f}, num_clients=seen)
    elif base == "rfa":
        opts = {"nu": p.rfa_nu, "T": p.rfa_steps}
        rule = robust.make_rule("geometric-median", opts, num_clients=seen)
    elif base == "tm":
        # The library cuts int(beta * n) per tail; their TM cuts f. beta between f/n and
        # (f+1)/n gives exactly f whatever the rounding.
        rule = robust.make_rule("trimmed-mean", {"beta": (f + 0.5) / seen}, num_clients=seen)
    elif base == "cc":
        opts = {"tau": p.clip_tau, "L": p.clip_steps}
        rule = robust.make_rule("centered-clipping", opts, num_clients=seen)
    elif base != "mean":
        raise TinylargeError(f"unknown rule {name!r}; known: {', '.join(RULES + EXTRA_RULES)}")

    def aggregate(x: np.ndarray) -> np.ndarray:
        if pre is not None:
            x = pre(x, rng)
        return x.mean(axis=0) if rule is None else rule(x, rng=rng)

    return aggregate


class Batches:
    """A worker's batches: every ``per_epoch`` batches a fresh shuffle of its ``pool`` of
    sample indices, of which the first ``per_epoch * size`` are used (their loader restarts
    every 30 batches)."""

    def __init__(
        self,
        pool: np.ndarray,
        size: int,
        per_epoch: int,
        rng: np.random.Generator,
        *,
        fixed: bool = False,
    ):
        self.pool, self.size, self.per_epoch, self.rng = pool, size, per_epoch, rng
        self.order = np.empty(0, dtype=np.int64)
        self.at = per_epoch
        #: one shuffle for every epoch (their exp3 never calls the sampler's set_epoch)
        self.fixed = fixed

    def next(self) -> np.ndarray:
        if self.at == self.per_epoch:
            if not (self.fixed and len(self.order)):
                self.order = self.rng.permutation(self.pool)
            self.at = 0
        batch = self.order[self.at * self.size : (self.at + 1) * self.size]
        self.at += 1
        return batch


def gradient(
    model: nn.Module, x: np.ndarray, y: np.ndarray, rng_state: torch.Tensor | None = None
) -> torch.Tensor:
    """The flat gradient of the mean cross-entropy of ``model`` on one batch (drawing its
    dropout masks from ``rng_state`` when given)."""
    if rng_state is not None:
        torch.set_rng_state(rng_state)
    model.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(tensor(x)), tensor(y))
    loss.backward()
    return torch.cat([q.grad.reshape(-1) for q in model.parameters() if q.grad is not None])


def run(
    data: Dataset,
    attack: str,
    rule: str,
    p: Protocol,
    *,
    seed: int,
    eval_every: int,
    shared_dropout: bool = False,
    fixed_order: bool = False,
) -> float:
    """One training run under ``attack`` and ``rule``; the final test accuracy (0..1).

    ``shared_dropout``: every gradient draws the same dropout masks, as in their simulator.
    ``fixed_order``: every worker's epoch is the same shuffle of its data, so it only ever
    sees the first ``batches_per_epoch * batch_size`` samples of it, in the same order, as
    in their experiment 3.
    """
    streams = np.random.SeedSequence(seed).spawn(4)
    data_rng, attack_rng, rule_rng = (np.random.default_rng(s) for s in streams[:3])
    torch.manual_seed(seed)
    model = reference_net()
    params = list(model.parameters())
    rng_after_init = torch.get_rng_state()
    byzantine = 0 if attack == "none" else p.byzantine
    rows = p.honest + byzantine
    aggregate = make_aggregate(rule, p, rows, rule_rng)

    # Label-sorted contiguous parts, one per honest worker (shards of one each).
    parts = partition("shards", data.y_train, num_clients=p.honest, seed=seed, shards_per_client=1)
    everything = np.arange(len(data.y_train))
    loaders = [
        Batches(pool, p.batch_size, p.batches_per_epoch, data_rng, fixed=fixed_order)
        for pool in [*parts, *[everything] * byzantine]
    ]
    send: attacks.UpdateAttack | None = None
    flip: attacks.DataAttack | None = None
    if attack == "alie":
        send = attacks.make_update_attack("alie", {"z_rule": "honest"})
    elif attack == "ipm":
        send = attacks.make_update_attack("ipm", {"epsilon": p.ipm_epsilon})
    elif attack == "bit-flip":
        send = attacks.make_update_attack("sign-flip", {"scale": 1.0})
    elif attack == "label-flip":
        flip = attacks.make_data_attack(
            "label-flip", num_classes=data.num_classes, input_shape=data.input_shape
        )
    elif attack != "none":
        raise TinylargeError(f"unknown attack {attack!r}; known: {', '.join(ATTACKS)}")

    shared = rng_after_init if shared_dropout else None
    momenta: torch.Tensor | None = None
    for it in range(1, p.iterations + 1):
        model.train()
        grads = []
        for w in range(p.honest):
            b = loaders[w].next()
            grads.append(gradient(model, data.x_train[b], data.y_train[b], shared))
        g = torch.stack(grads)
        momenta = g if momenta is None else momenta.mul_(p.momentum).add_(g)
        honest = momenta.double().numpy()
        messages = honest
        if byzantine:
            own = np.zeros((byzantine, honest.shape[1]))
            if attack in ("bit-flip", "label-flip"):  # they train; ALIE and IPM only read
                own_grads = []
                for w in range(p.honest, rows):
                    b = loaders[w].next()
                    x, y = data.x_train[b], data.y_train[b]
                    if flip is not None:
                        x, y = flip.poison(x, y, rng=attack_rng)
                    own_grads.append(gradient(model, x, y, shared))
                own = torch.stack(own_grads).double().numpy()
            sent = (
                own if send is None else send(honest, own, num_byzantine=byzantine, rng=attack_rng)
            )
            messages = np.concatenate([honest, sent])
        step = torch.from_numpy(aggregate(messages)).float()
        with torch.no_grad():
            at = 0
            for q in params:
                q.sub_(p.lr * step[at : at + q.numel()].view_as(q))
                at += q.numel()
        if eval_every and it % eval_every == 0 and it < p.iterations:
            acc = accuracy(predict_logits(model, data.x_test), data.y_test)
            print(f"  {attack} {rule} iteration {it}: {100 * acc:.2f}%", file=sys.stderr)
    return accuracy(predict_logits(model, data.x_test), data.y_test)


def cell(measured: float | None, published: float | None) -> str:
    m = "n/a" if measured is None else f"{100 * measured:.1f}"
    return m if published is None else f"{m} ({published:.1f})"


def table(results: dict[tuple[str, str], float | None], atks: list[str], rules: list[str]) -> str:
    lines = [
        "| attack | " + " | ".join(rules) + " |",
        "|---|" + "---:|" * len(rules),
    ]
    for a in atks:
        cells = [cell(results[a, r], PUBLISHED.get((a, r))) for r in rules]
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def names(text: str, known: tuple[str, ...], what: str) -> list[str]:
    out = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in out if s not in known]
    if bad or not out:
        raise TinylargeError(
            f"unknown {what} {bad[0] if bad else text!r}; known: {', '.join(known)}"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--attacks", default=",".join(ATTACKS))
    ap.add_argument("--rules", default=",".join(RULES))
    ap.add_argument("--iterations", type=int, default=Protocol.iterations)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-every", type=int, default=150, help="0: only at the end")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--quick", action="store_true", help="smoke run; accuracies mean nothing")
    ap.add_argument(
        "--shared-dropout",
        action="store_true",
        help="one dropout mask for every worker and iteration, as their simulator draws",
    )
    ap.add_argument(
        "--fixed-order",
        action="store_true",
        help="the same shuffle every epoch (their exp3 never calls set_epoch): each worker "
        "sees only the first 960 samples of its part",
    )
    args = ap.parse_args(argv)
    try:
        atks = names(args.attacks, ATTACKS, "attack")
        rules = names(args.rules, RULES + EXTRA_RULES, "rule")
        if args.iterations < 1:
            raise TinylargeError(f"--iterations must be >= 1, got {args.iterations}")
        p = Protocol(iterations=args.iterations)
        subset = None
        if args.quick:
            atks, rules, subset = ["alie"], ["mean", "cm+b", "cc"], 3000
            p = Protocol(iterations=2, batch_size=8)
        torch.set_num_threads(args.threads)
        data = load_dataset("mnist", subset=subset, seed=args.seed)
    except TinylargeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    results: dict[tuple[str, str], float | None] = {}
    start = time.perf_counter()
    for a in atks:
        for r in rules:
            t0 = time.perf_counter()
            try:
                results[a, r] = run(
                    data,
                    a,
                    r,
                    p,
                    seed=args.seed,
                    eval_every=args.eval_every,
                    shared_dropout=args.shared_dropout,
                    fixed_order=args.fixed_order,
                )
            except TinylargeError as exc:  # e.g. Krum's f = 5 on the 10 buckets of 'none'
                print(f"{a} {r}: n/a ({exc})", file=sys.stderr)
                results[a, r] = None
                continue
            acc = results[a, r]
            assert acc is not None
            print(
                f"{a} {r}: {100 * acc:.2f}% in {time.perf_counter() - t0:.0f} s",
                file=sys.stderr,
            )
    print(
        f"Non-IID MNIST, {p.workers} workers of which {p.byzantine} Byzantine ('none': the "
        f"{p.honest} honest alone), worker momentum {p.momentum}, {p.iterations} iterations, "
        f"seed {args.seed}{', one shared dropout mask' if args.shared_dropout else ''}: test "
        "accuracy (%), published mean of 3 seeds in parentheses.\n"
    )
    print(table(results, atks, rules))
    print(f"wall time {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
