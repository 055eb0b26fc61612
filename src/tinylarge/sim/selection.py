"""Client selection: which admitted devices a synchronous round takes (``training.selection``).

:func:`tinylarge.sim.rounds.sample` decides how many (``training.fraction``, at least
``training.min_clients``); a policy decides which, deterministically in (seed, round),
so a resumed run selects the same devices:

- ``uniform`` (default): uniformly without replacement (McMahan et al. 2017).
- ``channel``: power of d choices on the channel. Draw ``selection_candidates`` times as
  many candidates uniformly, keep those with the best uplink: the full-band rate of
  their link budget, what a base station learns from channel reports (no fading draw, so
  nothing about the round's channel leaks). Ties keep pool order.
- ``energy``: the same candidates, keep those that have spent the least device energy
  so far (compute and radio, from the ledger), so batteries drain evenly.

- ``power-of-choice`` (Cho et al. 2022, https://arxiv.org/abs/2010.01243): the round's
  participants are the ``selection_candidates`` times as many uniform candidates; each
  downloads the model, computes its loss on its local data and reports it (billed: the
  download, the forward passes, 4 bytes up), and the FedAvg family trains the ``k`` with
  the highest loss (:func:`highest_loss`); the others leave after their report.

- ``oort`` (Lai et al., "Oort: Efficient Federated Learning via Guided Participant
  Selection", OSDI 2021, https://www.usenix.org/conference/osdi21/presentation/lai,
  Algorithm 1): learns from what the devices it picked reported (:class:`Feedback`, which
  the FedAvg family fills after each round and the engine checkpoints). A device that has
  trained has the utility

      U_i = |B_i| * loss_i + sqrt(0.1 * ln(R) / L_i),  times (T / t_i) ** 2 if t_i > T

  with ``|B_i|`` its samples and ``loss_i`` the mean training loss of its last round (the
  stand-in for the paper's root-mean-square sample loss, which local training does not
  report), ``R`` the current round and ``L_i`` the round it last took part in (both counted
  from 1), ``t_i`` its duration in that round (its first to its last event in the ledger,
  simulated seconds) and ``T`` the preferred duration: the known durations' 30th
  percentile (:func:`preferred_duration`, the open-source Oort's ``round_threshold``
  default without its pacer). A share ``epsilon`` of the ``k`` slots (0.9, times 0.98 a
  round, at least 0.2: :func:`exploration_share`) explores devices that have not trained
  yet, the best uplinks first (the full-band link-budget rate, as ``channel``); exploitation
  takes the rest: the devices whose utility is at least 0.95 times the ``k_exploit``-th best,
  ``k_exploit`` of them drawn without replacement with probability proportional to utility
  from the round's seeded generator (:func:`exploit`).

Bandwidth sharing follows the selection: the round's participants share their cells.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tinylarge.registry import Registry

if TYPE_CHECKING:
    from tinylarge.sim.context import Client, Context
    from tinylarge.sim.ledger import Event
    from tinylarge.sim.training import FitResult

#: ``policy(ctx, rnd, pool, k) -> k clients in pool order``.
Selector = Callable[["Context", int, Sequence["Client"], int], list["Client"]]
SELECTORS: Registry[Selector] = Registry("selection policy")
#: The sampling stream of a round (``ctx.rng(round, 1)``).
_STREAM = 1


def _uniform_indices(ctx: Context, rnd: int, n: int, k: int) -> list[int]:
    return sorted(int(i) for i in ctx.rng(rnd, _STREAM).choice(n, size=k, replace=False))


@SELECTORS.register("uniform")
def uniform(ctx: Context, rnd: int, pool: Sequence[Client], k: int) -> list[Client]:
    """``k`` of ``pool`` uniformly without replacement, in pool order."""
    return [pool[i] for i in _uniform_indices(ctx, rnd, len(pool), k)]


def _best(
    ctx: Context,
    rnd: int,
    pool: Sequence[Client],
    k: int,
    score: Callable[[Sequence[Client]], list[float]],
) -> list[Client]:
    """The ``k`` of the round's uniform candidates with the highest ``score``, in pool order."""
    d = min(len(pool), max(k, math.ceil(ctx.config.training.selection_candidates * k)))
    idx = _uniform_indices(ctx, rnd, len(pool), d)
    scores = score([pool[i] for i in idx])
    ranked = sorted(range(len(idx)), key=lambda j: (-scores[j], idx[j]))[:k]
    return [pool[idx[j]] for j in sorted(ranked)]


