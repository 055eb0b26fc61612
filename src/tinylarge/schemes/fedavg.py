"""FedAvg: sample clients, train locally, average weighted by sample count.

McMahan et al., "Communication-Efficient Learning of Deep Networks from
Decentralized Data", AISTATS 2017, https://arxiv.org/abs/1602.05629

:class:`FedAvgFamily` is the round every member shares (broadcast the global
model, local training, upload, aggregation); FedProx changes the local
objective, FedAdam and FedYogi the server's step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from tinylarge.hardware.cost import Infer
from tinylarge.models.weights import Weights, get_weights, nbytes
from tinylarge.schemes.base import Scheme, register_scheme
from tinylarge.schemes.options import NoOptions, SchemeOptions
from tinylarge.sim.aggregation import Update
from tinylarge.sim.backends import fit_many
from tinylarge.sim.rounds import Round, RoundReport
from tinylarge.sim.selection import highest_loss
from tinylarge.sim.training import FitResult, FitTask
from tinylarge.sim.training import evaluate as local_loss

if TYPE_CHECKING:
    from tinylarge.sim.context import Client

OptionsT = TypeVar("OptionsT", bound=SchemeOptions)


class FedAvgFamily(Scheme[OptionsT]):
    """Federated averaging of a shared model across the devices that can train it."""

    #: The local objective (:data:`tinylarge.sim.training.TRAINERS`).
    trainer = "erm"

    def setup(self) -> None:
        ctx = self.ctx
        self.pool = ctx.admit(
            {c.id: ctx.training_fit(ctx.spec, c.profile) for c in ctx.clients},
            what=f"train model {ctx.config.model.name!r}",
            hint="choose a smaller model or a scheme for constrained devices (sl, fsl)",
        )
        ctx.average_privately(self.pool)
        ctx.train_privately(self.pool)
        torch.manual_seed(ctx.seed)
        self.weights: Weights = get_weights(ctx.spec.build())

    def trainer_options(self) -> dict[str, float]:
        return {}

    def server_update(self, rnd: int, averaged: Weights) -> Weights:
        """How the server turns the clients' average into the new global model."""
        return averaged

    def local_fit(
        self, rnd: int, clients: Sequence[Client], weights: Weights
    ) -> dict[int, FitResult]:
        """Each of ``clients`` trains ``weights`` locally (task seeds from ``rnd``), by id."""
        ctx = self.ctx
        tasks = [
            FitTask(
                client=c.id,
                round=rnd,
                seed=ctx.task_seed(rnd, c.id),
                spec=ctx.spec,
                weights=weights,
                indices=c.indices,
                settings=ctx.settings,
                trainer=self.trainer,
                trainer_options=self.trainer_options(),
                poison=None if ctx.adversary is None else ctx.adversary.poison(c.id),
                dpsgd=None if ctx.dpsgd is None else ctx.dpsgd.spec,
            )
            for c in clients
        ]
        return {r.client: r for r in fit_many(ctx.backend, tasks)}

    def run_round(self, rnd: int) -> RoundReport:
        ctx = self.ctx
        first_event = len(ctx.ledger)
        rd = ctx.round(rnd, self.pool)
        size = nbytes(self.weights)
        active = rd.download({c.id: [("weights", size)] for c in rd.participants})
        if ctx.config.training.selection == "power-of-choice":
            active = self.highest_loss_candidates(rd, active)
        results = self.local_fit(rnd, active, self.weights)
        for c in active:
            r = results[c.id]
            rd.compute(c, ctx.local_training(r.examples, steps=r.steps), what="local-train")
        ctx.spend_privacy({c.id: results[c.id].steps for c in active})
        trained = [
            Update.full(c.id, results[c.id].weights, results[c.id].num_samples) for c in active
        ]
        sent = rd.protect(rd.corrupt(trained, base=self.weights), base=self.weights)
        if ctx.config.privacy.secagg is not None:  # the masked update replaces the upload
            averaged = rd.secure_aggregate(sent, base=self.weights)
            if averaged is not self.weights:
                self.weights = self.server_update(rnd, averaged)
            kept = [c for c in active if c.id not in rd.dropped]
        else:
            kept = rd.upload(
                {cid: [("weights", nbytes(r.weights))] for cid, r in results.items()}, active
            )
            by_client = {u.client: u for u in sent}
            updates = [by_client[c.id] for c in kept]
            if updates:
                averaged = rd.aggregate(updates, base=self.weights)
                self.weights = self.server_update(rnd, averaged)
        if ctx.feedback is not None:  # Oort learns from every device whose report came in
            heard = [
                (c, results[c.id]) for c in active if rd.dropped.get(c.id) in (None, "straggler")
            ]
            ctx.feedback.record(rnd, heard, ctx.ledger.since(first_event))
        losses = [results[c.id].loss for c in kept]
        return rd.report(train_loss=float(np.mean(losses)) if losses else None)

    def highest_loss_candidates(self, rd: Round, candidates: Sequence[Client]) -> list[Client]:
        """Power-of-choice (Cho et al. 2022): each candidate computes the global model's loss
        on its local data and reports it; the server keeps the ``k`` highest once every
        report is in (:mod:`tinylarge.sim.selection`)."""
        ctx = self.ctx
        x, y = ctx.dataset.x_train, ctx.dataset.y_train
        losses: dict[int, float] = {}
        for c in candidates:
            losses[c.id] = local_loss(ctx.spec, self.weights, x[c.indices], y[c.indices])[1]
            work = Infer(ctx.model_profile, batch=max(1, len(c.indices)))
            rd.compute(c, work, what="local-loss")
        reported = rd.upload({c.id: [("loss", 4)] for c in candidates}, candidates)
        rd.barrier(reported)
        k = ctx.config.training.per_round(len(self.pool))
        chosen = set(highest_loss({c.id: losses[c.id] for c in reported}, k))
        return [c for c in reported if c.id in chosen]

    def evaluate(self) -> dict[str, float | None]:
        acc, loss = self.ctx.evaluate(self.weights)
        out: dict[str, float | None] = {"accuracy": acc, "loss": loss, "large_accuracy": None}
        adversary = self.ctx.adversary
        if adversary is not None and adversary.name == "backdoor":
            out["backdoor_success"] = self.ctx.backdoor_success(self.weights)
        return out

    def state(self) -> dict[str, Any]:
        return {"weights": self.weights}

    def load_state(self, state: dict[str, Any]) -> None:
        self.weights = state["weights"]


@register_scheme
class FedAvg(FedAvgFamily[NoOptions]):
    """FedAvg (McMahan et al. 2017)."""

    name = "fedavg"
