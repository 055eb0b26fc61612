"""Transfer learning (TL): a model pre-trained at the server, fine-tuned on each device.

The survey's LargeML -> TinyML transfer (Vu et al., arXiv 2505.15854, Sec. on
transfer learning; Pan and Yang, "A Survey on Transfer Learning", IEEE TKDE
2010, https://doi.org/10.1109/TKDE.2009.191): the server trains the device
model on data it holds itself (``server_fraction`` of the training set, never
seen by a device; optionally only ``server_classes``, a source task), ships it
once, and every device fine-tunes the part of it that fits its SRAM
(:mod:`tinylarge.schemes._parts`) on its private data, one round of local
epochs at a time. Nothing is aggregated: each device keeps its own model and
only reports its training loss and sample count (8 bytes) per round.

``accuracy`` is the sample-weighted mean test accuracy of the devices'
fine-tuned models; ``large_accuracy`` that of the server's pre-trained model.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from tinylarge.hardware.cost import training_cost
from tinylarge.hardware.fit import FitReport, check_fit
from tinylarge.schemes import _kd
from tinylarge.schemes._parts import (
    Part,
    PartMode,
    PartResult,
    PartTask,
    candidate_parts,
    choose_part,
    train_part,
)
from tinylarge.schemes.base import RoundReport, Scheme, register_scheme
from tinylarge.sim.client import Weights, get_weights
from tinylarge.sim.context import Client

#: Bytes of a device's per-round report: its mean loss (float32) and sample count (int32).
TELEMETRY_BYTES = 8


class TLOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    #: Share of the training set the server holds (and devices do not).
    server_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.1
    #: Pre-train on these classes only (a source task); None: all classes.
    server_classes: list[int] | None = None
    #: Epochs of server pre-training over its data.
    pretrain_epochs: Annotated[int, Field(ge=1)] = 5
    #: Which part devices train: the largest that fits (auto), all, the head or the biases.
    part: PartMode = "auto"


@register_scheme
class TransferLearning(Scheme):
    """Server pre-training, then per-device fine-tuning of the part that fits."""

    name = "tl"
    Options = TLOptions

    @property
    def opts(self) -> TLOptions:
        assert isinstance(self.options, TLOptions)
        return self.options

    def setup(self) -> None:
        ctx, o = self.ctx, self.opts
        self.server_idx, self.local_idx = _kd.hold_out(
            ctx, fraction=o.server_fraction, classes=o.server_classes
        )
        optimizer = _kd.optimizer_name(ctx.settings)
        self.candidates = candidate_parts(
            ctx.spec, batch_size=ctx.settings.batch_size, optimizer=optimizer
        )
        self.parts: dict[str, Part | None] = {}
        self.fits: dict[str, FitReport] = {}
        for c in ctx.clients:
            if c.profile.id not in self.fits:
                self.fits[c.profile.id] = self._fit(c)
        _kd.require_any(ctx, self.fits, what=f"any part of model {ctx.spec.name!r}")
        self.pool = [c for c in ctx.clients if self.fits[c.profile.id].fits]
        self.keys = list(ctx.spec.build().state_dict())
        torch.manual_seed(ctx.seed)
        self.pretrained: Weights = get_weights(ctx.spec.build())
        self.pretrained_done = False
        self.personal: dict[int, Weights] = {}
        self.trained_samples = 0
        self._pretrained_accuracy: float | None = None
        self._last: dict[int, float] = {}

    def _fit(self, client: Client) -> FitReport:
        """Does the deployed model fit for inference, and which part can the device train?"""
        part, reason = choose_part(self.candidates, client.profile, mode=self.opts.part)
        self.parts[client.profile.id] = part
        deploy = check_fit(self.ctx.model_profile, client.profile)
        reasons = [r for r in (deploy.reason, reason) if r]
        return FitReport(
            fits=part is not None and deploy.fits,
            reason="; ".join(reasons) or None,
            flash_bytes=deploy.flash_bytes,
            flash_capacity_bytes=deploy.flash_capacity_bytes,
            sram_bytes=part.memory_bytes if part else 0,
            sram_capacity_bytes=client.profile.sram_bytes,
        )

    # -- server pre-training -----------------------------------------------------------
    def pretrain(self, rnd: int) -> float:
        """Train the whole model on the server's data; billed to the server. Its seconds."""
        ctx, o = self.ctx, self.opts
        settings = replace(ctx.settings, epochs=o.pretrain_epochs)
        task = PartTask(
            client=-1,
            seed=ctx.task_seed(rnd, 10**6),
            spec=ctx.spec,
            weights=self.pretrained,
            indices=self.server_idx,
            settings=settings,
            cut=0,
            keys=tuple(self.keys),
        )
        result = train_part(task, ctx.dataset.x_train, ctx.dataset.y_train)
        self.pretrained = self.merge(self.pretrained, result.tensors)
        self.pretrained_done = True
        cost = training_cost(
            ctx.model_profile, ctx.server, samples=len(self.server_idx) * o.pretrain_epochs
        )
        return ctx.bill_server_compute(rnd, cost, what="pretrain")

    def merge(self, weights: Weights, tensors: dict[str, np.ndarray]) -> Weights:
        return [tensors.get(k, w) for k, w in zip(self.keys, weights, strict=True)]

    # -- one round -----------------------------------------------------------------------
    def start_weights(self, client: Client) -> Weights:
        return self.personal.get(client.id, self.pretrained)

    def downloads(self, clients: list[Client]) -> dict[int, _kd.Payload]:
        """The pre-trained model, once, to each device that does not hold it yet."""
        size = _kd.nbytes(self.pretrained)
        return {c.id: [("weights", size)] for c in clients if c.id not in self.personal}

    def delivered(self, rnd: int, clients: list[Client]) -> None:
        """``clients`` got their downloads of round ``rnd``: they hold the pre-trained model."""
        for c in clients:
            self.personal.setdefault(c.id, self.pretrained)

    def uploads(self, results: dict[int, PartResult]) -> dict[int, _kd.Payload]:
        return {cid: [("telemetry", TELEMETRY_BYTES)] for cid in results}

    def train(self, ex: _kd.Exchange, clients: list[Client]) -> dict[int, PartResult]:
        """Local fine-tuning of each client's part on the backend; compute billed."""
        ctx = self.ctx
        tasks = []
        for c in clients:
            part = self.parts[c.profile.id]
            assert part is not None
            tasks.append(
                PartTask(
                    client=c.id,
                    seed=ctx.task_seed(ex.rnd, c.id),
                    spec=ctx.spec,
                    weights=self.start_weights(c),
                    indices=self.local_idx[c.id],
                    settings=ctx.settings,
                    cut=part.cut,
                    keys=part.keys,
                )
            )
        results = ctx.backend.map(train_part, tasks)
        out: dict[int, PartResult] = {}
        for c, r in zip(clients, results, strict=True):
            part = self.parts[c.profile.id]
            assert part is not None
            samples = r.num_samples * ctx.settings.epochs
            ex.compute(c, part.train_cost(c.profile, samples=samples), what="fine-tune")
            self.trained_samples += samples
            out[c.id] = r
        return out

    def aggregate(self, rnd: int, results: dict[int, PartResult], kept: list[Client]) -> float:
        """TL keeps every fine-tuned model on its device; no server work."""
        for cid, r in results.items():
            self.personal[cid] = self.merge(self.start_weights(self.ctx.clients[cid]), r.tensors)
        return 0.0

    def run_round(self, rnd: int) -> RoundReport:
        ctx = self.ctx
        server_s = 0.0 if self.pretrained_done else self.pretrain(rnd)
        participants = ctx.sample_clients(rnd, pool=self.pool)
        ex = _kd.Exchange(ctx, rnd)
        active = ex.download(participants, self.downloads(participants))
        self.delivered(rnd, [c for c in participants if ex.dropped.get(c.id) != "outage"])
        results = self.train(ex, active)
        kept = ex.upload(active, self.uploads(results))
        end = server_s + ex.end_s(kept)
        end += self.aggregate(rnd, results, kept)
        losses = [r.loss for r in results.values()]
        return RoundReport(
            latency_s=end,
            participants=len(participants),
            dropped=ex.dropped,
            train_loss=float(np.mean(losses)) if losses else None,
        )

    # -- evaluation and state ------------------------------------------------------------
    def pretrained_accuracy(self) -> float:
        if self._pretrained_accuracy is None:
            self._pretrained_accuracy = self.ctx.evaluate(self.pretrained)[0]
        return self._pretrained_accuracy

    def device_accuracies(self) -> dict[int, tuple[float, float]]:
        return {cid: self.ctx.evaluate(w) for cid, w in sorted(self.personal.items())}

    def evaluate(self) -> dict[str, float | None]:
        per = self.device_accuracies()
        sizes = {c.id: len(self.local_idx[c.id]) for c in self.ctx.clients}
        self._last = {cid: acc for cid, (acc, _) in per.items()}
        return {
            **_kd.device_metrics(per, sizes),
            "large_accuracy": self.pretrained_accuracy(),
        }

    def state(self) -> dict[str, Any]:
        return {
            "pretrained": self.pretrained,
            "pretrained_done": self.pretrained_done,
            "personal": self.personal,
            "trained_samples": self.trained_samples,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.pretrained = state["pretrained"]
        self.pretrained_done = state["pretrained_done"]
        self.personal = state["personal"]
        self.trained_samples = state["trained_samples"]

    def summary_extras(self) -> dict[str, Any]:
        parts = {
            pid: (p.describe() if p else {"part": None, "reason": self.fits[pid].reason})
            | {"sram_bytes": self.fits[pid].sram_capacity_bytes}
            for pid, p in self.parts.items()
        }
        return {
            **_kd.fits_summary(self.ctx, self.fits),
            "parts": parts,
            "server_samples": len(self.server_idx),
            "pretrained_accuracy": self.pretrained_accuracy(),
            "accuracy_by_profile": _kd.by_profile(self.ctx, self._last),
            "device_train_samples": self.trained_samples,
        }
