"""Federated distillation across heterogeneous device models into a large server model.

The FedMD protocol (Li and Wang, "FedMD: Heterogenous Federated Learning via
Model Distillation", NeurIPS 2019 workshop, https://arxiv.org/abs/1910.03581)
with FedDF's server-side ensemble distillation (Lin et al., "Ensemble
Distillation for Robust Model Fusion in Federated Learning", NeurIPS 2020,
https://arxiv.org/abs/2006.07242). Devices keep their own models, which may
differ per device profile or tier (``client_models``), and share only
predictions on a public, unlabeled set that the server holds
(``public_fraction`` of the training set, its labels never used; devices get
its inputs once, as float16). Each round a device

1. downloads the consensus logits on the public set (from the previous round)
   and distils them into its model for ``digest_epochs`` ("digest"),
2. trains on its private data ("revisit"),
3. uploads its logits on the public set.

The server averages the logits it received, weighted by the devices' sample
counts (the ensemble, :meth:`tinylarge.sim.rounds.Round.aggregate`), distils
that ensemble into the large model (``server_model``) for ``server_epochs``, and
returns as consensus either the large model's logits (``consensus: server``) or
the ensemble's (``consensus: ensemble``). All training on devices is on their
clocks, all distillation at the server is the server's work after the device
phase. A device must hold its model and the public set in flash.

``accuracy`` is the sample-weighted mean test accuracy of the devices' models;
``large_accuracy`` the large model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tinylarge.hardware.cost import Infer, Train
from tinylarge.hardware.fit import FitReport, format_bytes
from tinylarge.models.weights import Weights, get_weights
from tinylarge.models.zoo import ModelSpec
from tinylarge.schemes._device_models import (
    SERVER_TASK,
    by_profile,
    default_server_model,
    device_metrics,
    device_models,
    hold_out,
    spec_for,
    spec_of,
)
from tinylarge.schemes.base import Scheme, register_scheme
from tinylarge.schemes.options.transfer import FedDFOptions
from tinylarge.sim.aggregation import Update
from tinylarge.sim.context import Client
from tinylarge.sim.rounds import Payload, Round, RoundReport
from tinylarge.sim.training import (
    TrainSettings,
    build,
    evaluate,
    init_weights,
    predict_logits,
    seeded,
    tensor,
    train_supervised,
)


@dataclass(frozen=True)
class DistillTask:
    """One device's round: digest the consensus, revisit private data, predict the public set."""

    client: int
    seed: int
    spec: ModelSpec
    weights: Weights
    indices: np.ndarray
    public: np.ndarray
    consensus: np.ndarray | None
    settings: TrainSettings
    digest_epochs: int
    temperature: float


@dataclass(frozen=True)
class DistillResult:
    """The device's new model and its logits on the public set (what it uploads)."""

    client: int
    weights: Weights
    logits: np.ndarray
    num_samples: int
    loss: float


def public_inputs(x: np.ndarray, public: np.ndarray) -> np.ndarray:
    """The public set as devices hold it: sent as float16."""
    out: np.ndarray = x[public].astype(np.float16).astype(np.float32)
    return out


def distill_client(task: DistillTask, x: np.ndarray, y: np.ndarray) -> DistillResult:
    """Digest (KD to the consensus on the public set), revisit (CE on private data), predict."""
    gen = seeded(task.seed)
    model = build(task.spec, task.weights)
    x_pub = public_inputs(x, task.public)
    if task.consensus is not None and task.digest_epochs > 0:
        train_supervised(
            model,
            tensor(x_pub),
            None,
            settings=task.settings,
            gen=gen,
            teacher=tensor(task.consensus),
            kd_weight=1.0,
            temperature=task.temperature,
            epochs=task.digest_epochs,
        )
    stats = train_supervised(
        model, tensor(x[task.indices]), tensor(y[task.indices]), settings=task.settings, gen=gen
    )
    logits = predict_logits(model, x_pub)
    return DistillResult(task.client, get_weights(model), logits, len(task.indices), stats.loss)


