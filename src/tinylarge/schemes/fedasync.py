"""FedAsync: the server mixes in every update as it arrives.

Xie et al., "Asynchronous Federated Optimization", 2019,
https://arxiv.org/abs/1903.03934 (Algorithm 1, section 5.2).

Each arriving model ``x_client``, trained from the model of version ``tau``, is
mixed into the current one at version ``t``:
``x <- (1 - alpha_t) x + alpha_t x_client`` with ``alpha_t = alpha * s(t - tau)``
for the staleness function ``s`` (constant, polynomial ``(t - tau + 1) ** -a`` or
hinge). Every arrival is one server update.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tinylarge.models.weights import Weights
from tinylarge.schemes._async import AsyncFedAvg
from tinylarge.schemes.base import register_scheme
from tinylarge.schemes.options.asynchronous import FedAsyncOptions
from tinylarge.sim.async_clock import Arrival


def mix(current: Weights, trained: Weights, alpha_t: float) -> Weights:
    """``(1 - alpha_t) current + alpha_t trained`` per floating tensor (float64 inside);
    integer buffers take the larger.

    >>> mix([np.array([0.0, 4.0])], [np.array([2.0, 0.0])], 0.25)[0].tolist()
    [0.5, 3.0]
    """
    out: Weights = []
    for w, t in zip(current, trained, strict=True):
        if not np.issubdtype(w.dtype, np.floating):
            out.append(np.maximum(w, t))
            continue
        x = (1 - alpha_t) * w.astype(np.float64) + alpha_t * np.asarray(t, np.float64)
        out.append(x.astype(w.dtype))
    return out


@register_scheme
class FedAsync(AsyncFedAvg[FedAsyncOptions]):
    """FedAsync (Xie et al. 2019) on the asynchronous clock."""

    name = "fedasync"

    def updates_per_step(self) -> int:
        return 1

    def apply(self, arrivals: Sequence[Arrival]) -> Weights:
        (a,) = arrivals
        return mix(self.weights, a.result.weights, self.options.alpha * self.weight(a))