@SELECTORS.register("channel")
def channel(ctx: Context, rnd: int, pool: Sequence[Client], k: int) -> list[Client]:
    """The candidates with the best uplink (full-band link-budget rate, bits/s)."""
    return _best(ctx, rnd, pool, k, lambda cs: [c.link.budget(direction="up").rate_bps for c in cs])


@SELECTORS.register("energy")
def energy(ctx: Context, rnd: int, pool: Sequence[Client], k: int) -> list[Client]:
    """The candidates that have spent the least device energy so far (joules, the ledger's
    running per-node sums: a round reads the candidates' totals, it does not rescan the run)."""

    def spent(cs: Sequence[Client]) -> list[float]:
        joules = ctx.ledger.node_totals("joules", side="device")
        return [-joules.get(c.node, 0.0) for c in cs]

    return _best(ctx, rnd, pool, k, spent)


@SELECTORS.register("power-of-choice")
def power_of_choice(ctx: Context, rnd: int, pool: Sequence[Client], k: int) -> list[Client]:
    """The round's candidates: ``selection_candidates * k`` uniformly (the scheme keeps ``k``)."""
    d = min(len(pool), max(k, math.ceil(ctx.config.training.selection_candidates * k)))
    return [pool[i] for i in _uniform_indices(ctx, rnd, len(pool), d)]


def highest_loss(losses: dict[int, float], k: int) -> list[int]:
    """The ``k`` client ids with the highest loss (ties: the lower id), in id order.

    >>> highest_loss({3: 0.5, 1: 2.0, 7: 0.5, 2: 1.0}, 3)
    [1, 2, 3]
    """
    ranked = sorted(losses, key=lambda cid: (-losses[cid], cid))[:k]
    return sorted(ranked)


# -- Oort (Lai et al. 2021) ------------------------------------------------------------------
#: Exploration share ``epsilon`` of the first round, its decay a round and its floor (the
#: paper's defaults).
OORT_EPSILON_START = 0.9
OORT_EPSILON_DECAY = 0.98
OORT_EPSILON_MIN = 0.2
#: Weight of the temporal uncertainty bonus ``sqrt(0.1 * ln R / L_i)`` (Algorithm 1).
OORT_UNCERTAINTY = 0.1
#: The straggler penalty's exponent ``alpha`` in ``(T / t_i) ** alpha`` (the paper's 2).
OORT_ALPHA = 2.0
#: Exploitation keeps the devices with at least this share of the ``k_exploit``-th best
#: utility (the cut-off ``c`` of Algorithm 1). 95 % as the comment beside it in Oort's
#: selector says ("take 95% of the cut-off loss"); the argument defaults behind that line
#: differ: ``cut_off_util`` 0.7 in SymbioticLab/Oort (training/argParser.py) and 0.05 in
#: FedScale's copy (thirdparty/oort, which also keeps at least ten times ``k_exploit``).
OORT_CUTOFF = 0.95
#: The preferred round duration ``T``: this percentile of the known durations (FedScale's
#: Oort ``round_threshold``, 30 by default; SymbioticLab/Oort's training/argParser.py has
#: 101, which turns the straggler penalty off; the pacer, which moves it when the utility
#: stalls, is not run).
OORT_PREFERRED_PERCENTILE = 30.0


@dataclass(frozen=True)
class ClientFeedback:
    """What the server learnt from a device's last training: the round (0-based index),
    its mean training loss, its samples and its duration in that round (simulated seconds,
    from its first to its last event in the ledger)."""

    round: int
    loss: float
    num_samples: int
    duration_s: float


