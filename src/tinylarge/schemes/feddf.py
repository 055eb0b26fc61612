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
counts (the ensemble), distils that ensemble into the large model
(``server_model``) for ``server_epochs``, and returns as consensus either the
large model's logits (``consensus: server``) or the ensemble's
(``consensus: ensemble``). All training on devices is billed to their
profiles, all distillation at the server to the server.

``accuracy`` is the sample-weighted mean test accuracy of the devices' models;
``large_accuracy`` the large model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tinylarge.hardware.cost import inference_cost, training_cost
from tinylarge.hardware.fit import FitReport, format_bytes
from tinylarge.models.profile import ModelProfile
from tinylarge.schemes import _kd
from tinylarge.schemes._kd import ModelChoice
from tinylarge.schemes.base import RoundReport, Scheme, register_scheme
from tinylarge.sim.client import ModelSpec, TrainSettings, Weights, evaluate, get_weights
from tinylarge.sim.context import Client


class FedDFOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    #: Device model per profile id or tier (default: the config's model).
    client_models: dict[str, ModelChoice] = {}
    #: The large server model (None: cnn-large for images, a wide mlp otherwise).
    server_model: ModelChoice | None = None
    #: Share of the training set held by the server as the unlabeled public set.
    public_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.1
    #: Device epochs of distillation to the consensus on the public set per round.
    digest_epochs: Annotated[int, Field(ge=0)] = 1
    #: Server epochs of ensemble distillation per round.
    server_epochs: Annotated[int, Field(ge=1)] = 10
    #: Server mini-batch size (the server is not memory-bound like the devices).
    server_batch_size: Annotated[int, Field(ge=1)] = 64
    #: Server learning rate (None: ``training.lr``); FedDF distils with Adam at 1e-3.
    server_lr: Annotated[float, Field(gt=0)] | None = 1e-3
    #: Server optimizer (None: ``training.optimizer``).
    server_optimizer: Literal["sgd", "momentum", "adam"] | None = "adam"
    temperature: Annotated[float, Field(gt=0)] = 3.0
    #: What the server returns: the large model's logits or the devices' ensemble.
    consensus: Literal["server", "ensemble"] = "server"

    _models = field_validator("client_models")(_kd.check_model_map)


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
    gen = _kd.seeded(task.seed)
    model = _kd.build(task.spec, task.weights)
    x_pub = public_inputs(x, task.public)
    if task.consensus is not None and task.digest_epochs > 0:
        _kd.train_kd(
            model,
            _kd.tensor(x_pub),
            None,
            _kd.tensor(task.consensus),
            settings=task.settings,
            epochs=task.digest_epochs,
            alpha=1.0,
            temperature=task.temperature,
            gen=gen,
        )
    loss = _kd.train_kd(
        model,
        _kd.tensor(x[task.indices]),
        _kd.tensor(y[task.indices]),
        None,
        settings=task.settings,
        epochs=task.settings.epochs,
        alpha=0.0,
        temperature=task.temperature,
        gen=gen,
    )
    logits = _kd.logits_of(model, x_pub)
    return DistillResult(task.client, get_weights(model), logits, len(task.indices), loss)