@register_scheme
class FedDF(Scheme[FedDFOptions]):
    """Heterogeneous device models exchange public-set logits; the server distils a large model."""

    name = "feddf"

    def setup(self) -> None:
        ctx, o = self.ctx, self.options
        self.public, self.local_idx = hold_out(ctx, fraction=o.public_fraction)
        self.public_bytes = int(ctx.dataset.x_train[self.public].astype(np.float16).nbytes)
        self.specs = {c.id: spec_for(ctx, c.profile, o.client_models) for c in ctx.clients}
        self.pool = ctx.admit(
            {c.id: self._fit(c) for c in ctx.clients},
            what="train its device model and hold the public set",
            hint="choose a smaller device model (scheme.options.client_models) "
            "or a smaller scheme.options.public_fraction",
        )
        choice = o.server_model or default_server_model(ctx.spec.input_shape)
        self.server_spec = spec_of(
            choice, input_shape=ctx.spec.input_shape, num_classes=ctx.spec.num_classes
        )
        s = ctx.settings
        self.server_settings = s.with_(
            epochs=o.server_epochs,
            batch_size=o.server_batch_size,
            lr=o.server_lr or s.lr,
            optimizer=o.server_optimizer or s.optimizer,
        )
        self.server_profile = ctx.profile(
            self.server_spec,
            batch_size=o.server_batch_size,
            optimizer=self.server_settings.optimizer,
        )
        self.weights = {
            c.id: init_weights(self.specs[c.id], seed=ctx.task_seed(-1, c.id)) for c in self.pool
        }
        self.server_weights = init_weights(self.server_spec, seed=ctx.seed)
        self.consensus: np.ndarray | None = None
        self.has_public: set[int] = set()
        self.trained_samples = 0
        self._last: dict[int, float] = {}

    def _fit(self, client: Client) -> FitReport:
        """Training fit of the device model; its flash must also hold the public set."""
        report = self.ctx.training_fit(self.specs[client.id], client.profile)
        flash = report.flash_bytes + self.public_bytes
        if flash <= client.profile.flash_bytes:
            return report
        reason = (
            f"model + public set {format_bytes(flash)} > flash "
            f"{format_bytes(client.profile.flash_bytes)}"
        )
        return FitReport(
            fits=False,
            reason="; ".join(r for r in (report.reason, reason) if r),
            flash_bytes=flash,
            flash_capacity_bytes=client.profile.flash_bytes,
            sram_bytes=report.sram_bytes,
            sram_capacity_bytes=report.sram_capacity_bytes,
        )

    # -- one round -----------------------------------------------------------------------
    def run_round(self, rnd: int) -> RoundReport:
        ctx, o = self.ctx, self.options
        rd = ctx.round(rnd, self.pool)
        downs: dict[int, Payload] = {}
        for c in rd.participants:
            items: list[tuple[str, int]] = []
            if c.id not in self.has_public:
                items.append(("public-set", self.public_bytes))
            if self.consensus is not None:
                items.append(("consensus-logits", self.consensus.nbytes))
            downs[c.id] = items
        active = rd.download(downs)
        self.has_public.update(c.id for c in rd.participants if rd.dropped.get(c.id) != "outage")
        tasks = [
            DistillTask(
                client=c.id,
                seed=ctx.task_seed(rnd, c.id),
                spec=self.specs[c.id],
                weights=self.weights[c.id],
                indices=self.local_idx[c.id],
                public=self.public,
                consensus=self.consensus,
                settings=ctx.settings,
                digest_epochs=o.digest_epochs,
                temperature=o.temperature,
            )
            for c in active
        ]
        results = {r.client: r for r in ctx.backend.map(distill_client, tasks)}
        n_pub = len(self.public)
        digest = n_pub * o.digest_epochs if self.consensus is not None else 0
        ups: dict[int, Payload] = {}
        for c in active:
            r = results[c.id]
            self.weights[c.id] = r.weights
            prof = ctx.profile(self.specs[c.id])
            samples = r.num_samples * ctx.settings.epochs + digest
            self.trained_samples += samples
            rd.compute(c, Train(prof, samples), what="local-train")
            rd.compute(c, Infer(prof, batch=n_pub, dtype="fp32"), what="public-logits")
            ups[c.id] = [("public-logits", r.logits.nbytes)]
        kept = rd.upload(ups)
        if kept:
            self.server_round(rd, [results[c.id] for c in kept])
        losses = [r.loss for r in results.values()]
        return rd.report(train_loss=float(np.mean(losses)) if losses else None)

    def server_round(self, rd: Round, arrived: list[DistillResult]) -> None:
        """Average the devices' logits, distil them into the large model, set the consensus."""
        ctx, o = self.ctx, self.options
        updates = [Update.full(r.client, [r.logits], r.num_samples) for r in arrived]
        base = [np.zeros_like(arrived[0].logits)]
        teacher = rd.aggregate(updates, base=base, what="ensemble")[0]
        gen = seeded(ctx.task_seed(rd.rnd, SERVER_TASK), threads=ctx.config.engine.threads)
        model = build(self.server_spec, self.server_weights)
        x_pub = ctx.dataset.x_train[self.public]
        train_supervised(
            model,
            tensor(x_pub),
            None,
            settings=self.server_settings,
            gen=gen,
            teacher=tensor(teacher),
            kd_weight=1.0,
            temperature=o.temperature,
        )
        self.server_weights = get_weights(model)
        server_logits = predict_logits(model, x_pub)
        self.consensus = server_logits if o.consensus == "server" else teacher
        n = len(self.public)
        rd.server(Train(self.server_profile, n * o.server_epochs), what="server-distill")
        rd.server(Infer(self.server_profile, batch=n, dtype="fp32"), what="server-logits")

    # -- evaluation and state ------------------------------------------------------------
    def evaluate(self) -> dict[str, float | None]:
        ctx = self.ctx
        x, y = ctx.dataset.x_test, ctx.dataset.y_test
        per = {c.id: evaluate(self.specs[c.id], self.weights[c.id], x, y) for c in self.pool}
        sizes = {c.id: len(self.local_idx[c.id]) for c in ctx.clients}
        self._last = {cid: acc for cid, (acc, _) in per.items()}
        return {
            **device_metrics(per, sizes),
            "large_accuracy": evaluate(self.server_spec, self.server_weights, x, y)[0],
        }

    def state(self) -> dict[str, Any]:
        return {
            "weights": self.weights,
            "server_weights": self.server_weights,
            "consensus": self.consensus,
            "has_public": sorted(self.has_public),
            "trained_samples": self.trained_samples,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.weights = state["weights"]
        self.server_weights = state["server_weights"]
        self.consensus = state["consensus"]
        self.has_public = set(state["has_public"])
        self.trained_samples = state["trained_samples"]

    def summary_extras(self) -> dict[str, Any]:
        return {
            "device_models": device_models(self.ctx, self.specs),
            "server_model": {
                "model": self.server_spec.name,
                "options": self.server_spec.options,
                "params": self.server_profile.params,
            },
            "public_samples": len(self.public),
            "public_set_bytes": self.public_bytes,
            "accuracy_by_profile": by_profile(self.ctx, self._last),
            "device_train_samples": self.trained_samples,
        }