class Feedback:
    """Per-device feedback of the devices that trained (``training.selection: oort``): the
    FedAvg family records it after each round (:meth:`record`), the engine checkpoints it
    (:meth:`state`, :meth:`load_state`), :func:`oort` reads it."""

    def __init__(self) -> None:
        self.clients: dict[int, ClientFeedback] = {}

    def record(
        self, rnd: int, trained: Iterable[tuple[Client, FitResult]], events: Iterable[Event]
    ) -> None:
        """The devices of ``trained`` trained in round ``rnd`` and reported: keep their loss
        and samples, and their duration from ``events`` (the round's ledger events)."""
        spans: dict[str, tuple[float, float]] = {}
        for e in events:
            if e.round == rnd and e.side == "device":
                lo, hi = spans.get(e.node, (math.inf, 0.0))
                spans[e.node] = (min(lo, e.at_s), max(hi, e.end_s))
        for c, r in trained:
            lo, hi = spans.get(c.node, (0.0, 0.0))
            self.clients[c.id] = ClientFeedback(rnd, float(r.loss), int(r.num_samples), hi - lo)

    def state(self) -> dict[str, Any]:
        return {
            "clients": {
                cid: [f.round, f.loss, f.num_samples, f.duration_s]
                for cid, f in self.clients.items()
            }
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.clients = {
            int(cid): ClientFeedback(int(r), float(loss), int(n), float(t))
            for cid, (r, loss, n, t) in state["clients"].items()
        }


def exploration_share(rnd: int) -> float:
    """Oort's ``epsilon`` in round ``rnd`` (0-based): 0.9, times 0.98 a round, at least 0.2.

    >>> exploration_share(0), round(exploration_share(1), 4), exploration_share(1000)
    (0.9, 0.882, 0.2)
    """
    return max(OORT_EPSILON_MIN, OORT_EPSILON_START * OORT_EPSILON_DECAY**rnd)


def preferred_duration(durations: Sequence[float]) -> float:
    """Oort's preferred round duration ``T``: the sorted ``durations``' entry at index
    ``int(n * 30 / 100)`` (the open-source Oort's rule); infinite if none is known.

    >>> preferred_duration([5.0, 1.0, 4.0, 2.0, 3.0])
    2.0
    """
    if not durations:
        return math.inf
    ordered = sorted(durations)
    return ordered[min(int(len(ordered) * OORT_PREFERRED_PERCENTILE / 100), len(ordered) - 1)]


def utility(f: ClientFeedback, rnd: int, preferred_s: float) -> float:
    """Oort's utility of a device with feedback ``f`` in round ``rnd`` (0-based), with
    ``preferred_s`` the preferred duration ``T``: statistical utility ``|B_i| * loss`` plus
    ``sqrt(0.1 * ln R / L_i)`` (``R = rnd + 1``, ``L_i = f.round + 1``), times
    ``(T / t_i) ** 2`` when ``t_i > T``.

    >>> utility(ClientFeedback(0, 0.5, 40, 2.0), 0, 2.0)
    20.0
    >>> utility(ClientFeedback(0, 0.5, 40, 4.0), 0, 2.0)
    5.0
    """
    u = f.num_samples * f.loss + math.sqrt(OORT_UNCERTAINTY * math.log(rnd + 1) / (f.round + 1))
    if f.duration_s > preferred_s:
        u *= (preferred_s / f.duration_s) ** OORT_ALPHA
    return u


def exploit(utilities: Sequence[float], k: int, rng: np.random.Generator) -> list[int]:
    """Oort's exploitation: of the indices ranked by utility (ties: the lower index), those
    with at least 0.95 times the ``k``-th best utility, ``k`` of them drawn without
    replacement with probability proportional to utility; in index order. (With fewer than
    ``k`` positive utilities among them: every positive one, the rest uniformly.)

    >>> exploit([1.0, 0.9, 5.0, 0.96], 3, np.random.default_rng(0))  # 0.9 < 0.95 * 0.96
    [0, 2, 3]
    """
    if k <= 0:
        return []
    ranked = sorted(range(len(utilities)), key=lambda i: (-utilities[i], i))
    cutoff = OORT_CUTOFF * utilities[ranked[k - 1]]
    kept = [i for i in ranked if utilities[i] >= cutoff]
    positive = [i for i in kept if utilities[i] > 0]
    if len(positive) < k:
        rest = [i for i in kept if utilities[i] <= 0]
        extra = rng.choice(len(rest), size=k - len(positive), replace=False)
        return sorted(positive + [rest[int(j)] for j in extra])
    weights = np.array([utilities[i] for i in positive], dtype=np.float64)
    drawn = rng.choice(len(positive), size=k, replace=False, p=weights / weights.sum())
    return sorted(positive[int(j)] for j in drawn)


@SELECTORS.register("oort")
def oort(ctx: Context, rnd: int, pool: Sequence[Client], k: int) -> list[Client]:
    """Oort (Lai et al. 2021): explore untrained devices, best uplinks first, and exploit
    the trained ones by statistical and system utility (see the module docstring)."""
    known = {} if ctx.feedback is None else ctx.feedback.clients
    explored = [i for i, c in enumerate(pool) if c.id in known]
    fresh = [i for i, c in enumerate(pool) if c.id not in known]
    n_explore = min(len(fresh), max(math.floor(exploration_share(rnd) * k), k - len(explored)))
    rate = {i: pool[i].link.budget(direction="up").rate_bps for i in fresh}
    explore = sorted(fresh, key=lambda i: (-rate[i], i))[:n_explore]
    preferred_s = preferred_duration([known[pool[i].id].duration_s for i in explored])
    utilities = [utility(known[pool[i].id], rnd, preferred_s) for i in explored]
    picked = exploit(utilities, k - n_explore, ctx.rng(rnd, _STREAM))
    return [pool[i] for i in sorted(explore + [explored[j] for j in picked])]
