"""Vanilla split learning: clients in turn, the client-side model passed along.

Gupta and Raskar, "Distributed learning of deep neural network over multiple
agents", J. Netw. Comput. Appl. 2018, https://arxiv.org/abs/1810.06060;
Vepakomma, Gupta, Swedish and Raskar, "Split learning for health", 2018,
https://arxiv.org/abs/1812.00564.

Each round the sampled clients take turns (a seeded random order): in its turn
a client downloads the current client-side model (from the server, the
centralised mode of Gupta and Raskar), trains it on its data with the server,
which holds the rest of the model and updates it on every batch, and uploads
it for the next client. The cut is planned per device profile
(:mod:`tinylarge.schemes._split_plan`).

- ``variant: label-sharing``: the labels travel with the smashed data and
  the server computes the loss.
- ``variant: u-shaped``: the last layers (after the model's last cut point)
  and the labels stay on the device: the server sends its output down, the
  device computes the loss and returns the gradient (Vepakomma et al., the
  "U-shaped" configuration without label sharing).

On the round clock (:mod:`tinylarge.sim.rounds`) each turn is
:meth:`~tinylarge.sim.rounds.Round.begin_turn` ... ``end_turn``: the server
serves one client at a time, so the device phase is the sum of the turns. A
client whose link is in outage is dropped before anything is sent; one that
drops out after its download (``engine.dropout_prob``) ends its turn there. A
client whose upload arrives after ``engine.deadline_s`` is a straggler: its
work is billed, but the model is rolled back to what it was before its turn;
no turn starts after the deadline. Sequential by nature: training runs
in-process (identical on any backend).
"""

from __future__ import annotations

import numpy as np

from tinylarge.schemes._split import TURN_STREAM, SplitScheme
from tinylarge.schemes._split_task import split_fit
from tinylarge.schemes.base import register_scheme
from tinylarge.schemes.options.split import SLOptions
from tinylarge.sim.rounds import RoundReport


@register_scheme
class SplitLearning(SplitScheme[SLOptions]):
    """Sequential split learning with a planned cut per device profile."""

    name = "sl"

    @property
    def variant(self) -> str:
        return self.options.variant

    @property
    def u_shaped(self) -> bool:
        return self.options.variant == "u-shaped"

    def run_round(self, rnd: int) -> RoundReport:
        ctx = self.ctx
        x, y = ctx.dataset.x_train, ctx.dataset.y_train
        rd = ctx.round(rnd, self.pool)
        losses: list[float] = []
        for i in ctx.rng(rnd, TURN_STREAM).permutation(len(rd.participants)):
            c = rd.participants[i]
            if not rd.begin_turn(c):
                continue
            if rd.download({c.id: self.client_model(c)}, [c], round_trip=True):
                r = split_fit(self.task(rnd, c, self.weights), x, y)
                self.train(rd, c, r)
                rd.exchange({c.id: r.messages})
                if rd.upload({c.id: self.client_model(c)}, [c]):
                    self.weights = r.weights  # a straggler's turn leaves the model as it was
                    losses.append(r.loss)
            rd.end_turn(c)
        self.after_training(rd, rnd)
        return rd.report(train_loss=float(np.mean(losses)) if losses else None)