@register_scheme
class FedDF(Scheme):
    """Heterogeneous device models exchange public-set logits; the server distils a large model."""

    name = "feddf"
    Options = FedDFOptions

    @property
    def opts(self) -> FedDFOptions:
        assert isinstance(self.options, FedDFOptions)
        return self.options

    def setup(self) -> None:
        ctx, o = self.ctx, self.opts
        self.public, self.local_idx = _kd.hold_out(ctx, fraction=o.public_fraction)
        self.public_bytes = int(ctx.dataset.x_train[self.public].astype(np.float16).nbytes)
        self.specs = {c.id: _kd.spec_for(ctx, c.profile, o.client_models) for c in ctx.clients}
        self.fits: dict[str, FitReport] = {}
        for c in ctx.clients:
            if c.profile.id not in self.fits:
                self.fits[c.profile.id] = self._fit(c)
        _kd.require_any(ctx, self.fits, what="its device model with the public set")
        self.pool = [c for c in ctx.clients if self.fits[c.profile.id].fits]
        choice = o.server_model or _kd.default_server_model(ctx.spec.input_shape)
        self.server_spec = _kd.spec_of(
            choice, input_shape=ctx.spec.input_shape, num_classes=ctx.spec.num_classes
        )
        self.server_settings = _kd.server_settings(
            ctx, batch_size=o.server_batch_size, lr=o.server_lr, optimizer=o.server_optimizer
        )
        self.server_profile = _kd.profile_spec(
            self.server_spec,
            batch_size=o.server_batch_size,
            optimizer=_kd.optimizer_name(self.server_settings),
        )
        self.weights = {
            c.id: _kd.init_weights(self.specs[c.id], seed=ctx.task_seed(-1, c.id))
            for c in self.pool
        }
        self.server_weights = _kd.init_weights(self.server_spec, seed=ctx.seed)
        self.consensus: np.ndarray | None = None
        self.has_public: set[int] = set()
        self.trained_samples = 0
        self._last: dict[int, float] = {}

    def _profile(self, spec: ModelSpec) -> ModelProfile:
        s = self.ctx.settings
        return _kd.profile_spec(spec, batch_size=s.batch_size, optimizer=_kd.optimizer_name(s))

    def _fit(self, client: Client) -> FitReport:
        """Training fit of the device model; its flash must also hold the public set."""
        report = _kd.training_fit(self.ctx, self.specs[client.id], client.profile)
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
        ctx, o = self.ctx, self.opts
        participants = ctx.sample_clients(rnd, pool=self.pool)
        ex = _kd.Exchange(ctx, rnd)
        downs: dict[int, _kd.Payload] = {}
        for c in participants:
            items: list[tuple[str, int]] = []
            if c.id not in self.has_public:
                items.append(("public-set", self.public_bytes))
            if self.consensus is not None:
                items.append(("consensus-logits", self.consensus.nbytes))
            downs[c.id] = items
        active = ex.download(participants, downs)
        self.has_public.update(c.id for c in participants if ex.dropped.get(c.id) != "outage")
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
        ups: dict[int, _kd.Payload] = {}
        for c in active:
            r = results[c.id]
            self.weights[c.id] = r.weights
            prof = self._profile(self.specs[c.id])
            samples = r.num_samples * ctx.settings.epochs + digest
            self.trained_samples += samples
            ex.compute(c, training_cost(prof, c.profile, samples=samples), what="local-train")
            ex.compute(
                c, inference_cost(prof, c.profile, dtype="fp32", batch=n_pub), what="public-logits"
            )
            ups[c.id] = [("public-logits", r.logits.nbytes)]
        kept = ex.upload(active, ups)
        server_s = self.server_round(rnd, [results[c.id] for c in kept]) if kept else 0.0
        losses = [r.loss for r in results.values()]
        return RoundReport(
            latency_s=ex.end_s(kept) + server_s,
            participants=len(participants),
            dropped=ex.dropped,
            train_loss=float(np.mean(losses)) if losses else None,
        )

    def server_round(self, rnd: int, arrived: list[DistillResult]) -> float:
        """Average the devices' logits, distil them into the large model, set the consensus."""
        ctx, o = self.ctx, self.opts
        total = sum(r.num_samples for r in arrived)
        ensemble = np.zeros_like(arrived[0].logits, dtype=np.float64)
        for r in arrived:
            ensemble += (r.num_samples / total) * r.logits.astype(np.float64)
        teacher = ensemble.astype(np.float32)
        gen = _kd.seeded(ctx.task_seed(rnd, 10**6), threads=ctx.config.engine.threads)
        model = _kd.build(self.server_spec, self.server_weights)
        x_pub = ctx.dataset.x_train[self.public]
        _kd.train_kd(
            model,
            _kd.tensor(x_pub),
            None,
            _kd.tensor(teacher),
            settings=self.server_settings,
            epochs=o.server_epochs,
            alpha=1.0,
            temperature=o.temperature,
            gen=gen,
        )
        self.server_weights = get_weights(model)
        server_logits = _kd.logits_of(model, x_pub)
        self.consensus = server_logits if o.consensus == "server" else teacher
        n = len(self.public)
        train = training_cost(self.server_profile, ctx.server, samples=n * o.server_epochs)
        infer = inference_cost(self.server_profile, ctx.server, dtype="fp32", batch=n)
        work = n * ctx.spec.num_classes * len(arrived)
        return (
            ctx.bill_server(rnd, work, what="ensemble")
            + ctx.bill_server_compute(rnd, train, what="server-distill")
            + ctx.bill_server_compute(rnd, infer, what="server-logits")
        )

    # -- evaluation and state ------------------------------------------------------------
    def evaluate(self) -> dict[str, float | None]:
        ctx = self.ctx
        x, y = ctx.dataset.x_test, ctx.dataset.y_test
        per = {c.id: evaluate(self.specs[c.id], self.weights[c.id], x, y) for c in self.pool}
        sizes = {c.id: len(self.local_idx[c.id]) for c in ctx.clients}
        self._last = {cid: acc for cid, (acc, _) in per.items()}
        return {
            **_kd.device_metrics(per, sizes),
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
            **_kd.fits_summary(self.ctx, self.fits),
            "device_models": _kd.device_models(self.ctx, self.specs, self.fits),
            "server_model": {
                "model": self.server_spec.name,
                "options": self.server_spec.options,
                "params": self.server_profile.params,
            },
            "public_samples": len(self.public),
            "public_set_bytes": self.public_bytes,
            "accuracy_by_profile": _kd.by_profile(self.ctx, self._last),
            "device_train_samples": self.trained_samples,
        }
