"""FedBuff: asynchronous FedAvg with a buffer of K client updates.

Nguyen et al., "Federated Learning with Buffered Asynchronous Aggregation",
AISTATS 2022, https://arxiv.org/abs/2106.06639 (Algorithm 1).

``concurrency`` devices train at once, each from the model current when it
downloaded. The server adds each arriving delta ``x_client - x_base``, weighted by
the staleness function (default ``1 / sqrt(1 + s)``), to a buffer; when ``K``
(``buffer_size``) have arrived it takes their sample-weighted mean ``d`` and steps
``m <- beta m + d``, ``x <- x + eta m`` (``server_lr`` eta, ``server_momentum`` beta).
With ``K`` = concurrency = the clients a round, eta 1, no momentum and devices that
finish together (no staleness), this is FedAvg's round.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tinylarge.models.weights import Weights
from tinylarge.schemes._async import AsyncFedAvg
from tinylarge.schemes.base import register_scheme
from tinylarge.schemes.options.asynchronous import FedBuffOptions
from tinylarge.sim.async_clock import Arrival


def buffered_delta(
    current: Weights, updates: Sequence[tuple[Weights, Weights, int, float]]
) -> list[np.ndarray | None]:
    """The buffer's mean delta, per floating tensor (None for integer buffers), in float64.

    ``updates`` holds ``(base, trained, num_samples, weight)``: each delta
    ``trained - base`` counts ``num_samples / total * weight``.

    >>> d = buffered_delta([np.zeros(1)], [([np.zeros(1)], [np.ones(1)], 1, 1.0),
    ...                                    ([np.ones(1)], [np.full(1, 4.0)], 3, 0.5)])
    >>> d[0].tolist()
    [1.375]
    """
    total = sum(n for _, _, n, _ in updates)
    out: list[np.ndarray | None] = []
    for i, cur in enumerate(current):
        if not np.issubdtype(cur.dtype, np.floating):
            out.append(None)
            continue
        acc = np.zeros(cur.shape, dtype=np.float64)
        for base, trained, n, w in updates:
            acc += (n / total * w) * (
                np.asarray(trained[i], np.float64) - np.asarray(base[i], np.float64)
            )
        out.append(acc)
    return out


@register_scheme
class FedBuff(AsyncFedAvg[FedBuffOptions]):
    """FedBuff (Nguyen et al. 2022) on the asynchronous clock."""

    name = "fedbuff"

    def setup(self) -> None:
        super().setup()
        self.buffer_size = self.options.buffer_size or self.concurrency
        self.momentum: list[np.ndarray | None] = [None for _ in self.weights]

    def updates_per_step(self) -> int:
        return self.buffer_size

    def apply(self, arrivals: Sequence[Arrival]) -> Weights:
        o = self.options
        delta = buffered_delta(
            self.weights,
            [(a.base, a.result.weights, a.result.num_samples, self.weight(a)) for a in arrivals],
        )
        new: Weights = []
        for i, (w, d) in enumerate(zip(self.weights, delta, strict=True)):
            if d is None:  # integer buffers (BatchNorm's counts): the largest
                new.append(np.max(np.stack([w, *(a.result.weights[i] for a in arrivals)]), 0))
                continue
            m = self.momentum[i]
            step = d if m is None or o.server_momentum == 0 else o.server_momentum * m + d
            self.momentum[i] = step
            new.append((w.astype(np.float64) + o.server_lr * step).astype(w.dtype))
        return new

    def summary_extras(self) -> dict[str, Any]:
        return {**super().summary_extras(), "buffer_size": self.buffer_size}

    def state(self) -> dict[str, Any]:
        return {**super().state(), "momentum": list(self.momentum)}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.momentum = list(state["momentum"])
