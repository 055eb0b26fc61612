"""SplitFed: federated split learning, V1 (parallel server copies) and V2 (one server model).

Thapa, Chamikara, Camtepe and Sun, "SplitFed: When Federated Learning Meets
Split Learning", AAAI 2022, https://arxiv.org/abs/2004.12088.

Each device trains the layers before its cut (planned per device profile by
:mod:`tinylarge.orchestration.cut_planner`, so microcontrollers that cannot
train the whole model take part), the edge server trains the rest; smashed
data goes up and its gradient comes down every batch, at the configured
compression. A federation server averages the client-side models each round
(FedAvg, weighted by samples).

- ``variant: v1``: clients train in parallel, the server keeps one copy of
  the server-side model per client and averages the copies each round. A
  client and its server-side copy run as one task on the backend
  (:func:`tinylarge.schemes._split_task.split_fit`), in parallel on Ray. Round
  latency: the slowest client's download + training exchange + upload, plus
  aggregation; the server is assumed to serve the copies concurrently.
  Clients on one link preset share its cell.
- ``variant: v2``: clients start from the same client-side model but the
  server trains one server-side model on the clients in turn (a seeded random
  order each round), so the exchanges are sequential (in-process, identical
  on any backend). Round latency: the slowest download + the sum of the
  exchanges + the slowest upload, plus aggregation.

Devices with different cuts: each layer is averaged over the clients that
trained it on their device, together with (V1) the server copies that trained
it for the others or (V2) the server's model.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from tinylarge.schemes._split import SplitOptions, SplitScheme
from tinylarge.schemes._split_task import SplitResult, merge, split_fit
from tinylarge.schemes.base import RoundReport, register_scheme
from tinylarge.schemes.fedavg import weighted_average
from tinylarge.sim.context import Client


class FSLOptions(SplitOptions):
    #: ``v1``: a server-side copy per client, averaged; ``v2``: one server-side model in turn.
    variant: Literal["v1", "v2"] = "v1"


@register_scheme
class SplitFed(SplitScheme):
    """SplitFed V1/V2 with a planned cut per device profile."""

    name = "fsl"
    Options = FSLOptions

    @property
    def parallel_messages(self) -> bool:  # type: ignore[override]
        return self.variant == "v1"

    parallel_sync = True

    def run_round(self, rnd: int) -> RoundReport:
        ctx = self.ctx
        participants = ctx.sample_clients(rnd, pool=self.pool)
        shares = ctx.shares(participants)
        draws = ctx.rng(rnd, 4).random(len(participants))
        dropped: dict[int, str] = {}
        elapsed: dict[int, float] = {}
        active: list[Client] = []
        for c, u in zip(participants, draws, strict=True):
            t, reason = self.admit(rnd, c, float(u), share=shares[c.id])
            elapsed[c.id] = t
            if reason:
                dropped[c.id] = reason
            else:
                active.append(c)
        if self.variant == "v1":
            results, end = self._v1(rnd, active, elapsed, shares, dropped)
        else:
            results, end = self._v2(rnd, active, elapsed, shares)
        num_params = sum(int(np.asarray(w).size) for w in self.weights)
        end += ctx.bill_server(rnd, num_params * max(len(results), 1), what="aggregate")
        losses = [r.loss for r in results]
        return RoundReport(
            latency_s=end,
            participants=len(participants),
            dropped=dropped,
            train_loss=float(np.mean(losses)) if losses else None,
        )

    def _v1(
        self,
        rnd: int,
        active: list[Client],
        elapsed: dict[int, float],
        shares: dict[int, float],
        dropped: dict[int, str],
    ) -> tuple[list[SplitResult], float]:
        ctx = self.ctx
        deadline = ctx.config.engine.deadline_s
        tasks = [self.task(rnd, c, self.weights) for c in active]
        results = ctx.backend.map(split_fit, tasks)
        kept: list[SplitResult] = []
        for c, r in zip(active, results, strict=True):
            t = elapsed[c.id] + self.exchange(rnd, c, r, share=shares[c.id])
            t += self.upload(rnd, c, share=shares[c.id])
            elapsed[c.id] = t
            if deadline is not None and t > deadline:
                dropped[c.id] = "straggler"
            else:
                kept.append(r)
        if kept:
            self.weights = weighted_average([r.as_fit() for r in kept])
        end = max((elapsed[r.client] for r in kept), default=0.0)
        if deadline is not None and "straggler" in dropped.values():
            end = deadline
        return kept, end

    def _v2(
        self, rnd: int, active: list[Client], elapsed: dict[int, float], shares: dict[int, float]
    ) -> tuple[list[SplitResult], float]:
        ctx = self.ctx
        x, y = ctx.dataset.x_train, ctx.dataset.y_train
        order = [active[i] for i in ctx.rng(rnd, 11).permutation(len(active))]
        server = list(self.weights)
        contributions: list[tuple[list[bool], int, list[np.ndarray]]] = []
        results: list[SplitResult] = []
        serial = upload = 0.0
        for c in order:
            mask = self.device_mask(c)
            start = [g if m else s for g, s, m in zip(self.weights, server, mask, strict=True)]
            r = split_fit(self.task(rnd, c, start), x, y)
            server = [s if m else w for s, w, m in zip(server, r.weights, mask, strict=True)]
            contributions.append((mask, r.num_samples, r.weights))
            results.append(r)
            serial += self.exchange(rnd, c, r, share=1.0)
            upload = max(upload, self.upload(rnd, c, share=shares[c.id]))
        if results:
            self.weights = merge(self.weights, contributions, server)
        download = max((elapsed[c.id] for c in active), default=0.0)
        return results, download + serial + upload
