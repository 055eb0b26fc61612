"""FedGKT: group knowledge transfer between tiny device extractors and a large server model.

He, Annavaram and Avestimehr, "Group Knowledge Transfer: Federated Learning of
Large CNNs at the Edge", NeurIPS 2020, https://arxiv.org/abs/2007.14513
(Algorithm 1), with the defaults of its reference implementation (FedML,
``fedml_api/distributed/fedgkt``). Each device holds a small model cut in two
(:mod:`tinylarge.models.cuts`): a feature extractor (the first ``extractor_layers``
children; by default :func:`~tinylarge.models.cuts.extractor_cut`, up to the
second conv/linear layer, as the reference's ResNet-8 whose extractor is its
first conv stage) and a small classifier head. Every round a device

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
model's training and one forward pass, on each device's clock; server training
and inference are the server's work after the device phase. Device models may
differ per profile or tier (``client_models``) if their extractors output one
feature shape. With ``sync_extractor`` the extractors of one architecture are
averaged every round (:meth:`tinylarge.sim.rounds.Round.aggregate`).

``accuracy`` is the sample-weighted mean test accuracy of the devices' own
models; ``large_accuracy`` that of the large model on each device's test
features (that device's current extractor, then the server model), weighted
the same way.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from tinylarge.errors import TinylargeError
from tinylarge.hardware.cost import Infer, Train
from tinylarge.models.weights import Weights, get_weights, nbytes
from tinylarge.schemes._device_models import (
    SERVER_TASK,
    by_profile,
    default_server_model,
    device_models,
    spec_for,
    spec_of,
    weighted_mean,
)
from tinylarge.schemes._gkt import (
    GKTResult,
    GKTTask,
    OptimizerState,
    cut_of,
    gkt_client,
    server_settings,
    split,
    train_server,
)
from tinylarge.schemes.base import Scheme, register_scheme
from tinylarge.schemes.options.transfer import FedGKTOptions
from tinylarge.sim.aggregation import Update
from tinylarge.sim.context import Client
from tinylarge.sim.rounds import Payload, Round, RoundReport
from tinylarge.sim.training import (
    accuracy,
    build,
    init_weights,
    make_optimizer,
    mean_cross_entropy,
    predict_logits,
    seeded,
    tensor,
)


@register_scheme
class FedGKT(Scheme[FedGKTOptions]):
    """Tiny extractors on devices, a large model on the server, logits both ways."""

    name = "fedgkt"

    def setup(self) -> None:
        ctx, o = self.ctx, self.options
        self.specs = {c.id: spec_for(ctx, c.profile, o.client_models) for c in ctx.clients}
        self.cuts: dict[int, int] = {}
        shapes: set[tuple[int, ...]] = set()
        for c in ctx.clients:
            spec = self.specs[c.id]
            model = spec.build()
            self.cuts[c.id] = cut_of(model, spec, o.extractor_layers)
            extractor, _ = split(model, self.cuts[c.id])
            with torch.no_grad():
                out = extractor.eval()(torch.zeros((1, *ctx.spec.input_shape)))
            shapes.add(tuple(out.shape[1:]))
        if len(shapes) != 1:
            raise TinylargeError(
                f"FedGKT device extractors must output one feature shape, got {sorted(shapes)}; "
                "adjust client_models or extractor_layers"
            )
        self.feature_shape = shapes.pop()
        choice = o.server_model or default_server_model(self.feature_shape)
        self.server_spec = spec_of(
            choice, input_shape=self.feature_shape, num_classes=ctx.spec.num_classes
        )
        self.server_settings = server_settings(o)
        self.server_profile = ctx.profile(
            self.server_spec,
            batch_size=o.server_batch_size,
            optimizer=self.server_settings.optimizer,
        )
        self.pool = ctx.admit(
            {c.id: ctx.training_fit(self.specs[c.id], c.profile) for c in ctx.clients},
            what="train its FedGKT device model",
            hint="choose a smaller device model (scheme.options.client_models)",
        )
        # one initialisation per architecture, as in the reference implementation: extractors
        # that start alike give the server features it can read across devices
        self.weights = {c.id: init_weights(self.specs[c.id], seed=ctx.seed) for c in self.pool}
        self.server_weights = init_weights(self.server_spec, seed=ctx.seed)
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

    # -- one round -----------------------------------------------------------------------
    def run_round(self, rnd: int) -> RoundReport:
        ctx, o = self.ctx, self.options
        rd = ctx.round(rnd, self.pool)
        downs: dict[int, Payload] = {}
        for c in rd.participants:
            items: list[tuple[str, int]] = []
            if c.id in self.server_logits:
                items.append(("server-logits", self.server_logits[c.id].nbytes))
            if o.sync_extractor and rnd > 0:
                items.append(("extractor", nbytes(self.extractors[self.group[c.id]])))
            downs[c.id] = items
        active = rd.download(downs)
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
        ups: dict[int, Payload] = {}
        for c in active:
            r = results[c.id]
            self.weights[c.id] = r.weights
            self.opt_states[c.id] = r.opt_state
            samples = r.num_samples * ctx.settings.epochs
            self.trained_samples += samples
            prof = ctx.profile(self.specs[c.id])
            rd.compute(c, Train(prof, samples), what="local-train")
            rd.compute(c, Infer(prof, batch=r.num_samples, dtype="fp32"), what="extract-features")
            items = [
                ("features", r.features.nbytes),
                ("logits", r.logits.nbytes),
                ("labels", r.labels.nbytes),
            ]
            if o.sync_extractor:
                ext = [r.weights[i] for i in self.ext_index[self.group[c.id]]]
                items.append(("extractor", nbytes(ext)))
            ups[c.id] = items
        kept = rd.upload(ups)
        arrived = [results[c.id] for c in kept]
        if o.sync_extractor:
            self.average_extractors(rd, arrived)
        if arrived:
            self.server_round(rd, arrived)
        losses = [r.loss for r in results.values()]
        return rd.report(train_loss=float(np.mean(losses)) if losses else None)

    def start_weights(self, client: Client) -> Weights:
        """The device's model; with ``sync_extractor``, under the averaged extractor."""
        weights = list(self.weights[client.id])
        if self.options.sync_extractor:
            group = self.group[client.id]
            for i, w in zip(self.ext_index[group], self.extractors[group], strict=True):
                weights[i] = w
        return weights

    def average_extractors(self, rd: Round, arrived: list[GKTResult]) -> None:
        """Sample-weighted average of the uploaded extractors, per architecture."""
        by_group: dict[str, list[GKTResult]] = {}
        for r in arrived:
            by_group.setdefault(self.group[r.client], []).append(r)
        for group, results in sorted(by_group.items()):
            index = self.ext_index[group]
            updates = [
                Update.full(r.client, [r.weights[i] for i in index], r.num_samples) for r in results
            ]
            self.extractors[group] = rd.aggregate(
                updates, base=self.extractors[group], what="aggregate-extractor"
            )

    def server_round(self, rd: Round, arrived: list[GKTResult]) -> None:
        """Train the large model on the uploaded features; compute logits to send back."""
        ctx = self.ctx
        gen = seeded(ctx.task_seed(rd.rnd, SERVER_TASK), threads=ctx.config.engine.threads)
        model = build(self.server_spec, self.server_weights)
        opt = make_optimizer(model, self.server_settings)
        if self.server_opt_state is not None:
            opt.load_state_dict(self.server_opt_state)
        feats = tensor(np.concatenate([r.features for r in arrived]).astype(np.float32))
        labels = tensor(np.concatenate([r.labels for r in arrived]).astype(np.int64))
        teacher = tensor(np.concatenate([r.logits for r in arrived]))
        train_server(model, opt, feats, labels, teacher, options=self.options, gen=gen)
        self.server_opt_state = copy.deepcopy(opt.state_dict())
        self.server_weights = get_weights(model)
        for r in arrived:
            self.server_logits[r.client] = predict_logits(model, r.features.astype(np.float32))
        n = len(feats)
        rd.server(Train(self.server_profile, n * self.server_settings.epochs), what="server-train")
        rd.server(Infer(self.server_profile, batch=n, dtype="fp32"), what="server-logits")

    # -- evaluation and state ------------------------------------------------------------
    def evaluate(self) -> dict[str, float | None]:
        ctx = self.ctx
        x, y = ctx.dataset.x_test, ctx.dataset.y_test
        torch.set_num_threads(1)
        server = build(self.server_spec, self.server_weights)
        device_acc: dict[int, float] = {}
        large_acc: dict[int, float] = {}
        losses: dict[int, float] = {}
        for c in self.pool:
            extractor, head = split(build(self.specs[c.id], self.weights[c.id]), self.cuts[c.id])
            feats = predict_logits(extractor, x)
            out = predict_logits(head, feats)
            device_acc[c.id] = accuracy(out, y)
            losses[c.id] = mean_cross_entropy(out, y)
            large_acc[c.id] = accuracy(predict_logits(server, feats), y)
        sizes = {c.id: len(c.indices) for c in ctx.clients}
        self._last = (device_acc, large_acc)
        return {
            "accuracy": weighted_mean(device_acc, sizes),
            "loss": weighted_mean(losses, sizes),
            "large_accuracy": weighted_mean(large_acc, sizes),
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
            "device_models": device_models(self.ctx, self.specs, extractor_layers=self.cuts),
            "feature_shape": list(self.feature_shape),
            "server_model": {
                "model": self.server_spec.name,
                "options": self.server_spec.options,
                "params": self.server_profile.params,
                "macs": self.server_profile.macs,
            },
            "accuracy_by_profile": by_profile(self.ctx, device),
            "large_accuracy_by_profile": by_profile(self.ctx, large),
            "device_train_samples": self.trained_samples,
        }
