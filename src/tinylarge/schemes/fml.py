"""Federated mutual learning: a private model and a shared model per device, taught mutually.

Shen et al., "Federated Mutual Learning", 2020, https://arxiv.org/abs/2006.16765,
on Deep Mutual Learning (Zhang et al., CVPR 2018, https://arxiv.org/abs/1706.00384).
Each device trains two models on its private data at once: its private model
(which may differ per device profile or tier, ``client_models``, and never
leaves the device) and the shared "meme" model (``shared_model``, one
architecture for all). On every batch

    L_private = alpha * CE(private) + (1 - alpha) * KL(p_shared || p_private)
    L_shared  = beta  * CE(shared)  + (1 - beta)  * KL(p_private || p_shared)

Only the shared model travels: the device downloads it, trains, uploads it;
the server averages the shared models weighted by sample count (FedAvg, through
:meth:`tinylarge.sim.rounds.Round.aggregate`). A device must hold both models'
training memory at once.

``accuracy`` is the sample-weighted mean test accuracy of the private models
(what devices deploy); ``large_accuracy`` that of the server's averaged shared
model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from tinylarge.hardware.cost import Train
from tinylarge.hardware.fit import FitReport, format_bytes
from tinylarge.models.weights import Weights, get_weights, nbytes
from tinylarge.models.zoo import ModelSpec
from tinylarge.schemes._device_models import (
    by_profile,
    device_metrics,
    device_models,
    spec_for,
    spec_of,
)
from tinylarge.schemes.base import Scheme, register_scheme
from tinylarge.schemes.options.transfer import FMLOptions
from tinylarge.sim.aggregation import Update
from tinylarge.sim.context import Client
from tinylarge.sim.rounds import RoundReport
from tinylarge.sim.training import (
    TrainSettings,
    build,
    evaluate,
    init_weights,
    kd_loss,
    make_optimizer,
    run_steps,
    seeded,
    tensor,
)


@dataclass(frozen=True)
class MutualTask:
    """One device's round: deep mutual learning of its private and the shared model."""

    client: int
    seed: int
    private_spec: ModelSpec
    private: Weights
    shared_spec: ModelSpec
    shared: Weights
    indices: np.ndarray
    settings: TrainSettings
    alpha: float
    beta: float
    temperature: float


@dataclass(frozen=True)
class MutualResult:
    """Both trained models (only ``shared`` is uploaded) and the private model's mean loss."""

    client: int
    private: Weights
    shared: Weights
    num_samples: int
    loss: float


