"""Vanilla split learning: clients in turn, the client-side model passed along.

Gupta and Raskar, "Distributed learning of deep neural network over multiple
agents", J. Netw. Comput. Appl. 2018, https://arxiv.org/abs/1810.06060;
Vepakomma, Gupta, Swedish and Raskar, "Split learning for health", 2018,
https://arxiv.org/abs/1812.00564.

Each round the sampled clients train one after another (a seeded random
order): a client downloads the current client-side model (from the server,
the centralised mode of Gupta and Raskar), trains it on its data with the
server, which holds the rest of the model and updates it on every batch, and
uploads it for the next client. The cut is planned per device profile
(:mod:`tinylarge.orchestration.cut_planner`).

- ``variant: label-sharing``: the labels travel with the smashed data and
  the server computes the loss.
- ``variant: u-shaped``: the last layers (after the model's last cut point)
  and the labels stay on the device: the server sends its output down, the
  device computes the loss and returns the gradient (Vepakomma et al., the
  "U-shaped" configuration without label sharing).

Sequential by nature: training runs in-process (identical on any backend).
Round latency is the sum of the clients' turns.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from tinylarge.schemes._split import SplitOptions, SplitScheme
from tinylarge.schemes._split_task import split_fit
from tinylarge.schemes.base import RoundReport, register_scheme


class SLOptions(SplitOptions):
    #: ``label-sharing`` (labels go to the server) or ``u-shaped`` (labels stay on the device).
    variant: Literal["label-sharing", "u-shaped"] = "label-sharing"


@register_scheme
class SplitLearning(SplitScheme):
    """Sequential split learning with a planned cut per device profile."""

    name = "sl"
    Options = SLOptions

    def run_round(self, rnd: int) -> RoundReport:
        ctx = self.ctx
        x, y = ctx.dataset.x_train, ctx.dataset.y_train
        participants = ctx.sample_clients(rnd, pool=self.pool)
        draws = ctx.rng(rnd, 4).random(len(participants))
        turn = ctx.rng(rnd, 11).permutation(len(participants))
        dropped: dict[int, str] = {}
        losses: list[float] = []
        latency = 0.0
        for i in turn:
            c = participants[i]
            t, reason = self.admit(rnd, c, float(draws[i]), share=1.0)
            latency += t
            if reason:
                dropped[c.id] = reason
                continue
            r = split_fit(self.task(rnd, c, self.weights), x, y)
            self.weights = r.weights
            losses.append(r.loss)
            latency += self.exchange(rnd, c, r, share=1.0) + self.upload(rnd, c, share=1.0)
        return RoundReport(
            latency_s=latency,
            participants=len(participants),
            dropped=dropped,
            train_loss=float(np.mean(losses)) if losses else None,
        )
