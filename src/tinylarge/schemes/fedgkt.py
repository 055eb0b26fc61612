"""FedGKT: group knowledge transfer between tiny device extractors and a large server model.

He, Annavaram and Avestimehr, "Group Knowledge Transfer: Federated Learning of
Large CNNs at the Edge", NeurIPS 2020, https://arxiv.org/abs/2007.14513
(Algorithm 1), with the defaults of its reference implementation (FedML,
``fedml_api/distributed/fedgkt``). Each device holds a small model cut in two: a
feature extractor (the first ``extractor_layers`` children; by default up to the
second conv/linear layer, as the reference's ResNet-8 whose extractor is its first
conv stage) and a small classifier head. Every round a device

1. downloads the server's logits on its samples from the previous round,
2. trains extractor and head on its data with cross-entropy plus ``alpha``
   times the distillation loss to those logits (temperature ``temperature``,
   scaled by ``T^2``), keeping its optimizer state from round to round,
3. runs its extractor over its data and uploads the features, its own logits
   and the labels (``feature_dtype`` on the air).

The server trains the large model (``server_model``; by default ``cnn-large``
on image-shaped features, a wide ``mlp`` on vectors) for ``server_epochs`` over
all uploaded features with its own optimizer, kept across rounds, on
cross-entropy plus ``server_kd_weight`` x the distillation loss to the devices'
logits, then computes its logits on every device's features for the next round.
Defaults are the reference's: 20 server epochs, Adam (AMSGrad) at 1e-3 with
weight decay 1e-4, temperature 3, ``alpha`` 1, and no server-side distillation
(``--whether_distill_on_the_server 0``; the paper's loss has it at weight 1, which
under label skew teaches the server each device's label prior, see
docs/knowledge_transfer.md). The devices' optimizer is the run's ``training``
section (the reference: Adam at 1e-3 on both sides). Device compute is the small
model's training and one forward pass, billed to each device's profile; server
training and inference are billed to the server. Device models may differ per
profile or tier (``client_models``) if their extractors output one feature shape.

``accuracy`` is the sample-weighted mean test accuracy of the devices' own
models; ``large_accuracy`` that of the large model on each device's test
features (that device's current extractor, then the server model), weighted
the same way.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tinylarge.errors import TinylargeError
from tinylarge.hardware.cost import inference_cost, training_cost
from tinylarge.hardware.fit import FitReport
from tinylarge.models.profile import ModelProfile
from tinylarge.schemes import _kd
from tinylarge.schemes._gkt import (
    GKTResult,
    GKTTask,
    OptimizerState,
    ServerSettings,
    default_cut,
    gkt_client,
    server_optimizer,
    split,
    train_server,
)
from tinylarge.schemes._kd import ModelChoice
from tinylarge.schemes.base import RoundReport, Scheme, register_scheme
from tinylarge.schemes.fedavg import weighted_average
from tinylarge.sim.client import FitResult, Weights, get_weights
from tinylarge.sim.context import Client


class FedGKTOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    #: Device model per profile id or tier (default: the config's model).
    client_models: dict[str, ModelChoice] = {}
    #: Children of the device model that form the extractor (None: up to the 2nd weight layer).
    extractor_layers: Annotated[int, Field(ge=1)] | None = None
    #: The large server model over features (None: cnn-large for images, mlp for vectors).
    server_model: ModelChoice | None = None
    #: Server epochs over all uploaded features per round (FedML's runs: 20).
    server_epochs: Annotated[int, Field(ge=1)] = 20
    #: Server mini-batch size (the server is not memory-bound like the devices).
    server_batch_size: Annotated[int, Field(ge=1)] = 64
    #: Server optimizer: Adam with AMSGrad, or SGD with Nesterov momentum 0.9 (as FedML's).
    server_optimizer: Literal["adam", "sgd"] = "adam"
    server_lr: Annotated[float, Field(gt=0)] = 1e-3
    server_weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    #: Weight of the distillation to the devices' logits in the server's loss: 0 as the
    #: reference implementation, 1 as the paper's equation.
    server_kd_weight: Annotated[float, Field(ge=0)] = 0.0
    #: Weight of the distillation to the server's logits in the devices' loss.
    alpha: Annotated[float, Field(ge=0)] = 1.0
    #: Distillation temperature, both directions (reference: 3).
    temperature: Annotated[float, Field(gt=0)] = 3.0
    #: Precision of the uploaded features.
    feature_dtype: Literal["float32", "float16"] = "float32"
    #: Also average the extractors of devices with one architecture every round, sent both
    #: ways (a FedAvg of the extractor; not in the original FedGKT, which exchanges no
    #: weights): keeps the features the server reads alike across devices under label skew.
    sync_extractor: bool = False

    _models = field_validator("client_models")(_kd.check_model_map)


@register_scheme
class FedGKT(Scheme):
    """Tiny extractors on devices, a large model on the server, logits both ways."""

    name = "fedgkt"
    Options = FedGKTOptions

    @property
    def opts(self) -> FedGKTOptions:
        assert isinstance(self.options, FedGKTOptions)
        return self.options

    def setup(self) -> None:
        ctx, o = self.ctx, self.opts
        self.specs = {c.id: _kd.spec_for(ctx, c.profile, o.client_models) for c in ctx.clients}
        self.cuts: dict[int, int] = {}
        shapes: set[tuple[int, ...]] = set()
        for c in ctx.clients:
            model = self.specs[c.id].build()
            self.cuts[c.id] = o.extractor_layers or default_cut(model)
            extractor, _ = split(model, self.cuts[c.id])
            with torch.no_grad():
                shapes.add(
                    tuple(extractor.eval()(torch.zeros((1, *ctx.spec.input_shape))).shape[1:])
                )
        if len(shapes) != 1:
            raise TinylargeError(
                f"FedGKT device extractors must output one feature shape, got {sorted(shapes)}; "
                "adjust client_models or extractor_layers"
            )
        self.feature_shape = shapes.pop()
        choice = o.server_model or _kd.default_server_model(self.feature_shape)
        self.server_spec = _kd.spec_of(
            choice, input_shape=self.feature_shape, num_classes=ctx.spec.num_classes
        )
        self.server_settings = ServerSettings(
            optimizer=o.server_optimizer,
            lr=o.server_lr,
            weight_decay=o.server_weight_decay,
            batch_size=o.server_batch_size,
            epochs=o.server_epochs,
            kd_weight=o.server_kd_weight,
            temperature=o.temperature,
        )
        self.server_profile = _kd.profile_spec(
            self.server_spec,
            batch_size=o.server_batch_size,
            optimizer="adam" if o.server_optimizer == "adam" else "sgd-momentum",
        )
        self.fits: dict[str, FitReport] = {}
        for c in ctx.clients:
            self.fits.setdefault(c.profile.id, _kd.training_fit(ctx, self.specs[c.id], c.profile))
        _kd.require_any(ctx, self.fits, what="its FedGKT device model")
        self.pool = [c for c in ctx.clients if self.fits[c.profile.id].fits]
        # one initialisation per architecture, as in the reference implementation: extractors
        # that start alike give the server features it can read across devices
        self.weights = {c.id: _kd.init_weights(self.specs[c.id], seed=ctx.seed) for c in self.pool}
        self.server_weights = _kd.init_weights(self.server_spec, seed=ctx.seed)
        #: Optimizer states, kept across rounds on their nodes as in the reference implementation.
        self.opt_states: dict[int, OptimizerState] = {}
        self.server_opt_state: OptimizerState | None = None
        self.group = {c.id: f"{self.specs[c.id]}/{self.cuts[c.id]}" for c in self.pool}
        #: Per architecture: indices of the extractor's tensors in the state and their average.
        self.ext_index: dict[str, list[int]] = {}
        self.extractors: dict[str, Weights] = {}
        for c in self.pool:
            keys = list(self.specs[c.id].build().state_dict())
            index = [i for i, k in enumerate(keys) if int(k.split(".")[0]) < self.cuts[c.id]]
            self.ext_index[self.group[c.id]] = index
            self.extractors[self.group[c.id]] = [self.weights[c.id][i] for i in index]
        self.server_logits: dict[int, np.ndarray] = {}
        self.trained_samples = 0
        self._last: tuple[dict[int, float], dict[int, float]] = ({}, {})

    def profile_of(self, client: Client) -> ModelProfile:
        ctx = self.ctx
        return _kd.profile_spec(
            self.specs[client.id],
            batch_size=ctx.settings.batch_size,
            optimizer=_kd.optimizer_name(ctx.settings),
        )

    # -- one round -----------------------------------------------------------------------
    def run_round(self, rnd: int) -> RoundReport:
        ctx, o = self.ctx, self.opts
        participants = ctx.sample_clients(rnd, pool=self.pool)
        ex = _kd.Exchange(ctx, rnd)
        downs: dict[int, list[tuple[str, int]]] = {c.id: [] for c in participants}
        for c in participants:
            if c.id in self.server_logits:
                downs[c.id].append(("server-logits", self.server_logits[c.id].nbytes))
            if o.sync_extractor and rnd > 0:
                downs[c.id].append(("extractor", _kd.nbytes(self.extractors[self.group[c.id]])))
        active = ex.download(participants, downs)
        tasks = [
            GKTTask(
                client=c.id,
                seed=ctx.task_seed(rnd, c.id),
                spec=self.specs[c.id],
                cut=self.cuts[c.id],
                weights=self.start_weights(c),
                opt_state=self.opt_states.get(c.id),
                indices=c.indices,
                settings=ctx.settings,
                server_logits=self.server_logits.get(c.id),
                alpha=o.alpha,
                temperature=o.temperature,
                feature_dtype=o.feature_dtype,
            )
            for c in active
        ]
        results = {r.client: r for r in ctx.backend.map(gkt_client, tasks)}
        ups: dict[int, list[tuple[str, int]]] = {}
        for c in active:
            r = results[c.id]
            self.weights[c.id] = r.weights
            self.opt_states[c.id] = r.opt_state
            samples = r.num_samples * ctx.settings.epochs
            self.trained_samples += samples
            prof = self.profile_of(c)
            ex.compute(c, training_cost(prof, c.profile, samples=samples), what="local-train")
            fwd = inference_cost(prof, c.profile, dtype="fp32", batch=r.num_samples)
            ex.compute(c, fwd, what="extract-features")
            ups[c.id] = [
                ("features", r.features.nbytes),
                ("logits", r.logits.nbytes),
                ("labels", r.labels.nbytes),
            ]
            if o.sync_extractor:
                ext = [r.weights[i] for i in self.ext_index[self.group[c.id]]]
                ups[c.id].append(("extractor", _kd.nbytes(ext)))
        kept = ex.upload(active, ups)
        if o.sync_extractor:
            self.average_extractors(rnd, [results[c.id] for c in kept])
        server_s = self.server_round(rnd, [results[c.id] for c in kept]) if kept else 0.0
        losses = [r.loss for r in results.values()]
        return RoundReport(
            latency_s=ex.end_s(kept) + server_s,
            participants=len(participants),
            dropped=ex.dropped,
            train_loss=float(np.mean(losses)) if losses else None,
        )

    def start_weights(self, client: Client) -> Weights:
        """The device's model; with ``sync_extractor``, under the averaged extractor."""
        weights = list(self.weights[client.id])
        if self.opts.sync_extractor:
            group = self.group[client.id]
            for i, w in zip(self.ext_index[group], self.extractors[group], strict=True):
                weights[i] = w
        return weights

    def average_extractors(self, rnd: int, arrived: list[GKTResult]) -> None:
        """Sample-weighted average of the uploaded extractors, per architecture."""
        by_group: dict[str, list[GKTResult]] = {}
        for r in arrived:
            by_group.setdefault(self.group[r.client], []).append(r)
        for group, results in sorted(by_group.items()):
            index = self.ext_index[group]
            fits = [
                FitResult(r.client, [r.weights[i] for i in index], r.num_samples, r.loss)
                for r in results
            ]
            self.extractors[group] = weighted_average(fits)
            work = sum(int(w.size) for w in self.extractors[group]) * len(results)
            self.ctx.bill_server(rnd, work, what="aggregate-extractor")

    def server_round(self, rnd: int, arrived: list[GKTResult]) -> float:
        """Train the large model on the uploaded features; compute logits to send back."""
        ctx, o = self.ctx, self.opts
        gen = _kd.seeded(ctx.task_seed(rnd, 10**6), threads=ctx.config.engine.threads)
        model = _kd.build(self.server_spec, self.server_weights)
        opt = server_optimizer(model, self.server_settings)
        if self.server_opt_state is not None:
            opt.load_state_dict(self.server_opt_state)
        feats = _kd.tensor(np.concatenate([r.features for r in arrived]).astype(np.float32))
        labels = _kd.tensor(np.concatenate([r.labels for r in arrived]).astype(np.int64))
        teacher = _kd.tensor(np.concatenate([r.logits for r in arrived]))
        train_server(model, opt, feats, labels, teacher, settings=self.server_settings, gen=gen)
        self.server_opt_state = copy.deepcopy(opt.state_dict())
        self.server_weights = get_weights(model)
        for r in arrived:
            self.server_logits[r.client] = _kd.logits_of(model, r.features.astype(np.float32))
        n = len(feats)
        train = training_cost(self.server_profile, ctx.server, samples=n * o.server_epochs)
        infer = inference_cost(self.server_profile, ctx.server, dtype="fp32", batch=n)
        return ctx.bill_server_compute(rnd, train, what="server-train") + ctx.bill_server_compute(
            rnd, infer, what="server-logits"
        )

    # -- evaluation and state ------------------------------------------------------------
    def evaluate(self) -> dict[str, float | None]:
        ctx = self.ctx
        x, y = ctx.dataset.x_test, ctx.dataset.y_test
        torch.set_num_threads(1)
        server = _kd.build(self.server_spec, self.server_weights)
        device_acc: dict[int, float] = {}
        large_acc: dict[int, float] = {}
        losses: dict[int, float] = {}
        for c in self.pool:
            extractor, head = split(
                _kd.build(self.specs[c.id], self.weights[c.id]), self.cuts[c.id]
            )
            feats = _kd.logits_of(extractor, x)
            out = _kd.logits_of(head, feats)
            device_acc[c.id] = _kd.accuracy(out, y)
            losses[c.id] = _kd.mean_loss(out, y)
            large_acc[c.id] = _kd.accuracy(_kd.logits_of(server, feats), y)
        sizes = {c.id: len(c.indices) for c in ctx.clients}
        self._last = (device_acc, large_acc)
        return {
            "accuracy": _kd.weighted_mean(device_acc, sizes),
            "loss": _kd.weighted_mean(losses, sizes),
            "large_accuracy": _kd.weighted_mean(large_acc, sizes),
        }

    def state(self) -> dict[str, Any]:
        return {
            "weights": self.weights,
            "server_weights": self.server_weights,
            "server_logits": self.server_logits,
            "server_opt_state": self.server_opt_state,
            "opt_states": self.opt_states,
            "extractors": self.extractors,
            "trained_samples": self.trained_samples,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.weights = state["weights"]
        self.server_weights = state["server_weights"]
        self.server_logits = state["server_logits"]
        self.server_opt_state = state["server_opt_state"]
        self.opt_states = state["opt_states"]
        self.extractors = state["extractors"]
        self.trained_samples = state["trained_samples"]

    def summary_extras(self) -> dict[str, Any]:
        device, large = self._last
        return {
            **_kd.fits_summary(self.ctx, self.fits),
            "device_models": _kd.device_models(
                self.ctx, self.specs, self.fits, extractor_layers=self.cuts
            ),
            "feature_shape": list(self.feature_shape),
            "server_model": {
                "model": self.server_spec.name,
                "options": self.server_spec.options,
                "params": self.server_profile.params,
                "macs": self.server_profile.macs,
            },
            "accuracy_by_profile": _kd.by_profile(self.ctx, device),
            "large_accuracy_by_profile": _kd.by_profile(self.ctx, large),
            "device_train_samples": self.trained_samples,
        }
