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
the server averages the shared models weighted by sample count (FedAvg).
A device must hold both models' training memory at once.

``accuracy`` is the sample-weighted mean test accuracy of the private models
(what devices deploy); ``large_accuracy`` that of the server's averaged shared
model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from tinylarge.hardware.cost import training_cost
from tinylarge.hardware.fit import FitReport, check_fit, format_bytes
from tinylarge.models.profile import ModelProfile
from tinylarge.schemes import _kd
from tinylarge.schemes._kd import ModelChoice
from tinylarge.schemes.base import RoundReport, Scheme, register_scheme
from tinylarge.schemes.fedavg import weighted_average
from tinylarge.sim.client import (
    FitResult,
    ModelSpec,
    TrainSettings,
    Weights,
    evaluate,
    get_weights,
    make_optimizer,
)
from tinylarge.sim.context import Client


class FMLOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    #: Private model per profile id or tier (default: the config's model).
    client_models: dict[str, ModelChoice] = {}
    #: The shared (meme) model every device trains (default: the config's model).
    shared_model: ModelChoice | None = None
    #: Weight of cross-entropy in the private model's loss (the rest is KL to the shared).
    alpha: Annotated[float, Field(ge=0, le=1)] = 0.5
    #: Weight of cross-entropy in the shared model's loss (the rest is KL to the private).
    beta: Annotated[float, Field(ge=0, le=1)] = 0.5
    temperature: Annotated[float, Field(gt=0)] = 1.0

    _models = field_validator("client_models")(_kd.check_model_map)


@dataclass(frozen=True)
class MutualTask:
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
    client: int
    private: Weights
    shared: Weights
    num_samples: int
    loss: float


def mutual_client(task: MutualTask, x: np.ndarray, y: np.ndarray) -> MutualResult:
    """Deep mutual learning of the private and the shared model on the device's data."""
    gen = _kd.seeded(task.seed)
    private = _kd.build(task.private_spec, task.private)
    shared = _kd.build(task.shared_spec, task.shared)
    private.train()
    shared.train()
    opt_p = make_optimizer(private, task.settings)
    opt_s = make_optimizer(shared, task.settings)
    xs, ys = _kd.tensor(x[task.indices]), _kd.tensor(y[task.indices])
    a, b, t = task.alpha, task.beta, task.temperature
    total, steps = 0.0, 0
    n = len(task.indices)
    s = task.settings
    for idx in _kd.batches(n, batch_size=s.batch_size, epochs=s.epochs, gen=gen):
        out_p, out_s = private(xs[idx]), shared(xs[idx])
        ce = nn.functional.cross_entropy
        loss_p = a * ce(out_p, ys[idx]) + (1 - a) * _kd.kd_loss(out_p, out_s, t)
        loss_s = b * ce(out_s, ys[idx]) + (1 - b) * _kd.kd_loss(out_s, out_p, t)
        opt_p.zero_grad(set_to_none=True)
        opt_s.zero_grad(set_to_none=True)
        (loss_p + loss_s).backward()  # type: ignore[no-untyped-call]
        opt_p.step()
        opt_s.step()
        total += float(loss_p.detach())
        steps += 1
    return MutualResult(
        task.client, get_weights(private), get_weights(shared), n, total / max(steps, 1)
    )


@register_scheme
class FederatedMutualLearning(Scheme):
    """Private models stay on devices; shared models are averaged at the server."""

    name = "fml"
    Options = FMLOptions

    @property
    def opts(self) -> FMLOptions:
        assert isinstance(self.options, FMLOptions)
        return self.options

    def setup(self) -> None:
        ctx, o = self.ctx, self.opts
        self.specs = {c.id: _kd.spec_for(ctx, c.profile, o.client_models) for c in ctx.clients}
        self.shared_spec = (
            ctx.spec
            if o.shared_model is None
            else _kd.spec_of(
                o.shared_model, input_shape=ctx.spec.input_shape, num_classes=ctx.spec.num_classes
            )
        )
        self.fits: dict[str, FitReport] = {}
        for c in ctx.clients:
            if c.profile.id not in self.fits:
                self.fits[c.profile.id] = self._fit(c)
        _kd.require_any(ctx, self.fits, what="its private and shared models together")
        self.pool = [c for c in ctx.clients if self.fits[c.profile.id].fits]
        self.private = {
            c.id: _kd.init_weights(self.specs[c.id], seed=ctx.task_seed(-1, c.id))
            for c in self.pool
        }
        self.shared = _kd.init_weights(self.shared_spec, seed=ctx.seed)
        self.trained: set[int] = set()
        self.trained_samples = 0
        self._last: dict[int, float] = {}

    def _profile(self, spec: ModelSpec) -> ModelProfile:
        s = self.ctx.settings
        return _kd.profile_spec(spec, batch_size=s.batch_size, optimizer=_kd.optimizer_name(s))

    def _fit(self, client: Client) -> FitReport:
        """Both models train at once: their training memories and flash add up."""
        device = client.profile
        reports = [
            check_fit(self._profile(spec), device, training=True)
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
        ctx, o = self.ctx, self.opts
        participants = ctx.sample_clients(rnd, pool=self.pool)
        ex = _kd.Exchange(ctx, rnd)
        size = _kd.nbytes(self.shared)
        active = ex.download(participants, {c.id: [("weights", size)] for c in participants})
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
        shared_prof = self._profile(self.shared_spec)
        for c in active:
            r = results[c.id]
            self.private[c.id] = r.private
            self.trained.add(c.id)
            samples = r.num_samples * ctx.settings.epochs
            self.trained_samples += samples
            ex.compute(
                c,
                training_cost(self._profile(self.specs[c.id]), c.profile, samples=samples),
                what="train-private",
            )
            ex.compute(
                c, training_cost(shared_prof, c.profile, samples=samples), what="train-shared"
            )
        ups = {c.id: [("weights", _kd.nbytes(results[c.id].shared))] for c in active}
        kept = ex.upload(active, ups)
        end = ex.end_s(kept)
        if kept:
            fits = [
                FitResult(c.id, results[c.id].shared, results[c.id].num_samples, results[c.id].loss)
                for c in kept
            ]
            self.shared = weighted_average(fits)
            num_params = sum(int(w.size) for w in self.shared)
            end += ctx.bill_server(rnd, num_params * len(kept), what="aggregate")
        losses = [r.loss for r in results.values()]
        return RoundReport(
            latency_s=end,
            participants=len(participants),
            dropped=ex.dropped,
            train_loss=float(np.mean(losses)) if losses else None,
        )

    def evaluate(self) -> dict[str, float | None]:
        ctx = self.ctx
        x, y = ctx.dataset.x_test, ctx.dataset.y_test
        torch.set_num_threads(1)
        per = {
            cid: evaluate(self.specs[cid], self.private[cid], x, y) for cid in sorted(self.trained)
        }
        sizes = {c.id: len(c.indices) for c in ctx.clients}
        self._last = {cid: acc for cid, (acc, _) in per.items()}
        return {
            **_kd.device_metrics(per, sizes),
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
            **_kd.fits_summary(self.ctx, self.fits),
            "device_models": _kd.device_models(self.ctx, self.specs, self.fits),
            "shared_model": {"model": self.shared_spec.name, "options": self.shared_spec.options},
            "accuracy_by_profile": _kd.by_profile(self.ctx, self._last),
            "device_train_samples": self.trained_samples,
        }
