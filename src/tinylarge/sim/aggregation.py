"""Where updates meet: the one aggregation step every averaging scheme uses.

A device's contribution is an :class:`Update`: the tensors it sends (``None``
for a tensor it did not train: transfer learning's frozen layers, split
learning's server side) and the samples behind them. An *aggregator* turns the
round's updates and the current global tensors into the new global tensors.
The default is FedAvg's sample-weighted mean (McMahan et al. 2017,
https://arxiv.org/abs/1602.05629), tensor by tensor over the updates that carry
it. FedAvg and its server optimizers, FTL's parts, FML's shared model, FedGKT's
extractors, SplitFed's client side and FFM's adapters all average through
:meth:`tinylarge.sim.rounds.Round.aggregate`, so privacy (clipping, noise,
secure aggregation) and robustness (robust rules, attacks) plug in here once,
as aggregators that wrap another one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from tinylarge.models.weights import Weights
from tinylarge.registry import Registry


@dataclass(frozen=True)
class Update:
    """One device's contribution: a tensor per global tensor (``None``: not carried)."""

    client: int
    tensors: Sequence[np.ndarray | None]
    num_samples: int

    @classmethod
    def full(cls, client: int, weights: Sequence[np.ndarray], num_samples: int) -> Update:
        """An update carrying every tensor."""
        return cls(client, list(weights), num_samples)


class Aggregator(Protocol):
    """``(updates, base) -> new global tensors``; ``base`` holds the current ones."""

    def __call__(self, updates: Sequence[Update], *, base: Weights) -> Weights: ...


def weighted_average(updates: Sequence[Update], *, base: Weights) -> Weights:
    """Per tensor, the mean over the updates that carry it, weighted by their sample counts.

    A tensor no update carries keeps its ``base`` value. Integer buffers (BatchNorm's
    ``num_batches_tracked``) take the maximum. Accumulates in float64.

    >>> a = Update.full(0, [np.array([0.0, 2.0])], 1)
    >>> b = Update(1, [np.array([4.0, 4.0])], 3)
    >>> weighted_average([a, b], base=[np.zeros(2)])[0].tolist()
    [3.0, 3.5]
    """
    out: Weights = []
    for i, current in enumerate(base):
        carriers = [(u.num_samples, u.tensors[i]) for u in updates if u.tensors[i] is not None]
        if not carriers:
            out.append(current)
            continue
        first = np.asarray(carriers[0][1])
        if np.issubdtype(first.dtype, np.integer):
            out.append(np.max(np.stack([np.asarray(t) for _, t in carriers]), axis=0))
            continue
        total = sum(n for n, _ in carriers)
        acc = np.zeros_like(first, dtype=np.float64)
        for n, t in carriers:
            acc += (n / total) * np.asarray(t).astype(np.float64)
        out.append(acc.astype(first.dtype))
    return out


# -- updates as flat vectors: what robust rules, attacks and secure aggregation work on ----
def floating(base: Weights) -> list[int]:
    """Indices of the floating tensors: what an update changes (integer buffers are counts)."""
    return [i for i, b in enumerate(base) if np.issubdtype(b.dtype, np.floating)]


def flatten(updates: Sequence[Update], base: Weights) -> np.ndarray:
    """The updates' deltas over the floating tensors, one row per update (float64)."""
    idx = floating(base)
    return np.stack(
        [
            np.concatenate([np.ravel(np.asarray(u.tensors[i], np.float64) - base[i]) for i in idx])
            for u in updates
        ]
    )


def unflatten(delta: np.ndarray, base: Weights) -> list[np.ndarray]:
    """``base`` plus one flat delta over its floating tensors."""
    out = list(base)
    at = 0
    for i in floating(base):
        n = int(base[i].size)
        new = base[i].astype(np.float64) + delta[at : at + n].reshape(base[i].shape)
        out[i] = new.astype(base[i].dtype)
        at += n
    return out


AGGREGATORS: Registry[Aggregator] = Registry("aggregator")
AGGREGATORS.add("fedavg", weighted_average)