def mutual_client(task: MutualTask, x: np.ndarray, y: np.ndarray) -> MutualResult:
    """Deep mutual learning of the private and the shared model on the device's data: one
    joint step per batch, each model with its own optimizer; reports the private model's loss."""
    gen = seeded(task.seed)
    private = build(task.private_spec, task.private)
    shared = build(task.shared_spec, task.shared)
    private.train()
    shared.train()
    xs, ys = tensor(x[task.indices]), tensor(y[task.indices])
    a, b, t = task.alpha, task.beta, task.temperature
    ce = nn.functional.cross_entropy

    def loss_of(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out_p, out_s = private(xs[idx]), shared(xs[idx])
        loss_p = a * ce(out_p, ys[idx]) + (1 - a) * kd_loss(out_p, out_s, t)
        loss_s = b * ce(out_s, ys[idx]) + (1 - b) * kd_loss(out_s, out_p, t)
        return loss_p + loss_s, loss_p

    stats = run_steps(
        loss_of,
        [make_optimizer(private, task.settings), make_optimizer(shared, task.settings)],
        n=len(task.indices),
        settings=task.settings,
        gen=gen,
    )
    return MutualResult(
        task.client, get_weights(private), get_weights(shared), len(task.indices), stats.loss
    )


@register_scheme
class FederatedMutualLearning(Scheme[FMLOptions]):
    """Private models stay on devices; shared models are averaged at the server."""

    name = "fml"

    def setup(self) -> None:
        ctx, o = self.ctx, self.options
        self.specs = {c.id: spec_for(ctx, c.profile, o.client_models) for c in ctx.clients}
        self.shared_spec = (
            ctx.spec
            if o.shared_model is None
            else spec_of(
                o.shared_model, input_shape=ctx.spec.input_shape, num_classes=ctx.spec.num_classes
            )
        )
        self.pool = ctx.admit(
            {c.id: self._fit(c) for c in ctx.clients},
            what="train its private and shared models together",
            hint="choose smaller models (scheme.options.client_models, shared_model)",
        )
        self.private = {
            c.id: init_weights(self.specs[c.id], seed=ctx.task_seed(-1, c.id)) for c in self.pool
        }
        self.shared = init_weights(self.shared_spec, seed=ctx.seed)
        self.trained: set[int] = set()
        self.trained_samples = 0
        self._last: dict[int, float] = {}

    def _fit(self, client: Client) -> FitReport:
        """Both models train at once: their training memories and flash add up."""
        device = client.profile
        reports = [
            self.ctx.training_fit(spec, device)
            for spec in (self.specs[client.id], self.shared_spec)
        ]
        sram = sum(r.sram_bytes for r in reports)
        flash = sum(r.flash_bytes for r in reports)
        reasons = [] if device.can_train else [f"device {device.id} cannot train on-device"]
        if sram > device.sram_bytes:
            reasons.append(
                f"training memory of both models {format_bytes(sram)} > SRAM "
                f"{format_bytes(device.sram_bytes)}"
            )
        if flash > device.flash_bytes:
            reasons.append(
                f"both models {format_bytes(flash)} > flash {format_bytes(device.flash_bytes)}"
            )
        return FitReport(
            fits=not reasons,
            reason="; ".join(reasons) or None,
            flash_bytes=flash,
            flash_capacity_bytes=device.flash_bytes,
            sram_bytes=sram,
            sram_capacity_bytes=device.sram_bytes,
        )

    def run_round(self, rnd: int) -> RoundReport:
        ctx, o = self.ctx, self.options
        rd = ctx.round(rnd, self.pool)
        size = nbytes(self.shared)
        active = rd.download({c.id: [("weights", size)] for c in rd.participants})
        tasks = [
            MutualTask(
                client=c.id,
                seed=ctx.task_seed(rnd, c.id),
                private_spec=self.specs[c.id],
                private=self.private[c.id],
                shared_spec=self.shared_spec,
                shared=self.shared,
                indices=c.indices,
                settings=ctx.settings,
                alpha=o.alpha,
                beta=o.beta,
                temperature=o.temperature,
            )
            for c in active
        ]
        results = {r.client: r for r in ctx.backend.map(mutual_client, tasks)}
        shared_prof = ctx.profile(self.shared_spec)
        for c in active:
            r = results[c.id]
            self.private[c.id] = r.private
            self.trained.add(c.id)
            samples = r.num_samples * ctx.settings.epochs
            self.trained_samples += samples
            rd.compute(c, Train(ctx.profile(self.specs[c.id]), samples), what="train-private")
            rd.compute(c, Train(shared_prof, samples), what="train-shared")
        kept = rd.upload({c.id: [("weights", nbytes(results[c.id].shared))] for c in active})
        updates = [Update.full(c.id, results[c.id].shared, results[c.id].num_samples) for c in kept]
        self.shared = rd.aggregate(updates, base=self.shared)
        losses = [r.loss for r in results.values()]
        return rd.report(train_loss=float(np.mean(losses)) if losses else None)

    def evaluate(self) -> dict[str, float | None]:
        ctx = self.ctx
        x, y = ctx.dataset.x_test, ctx.dataset.y_test
        per = {
            cid: evaluate(self.specs[cid], self.private[cid], x, y) for cid in sorted(self.trained)
        }
        sizes = {c.id: len(c.indices) for c in ctx.clients}
        self._last = {cid: acc for cid, (acc, _) in per.items()}
        return {
            **device_metrics(per, sizes),
            "large_accuracy": evaluate(self.shared_spec, self.shared, x, y)[0],
        }

    def state(self) -> dict[str, Any]:
        return {
            "private": self.private,
            "shared": self.shared,
            "trained": sorted(self.trained),
            "trained_samples": self.trained_samples,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.private = state["private"]
        self.shared = state["shared"]
        self.trained = set(state["trained"])
        self.trained_samples = state["trained_samples"]

    def summary_extras(self) -> dict[str, Any]:
        return {
            "device_models": device_models(self.ctx, self.specs),
            "shared_model": {"model": self.shared_spec.name, "options": self.shared_spec.options},
            "accuracy_by_profile": by_profile(self.ctx, self._last),
            "device_train_samples": self.trained_samples,
        }
