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

The server's pre-training is server work before the first round's device phase
(:meth:`tinylarge.sim.rounds.Round.server`). A device that drops out after its
download still holds the pre-trained model; one whose download was in outage
gets it the next time it takes part.

``accuracy`` is the sample-weighted mean test accuracy of the devices'
fine-tuned models; ``large_accuracy`` that of the server's pre-trained model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tinylarge.hardware.cost import Train
from tinylarge.hardware.fit import FitReport, check_fit
from tinylarge.models.weights import Weights, get_weights, nbytes
from tinylarge.schemes._device_models import (
    SERVER_TASK,
    by_profile,
    device_metrics,
    hold_out,
)
from tinylarge.schemes._parts import (
    Part,
    PartResult,
    PartTask,
    candidate_parts,
    choose_part,
    train_part,
)
from tinylarge.schemes.base import Scheme, register_scheme
from tinylarge.schemes.options.transfer import TLOptions
from tinylarge.sim.context import Client
from tinylarge.sim.rounds import Payload, Round, RoundReport

#: Bytes of a device's per-round report: its mean loss (float32) and sample count (int32).
TELEMETRY_BYTES = 8


@register_scheme
class TransferLearning(Scheme[TLOptions]):
    """Server pre-training, then per-device fine-tuning of the part that fits."""

    name = "tl"

    def setup(self) -> None:
        ctx, o = self.ctx, self.options
        self.server_idx, self.local_idx = hold_out(
            ctx, fraction=o.server_fraction, classes=o.server_classes
        )
        self.candidates = candidate_parts(
            ctx.spec, batch_size=ctx.settings.batch_size, optimizer=ctx.settings.optimizer
        )
        #: Per device profile: the part it trains (None: none fits) and its verdict.
        self.parts: dict[str, Part | None] = {}
        self.verdicts: dict[str, FitReport] = {}
        for c in ctx.clients:
            if c.profile.id not in self.verdicts:
                self.verdicts[c.profile.id] = self._fit(c)
        self.pool = ctx.admit(
            {c.id: self.verdicts[c.profile.id] for c in ctx.clients},
            what=f"run model {ctx.spec.name!r} and train any part of it",
            hint="choose a smaller model or scheme.options.part: bias",
        )
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
        part, reason = choose_part(self.candidates, client.profile, mode=self.options.part)
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

    def part_of(self, client: Client) -> Part:
        part = self.parts[client.profile.id]
        if part is None:  # admit() keeps such devices out of the pool
            raise RuntimeError(f"{client.node} has no part to train")
        return part

    # -- server pre-training -----------------------------------------------------------
    def pretrain(self, rd: Round) -> None:
        """Train the whole model on the server's data, before the round's device phase."""
        ctx, o = self.ctx, self.options
        task = PartTask(
            client=-1,
            seed=ctx.task_seed(rd.rnd, SERVER_TASK),
            spec=ctx.spec,
            weights=self.pretrained,
            indices=self.server_idx,
            settings=ctx.settings.with_(epochs=o.pretrain_epochs),
            cut=0,
            keys=tuple(self.keys),
        )
        result = train_part(task, ctx.dataset.x_train, ctx.dataset.y_train)
        self.pretrained = self.merge(self.pretrained, result.tensors)
        self.pretrained_done = True
        samples = len(self.server_idx) * o.pretrain_epochs
        rd.server(Train(ctx.model_profile, samples), what="pretrain")

    def merge(self, weights: Weights, tensors: dict[str, np.ndarray]) -> Weights:
        return [tensors.get(k, w) for k, w in zip(self.keys, weights, strict=True)]

    # -- one round -----------------------------------------------------------------------
    def start_weights(self, client: Client) -> Weights:
        return self.personal.get(client.id, self.pretrained)

    def downloads(self, clients: list[Client]) -> dict[int, Payload]:
        """The pre-trained model, once, to each device that does not hold it yet."""
        size = nbytes(self.pretrained)
        return {c.id: [("weights", size)] for c in clients if c.id not in self.personal}

    def delivered(self, rnd: int, clients: list[Client]) -> None:
        """``clients`` got their downloads of round ``rnd``: they hold the pre-trained model."""
        for c in clients:
            self.personal.setdefault(c.id, self.pretrained)

    def uploads(self, results: dict[int, PartResult]) -> dict[int, Payload]:
        return {cid: [("telemetry", TELEMETRY_BYTES)] for cid in results}

    def train(self, rd: Round, clients: list[Client]) -> dict[int, PartResult]:
        """Local fine-tuning of each client's part on the backend; its work on the clock."""
        ctx = self.ctx
        tasks = [
            PartTask(
                client=c.id,
                seed=ctx.task_seed(rd.rnd, c.id),
                spec=ctx.spec,
                weights=self.start_weights(c),
                indices=self.local_idx[c.id],
                settings=ctx.settings,
                cut=self.part_of(c).cut,
                keys=self.part_of(c).keys,
            )
            for c in clients
        ]
        results = ctx.backend.map(train_part, tasks)
        for c, r in zip(clients, results, strict=True):
            samples = r.num_samples * ctx.settings.epochs
            rd.compute(c, self.part_of(c).work(samples), what="fine-tune")
            self.trained_samples += samples
        return {r.client: r for r in results}

    def aggregate(self, rd: Round, results: dict[int, PartResult], kept: list[Client]) -> None:
        """TL keeps every fine-tuned model on its device (uploaded or not); no server work."""
        for cid, r in results.items():
            self.personal[cid] = self.merge(self.start_weights(self.ctx.clients[cid]), r.tensors)

    def run_round(self, rnd: int) -> RoundReport:
        rd = self.ctx.round(rnd, self.pool)
        if not self.pretrained_done:
            self.pretrain(rd)
        active = rd.download(self.downloads(rd.participants))
        self.delivered(rnd, [c for c in rd.participants if rd.dropped.get(c.id) != "outage"])
        results = self.train(rd, active)
        kept = rd.upload(self.uploads(results))
        self.aggregate(rd, results, kept)
        losses = [r.loss for r in results.values()]
        return rd.report(train_loss=float(np.mean(losses)) if losses else None)

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
        return {**device_metrics(per, sizes), "large_accuracy": self.pretrained_accuracy()}

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
            pid: (p.describe() if p else {"part": None, "reason": self.verdicts[pid].reason})
            | {"sram_bytes": self.verdicts[pid].sram_capacity_bytes}
            for pid, p in self.parts.items()
        }
        return {
            "parts": parts,
            "server_samples": len(self.server_idx),
            "pretrained_accuracy": self.pretrained_accuracy(),
            "accuracy_by_profile": by_profile(self.ctx, self._last),
            "device_train_samples": self.trained_samples,
        }
