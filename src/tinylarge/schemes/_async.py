"""The base of the asynchronous FedAvg schemes: a metric round is one server update.

The devices, their local training and the model are FedAvg's
(:class:`~tinylarge.schemes.fedavg.FedAvgFamily`); the clock is the asynchronous one
(:mod:`tinylarge.sim.async_clock`). A subclass says how many arrivals make a server
update (:meth:`AsyncFedAvg.updates_per_step`) and how they change the model
(:meth:`AsyncFedAvg.apply`).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np

from tinylarge.hardware.cost import Elementwise
from tinylarge.models.weights import Weights
from tinylarge.schemes.fedavg import FedAvgFamily
from tinylarge.schemes.options.asynchronous import AsyncOptions
from tinylarge.sim.async_clock import Arrival, AsyncClock, percentile
from tinylarge.sim.rounds import RoundReport
from tinylarge.sim.staleness import staleness_weight

AsyncOptionsT = TypeVar("AsyncOptionsT", bound=AsyncOptions)


class AsyncFedAvg(FedAvgFamily[AsyncOptionsT]):
    """FedAvg's devices and training on the asynchronous clock."""

    def setup(self) -> None:
        super().setup()
        per_round = self.ctx.config.training.per_round(len(self.pool))
        self.concurrency = min(self.options.concurrency or per_round, len(self.pool))
        self.clock = AsyncClock(
            self.ctx, self.pool, concurrency=self.concurrency, train=self.local_fit
        )
        #: Server updates so far: the version of the current model.
        self.version = 0
        #: Staleness of every update applied, in order.
        self.staleness: list[int] = []
        self.stale_dropped = 0

    @abstractmethod
    def updates_per_step(self) -> int:
        """Arrivals that make one server update."""

    @abstractmethod
    def apply(self, arrivals: Sequence[Arrival]) -> Weights:
        """The new global model from the current one and ``arrivals``."""

    def weight(self, arrival: Arrival) -> float:
        """The staleness function's weight of ``arrival``."""
        o = self.options
        return staleness_weight(o.staleness, arrival.staleness, a=o.staleness_a, b=o.staleness_b)

    def run_round(self, rnd: int) -> RoundReport:
        limit = self.options.max_staleness
        taken: list[Arrival] = []
        while len(taken) < self.updates_per_step():
            arrival = self.clock.next_arrival(self.weights, self.version)
            if limit is not None and arrival.staleness > limit:
                self.clock.discard(arrival, "stale")
                self.stale_dropped += 1
                continue
            taken.append(arrival)
        self.weights = self.apply(taken)
        values = sum(int(t.size) for a in taken for t in a.result.weights)
        self.clock.server(Elementwise(values), what="aggregate")
        self.version += 1
        stale = [a.staleness for a in taken]
        self.staleness += stale
        return self.clock.close_round(
            rnd,
            participants=len(taken),
            train_loss=float(np.mean([a.result.loss for a in taken])),
            notes={"staleness_mean": float(np.mean(stale)), "staleness_max": max(stale)},
        )

    def summary_extras(self) -> dict[str, Any]:
        s = self.staleness
        return {
            "server_updates": self.version,
            "concurrency": self.concurrency,
            "staleness_mean": float(np.mean(s)) if s else None,
            "staleness_p95": percentile(s, 95),
            "staleness_max": max(s) if s else None,
            "stale_dropped": self.stale_dropped,
        }

    def state(self) -> dict[str, Any]:
        return {
            "weights": self.weights,
            "version": self.version,
            "staleness": list(self.staleness),
            "stale_dropped": self.stale_dropped,
            "clock": self.clock.state(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.weights = list(state["weights"])
        self.version = int(state["version"])
        self.staleness = [int(s) for s in state["staleness"]]
        self.stale_dropped = int(state["stale_dropped"])
        self.clock.load_state(state["clock"])
