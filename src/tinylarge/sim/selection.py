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

Oort's utility (Lai et al. 2021) is not implemented yet. Bandwidth sharing follows the
selection: the round's participants share their cells.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from tinylarge.registry import Registry

if TYPE_CHECKING:
    from tinylarge.sim.context import Client, Context

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
    """The candidates that have spent the least device energy so far (joules, the ledger)."""

    def spent(cs: Sequence[Client]) -> list[float]:
        nodes = {c.node for c in cs}
        joules = dict.fromkeys(nodes, 0.0)
        for e in ctx.ledger:
            if e.side == "device" and e.node in nodes:
                joules[e.node] += e.joules
        return [-joules[c.node] for c in cs]

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
