"""FedAvg: sample clients, train locally, average weighted by sample count.

McMahan et al., "Communication-Efficient Learning of Deep Networks from
Decentralized Data", AISTATS 2017, https://arxiv.org/abs/1602.05629
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tinylarge.schemes.base import RoundReport, Scheme, register_scheme
from tinylarge.sim.client import FitResult, Weights, get_weights


def weighted_average(results: list[FitResult]) -> Weights:
    """Per-tensor average of client weights, weighted by their sample counts.

    Integer buffers (e.g. BatchNorm's ``num_batches_tracked``) take the maximum.
    """
    total = sum(r.num_samples for r in results)
    out: Weights = []
    for tensors in zip(*(r.weights for r in results), strict=True):
        if np.issubdtype(tensors[0].dtype, np.integer):
            out.append(np.max(np.stack(tensors), axis=0))
            continue
        acc = np.zeros_like(tensors[0], dtype=np.float64)
        for r, t in zip(results, tensors, strict=True):
            acc += (r.num_samples / total) * t.astype(np.float64)
        out.append(acc.astype(tensors[0].dtype))
    return out


@register_scheme
class FedAvg(Scheme):
    """Federated averaging of a shared model across the eligible devices."""

    name = "fedavg"
    trainer = "erm"

    def setup(self) -> None:
        self.ctx.require_trainable_devices()
        torch.manual_seed(self.ctx.seed)
        self.weights: Weights = get_weights(self.ctx.spec.build())

    def trainer_options(self) -> dict[str, float]:
        return {}

    def server_update(self, rnd: int, averaged: Weights) -> Weights:
        """How the server turns the clients' average into the new global model."""
        return averaged

    def run_round(self, rnd: int) -> RoundReport:
        out = self.ctx.federated_round(
            rnd, self.weights, trainer=self.trainer, trainer_options=self.trainer_options()
        )
        if out.results:
            self.weights = self.server_update(rnd, weighted_average(out.results))
        losses = [r.loss for r in out.results]
        return RoundReport(
            latency_s=out.latency_s,
            participants=len(out.participants),
            dropped=out.dropped,
            train_loss=float(np.mean(losses)) if losses else None,
        )

    def evaluate(self) -> dict[str, float | None]:
        acc, loss = self.ctx.evaluate(self.weights)
        return {"accuracy": acc, "loss": loss, "large_accuracy": None}

    def state(self) -> dict[str, Any]:
        return {"weights": self.weights}

    def load_state(self, state: dict[str, Any]) -> None:
        self.weights = state["weights"]
