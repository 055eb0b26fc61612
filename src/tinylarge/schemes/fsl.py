"""SplitFed: federated split learning, V1 (parallel server copies) and V2 (one server model).

Thapa, Chamikara, Camtepe and Sun, "SplitFed: When Federated Learning Meets
Split Learning", AAAI 2022, https://arxiv.org/abs/2004.12088.

Each device trains the layers before its cut (planned per device profile by
:mod:`tinylarge.schemes._split_plan`, so microcontrollers that cannot train
the whole model take part), the edge server trains the rest; smashed data goes
up and its gradient comes down every batch, at the configured compression. A
federation server averages the client-side models each round (FedAvg, weighted
by samples, :meth:`tinylarge.sim.rounds.Round.aggregate`).

- ``variant: v1``: clients train in parallel, the server keeps one copy of
  the server-side model per client and averages the copies with the
  client-side models. A client and its server-side copy run as one task on the
  backend (:func:`tinylarge.schemes._split_task.split_fit`), in parallel on
  Ray. All transfers happen together, so devices on one link preset share its
  cell; the server is assumed to serve the copies concurrently.
- ``variant: v2``: clients download the client-side model together, but the
  server trains one server-side model on the clients in turn (a seeded random
  order each round): a client's turn starts when its own download has arrived
  and the server is free, and it uploads its client-side model as soon as its
  turn ends (alone on its link, while the next turn runs). In-process
  (sequential by nature), identical on any backend.

Each client's update carries every tensor: its device-side tensors and the
server-side tensors that trained with them (V1: its server copy; V2: the
server's model after the round's turns), so a layer is averaged over the
clients that trained it on their device together with the server copies that
trained it for the others; with one cut for everyone this is exactly SplitFed
V1 / V2.

Stragglers (an upload after ``engine.deadline_s``): their work is billed and
their update discarded; in V2 the server's model is also rolled back to what it
was before the straggler's turn (the next turn starts from it), and no turn
starts after the deadline.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from tinylarge.schemes._split import TURN_STREAM, SplitScheme, mix
from tinylarge.schemes._split_costs import Sharing
from tinylarge.schemes._split_task import SplitResult, split_fit
from tinylarge.schemes.base import register_scheme
from tinylarge.schemes.options.split import FSLOptions
from tinylarge.sim.aggregation import Update
from tinylarge.sim.context import Client
from tinylarge.sim.rounds import Round, RoundReport


@register_scheme
class SplitFed(SplitScheme[FSLOptions]):
    """SplitFed V1/V2 with a planned cut per device profile."""

    name = "fsl"

    @property
    def variant(self) -> str:
        return self.options.variant

    @property
    def sharing(self) -> Sharing:
        if self.options.variant == "v1":
            return Sharing(download=True, messages=True, upload=True)
        return Sharing(download=True)

    def run_round(self, rnd: int) -> RoundReport:
        rd = self.ctx.round(rnd, self.pool)
        active = rd.download({c.id: self.client_model(c) for c in rd.participants}, round_trip=True)
        v1 = self.options.variant == "v1"
        kept = self._v1(rd, rnd, active) if v1 else self._v2(rd, rnd, active)
        self.weights = rd.aggregate(
            [Update.full(r.client, r.weights, r.num_samples) for r in kept], base=self.weights
        )
        self.after_training(rd, rnd)
        losses = [r.loss for r in kept]
        return rd.report(train_loss=float(np.mean(losses)) if losses else None)

    def _v1(self, rd: Round, rnd: int, active: list[Client]) -> list[SplitResult]:
        """Every client with its own server copy, at once; the results that arrived in time."""
        tasks = [self.task(rnd, c, self.weights) for c in active]
        results = {r.client: r for r in self.ctx.backend.map(split_fit, tasks)}
        for c in active:
            self.train(rd, c, results[c.id])
        rd.exchange({c.id: results[c.id].messages for c in active})
        kept = rd.upload({c.id: self.client_model(c) for c in active})
        return [results[c.id] for c in kept]

    def _v2(self, rd: Round, rnd: int, active: list[Client]) -> list[SplitResult]:
        """One server model, trained on the clients in turn; the results that arrived in
        time, each carrying the server's final model for its server side."""
        x, y = self.ctx.dataset.x_train, self.ctx.dataset.y_train
        order = [active[i] for i in self.ctx.rng(rnd, TURN_STREAM).permutation(len(active))]
        server = list(self.weights)
        kept: list[tuple[list[bool], SplitResult]] = []
        for c in order:
            if not rd.begin_turn(c):
                continue
            mask = self.device_mask(c)
            r = split_fit(self.task(rnd, c, mix(self.weights, server, mask)), x, y)
            self.train(rd, c, r)
            rd.exchange({c.id: r.messages})
            rd.end_turn(c)
            if rd.upload({c.id: self.client_model(c)}, [c]):
                # a straggler's server-side training is rolled back: ``server`` stays as it was
                server = mix(server, r.weights, mask)
                kept.append((mask, r))
        return [replace(r, weights=mix(r.weights, server, mask)) for mask, r in kept]
