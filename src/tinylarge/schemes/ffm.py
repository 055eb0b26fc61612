"""FFM: federated LoRA fine-tuning of a foundation model, and a tiny model distilled from it.

Federated foundation models (Vu et al., "Integration of TinyML and LargeML: A
Survey of 6G and Beyond", https://arxiv.org/abs/2505.15854): devices fine-tune a
pre-trained transformer without sharing raw data by training only small LoRA
adapters (Hu et al., ICLR 2022, https://arxiv.org/abs/2106.09685) that the server
averages tensor by tensor, ``A`` and ``B`` separately, as in federated
instruction tuning (FedIT, Zhang et al., ICASSP 2024, https://arxiv.org/abs/2305.05644).
The foundation model is all-MiniLM-L6-v2 (:mod:`tinylarge.models.foundation`)
with a linear intent head.

One round:

1. LoRA devices, those whose flash and training memory hold the LoRA-wrapped
   model at ``max_length`` tokens (phones, SBCs, edge boxes), download the
   adapters and head, train them on their private texts for ``local_epochs``
   (Adam, ``lora_lr``) and upload them; the server averages them weighted by
   sample count.
2. Tiny devices, which cannot hold the foundation model but can train the
   config's zoo ``model`` on hashed bag-of-words features (MCUs), download that
   student, train it on their private labels and upload it; the server averages.
3. The server distils the new LoRA model into the student (Hinton et al. 2015,
   https://arxiv.org/abs/1503.02531) on its own unlabeled texts: a
   ``public_fraction`` of the training split held out from every device. Its
   teacher forward passes and the student's training are billed to the server.

``accuracy`` is the student's (what the MCUs run), ``large_accuracy`` the
LoRA-tuned foundation model's. For comparison, ``frozen_accuracy`` is a linear
probe (logistic regression) on the frozen model's embeddings trained centrally
on all device data (a generous baseline that no federation of the frozen model
can beat), and ``zero_shot_accuracy`` the nearest intent name in embedding
space; both are measurements outside the protocol and are not billed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tinylarge.errors import TinylargeError
from tinylarge.hardware.cost import training_cost
from tinylarge.hardware.fit import FitReport, check_fit
from tinylarge.models import foundation as fm
from tinylarge.schemes import _kd
from tinylarge.schemes.base import RoundReport, Scheme, register_scheme
from tinylarge.schemes.fedavg import weighted_average
from tinylarge.sim.backends import fit_many
from tinylarge.sim.client import FitResult, FitTask, ModelSpec, TrainSettings, Weights, get_weights
from tinylarge.sim.client import make_optimizer as make_student_optimizer
from tinylarge.sim.context import Client


class FFMOptions(BaseModel):
    """Options of the ``ffm`` scheme (``scheme.options``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    lora_rank: int = Field(8, ge=0, le=384)
    lora_alpha: int = Field(16, ge=1)
    lora_targets: list[str] = Field(default_factory=lambda: ["query", "value"])
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lora_lr: float = Field(2e-3, gt=0)
    head_lr: float = Field(1e-2, gt=0)
    max_length: int = Field(64, ge=4, le=512)
    public_fraction: float = Field(0.1, gt=0, lt=1)
    distill_epochs: int = Field(5, ge=0)
    temperature: float = Field(2.0, gt=0)
    frozen_baseline: bool = True

    @field_validator("lora_targets")
    @classmethod
    def _targets(cls, v: list[str]) -> list[str]:
        bad = sorted(set(v) - set(fm.LORA_TARGETS))
        if bad or not v:
            raise ValueError(f"choose LoRA targets from {sorted(fm.LORA_TARGETS)}, got {v}")
        return v


@dataclass(frozen=True)
class LoraTask:
    """One LoRA device's local training job: the adapters and its own texts."""

    client: int
    seed: int
    spec: fm.FoundationSpec
    weights: Weights
    texts: tuple[str, ...]
    labels: np.ndarray
    epochs: int
    batch_size: int
    lora_lr: float
    head_lr: float


@dataclass(frozen=True)
class LoraResult:
    """Trained adapters and head, and the ``(padded tokens, sequences)`` of every step run."""

    fit: FitResult
    steps: tuple[tuple[int, int], ...]


def fit_lora(task: LoraTask, x: np.ndarray, y: np.ndarray) -> LoraResult:
    """Train the adapters and head on the task's texts (a backend task; ``x``, ``y`` unused)."""
    del x, y
    model = fm.cached_classifier(task.spec)  # before seeding: building may draw numbers
    gen = _kd.seeded(task.seed)
    model.set_trainable(task.weights)
    model.train()
    opt = torch.optim.Adam(model.param_groups(lora_lr=task.lora_lr, head_lr=task.head_lr))
    labels = torch.from_numpy(task.labels)
    steps: list[tuple[int, int]] = []
    total = 0.0
    n = len(task.texts)
    for idx in _kd.batches(n, batch_size=task.batch_size, epochs=task.epochs, gen=gen):
        batch = model.tokenize([task.texts[i] for i in idx.tolist()])
        loss = torch.nn.functional.cross_entropy(model(batch), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        total += float(loss.detach())
        steps.append((int(batch["input_ids"].shape[1]), len(idx)))
    fit = FitResult(task.client, model.get_trainable(), n, total / max(len(steps), 1))
    return LoraResult(fit, tuple(steps))


def distill(
    spec: ModelSpec,
    weights: Weights,
    x: np.ndarray,
    teacher: np.ndarray,
    *,
    settings: TrainSettings,
    epochs: int,
    temperature: float,
    seed: int,
) -> Weights:
    """Train the student on ``x`` to match the teacher's logits (temperature-scaled KL)."""
    gen = _kd.seeded(seed)
    model = _kd.build(spec, weights)
    model.train()
    opt = make_student_optimizer(model, settings)
    xs, ts = torch.from_numpy(x), torch.from_numpy(teacher)
    for idx in _kd.batches(len(x), batch_size=settings.batch_size, epochs=epochs, gen=gen):
        loss = _kd.kd_loss(model(xs[idx]), ts[idx], temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    return get_weights(model)


@register_scheme
class FederatedFoundationModel(Scheme):
    """Federated LoRA on MiniLM for capable devices; a distilled tiny model for MCUs."""

    name = "ffm"
    Options = FFMOptions

    @property
    def opts(self) -> FFMOptions:
        assert isinstance(self.options, FFMOptions)
        return self.options

    def setup(self) -> None:
        ctx, o = self.ctx, self.opts
        if ctx.text_dataset is None:
            raise TinylargeError(
                f"scheme 'ffm' needs a text task; task.dataset is {ctx.config.task.dataset!r} "
                "(text datasets: clinc150, ibn-nlu)"
            )
        self.texts = ctx.text_dataset
        self.spec = fm.FoundationSpec(
            num_classes=self.texts.num_classes,
            max_length=o.max_length,
            rank=o.lora_rank,
            alpha=o.lora_alpha,
            targets=tuple(o.lora_targets),
            dropout=o.lora_dropout,
        )
        self.profile = fm.foundation_profile(
            self.spec, tokens=o.max_length, train_batch_size=ctx.settings.batch_size
        )
        self.lora_fit: dict[str, FitReport] = {}
        for c in ctx.clients:
            self.lora_fit[c.profile.id] = check_fit(self.profile, c.profile, training=True)
        self.public, self.local = _kd.hold_out(ctx, fraction=o.public_fraction)
        has_data = [c for c in ctx.clients if len(self.local[c.id]) > 0]
        self.lora_pool = [c for c in has_data if self.lora_fit[c.profile.id].fits]
        lora_ids = {c.id for c in self.lora_pool}
        self.tiny_pool = [c for c in has_data if c.id not in lora_ids and c.fit.fits]
        if not self.lora_pool:
            detail = "; ".join(f"{k}: {v.reason}" for k, v in sorted(self.lora_fit.items()))
            raise TinylargeError(
                f"no device of the topology can fine-tune the foundation model ({detail}); "
                "add phones, SBCs or edge devices, or lower scheme.options.max_length"
            )
        self.model = fm.new_classifier(self.spec, seed=ctx.seed)
        self.adapters: Weights = self.model.get_trainable()
        torch.manual_seed(ctx.seed)
        self.student: Weights = get_weights(ctx.spec.build())
        self._baselines: dict[str, float] | None = None

    # -- one round ------------------------------------------------------------------------
    def _lora_task(self, rnd: int, c: Client) -> LoraTask:
        idx = self.local[c.id]
        s = self.ctx.settings
        return LoraTask(
            client=c.id,
            seed=self.ctx.task_seed(rnd, c.id),
            spec=self.spec,
            weights=self.adapters,
            texts=tuple(self.texts.texts_train[i] for i in idx),
            labels=self.texts.y_train[idx],
            epochs=s.epochs,
            batch_size=s.batch_size,
            lora_lr=self.opts.lora_lr,
            head_lr=self.opts.head_lr,
        )

    def _student_task(self, rnd: int, c: Client) -> FitTask:
        ctx = self.ctx
        return FitTask(
            c.id,
            rnd,
            ctx.task_seed(rnd, c.id),
            ctx.spec,
            self.student,
            self.local[c.id],
            ctx.settings,
        )

    def run_round(self, rnd: int) -> RoundReport:
        ctx = self.ctx
        ex = _kd.Exchange(ctx, rnd)
        lora = ctx.sample_clients(rnd, pool=self.lora_pool)
        tiny = ctx.sample_clients(rnd, pool=self.tiny_pool) if self.tiny_pool else []
        down = {c.id: [("adapters", _kd.nbytes(self.adapters))] for c in lora}
        down |= {c.id: [("student", _kd.nbytes(self.student))] for c in tiny}
        sampled = len(lora) + len(tiny)
        active = {c.id for c in ex.download([*lora, *tiny], down)}
        lora = [c for c in lora if c.id in active]
        tiny = [c for c in tiny if c.id in active]
        lora_out = ctx.backend.map(fit_lora, [self._lora_task(rnd, c) for c in lora])
        tiny_out = fit_many(ctx.backend, [self._student_task(rnd, c) for c in tiny])
        up: dict[int, _kd.Payload] = {}
        for c, r in zip(lora, lora_out, strict=True):
            cost = fm.lora_training_cost(
                self.spec, c.profile, steps=r.steps, batch_size=ctx.settings.batch_size
            )
            ex.compute(c, cost, what="lora-train")
            up[c.id] = [("adapters", _kd.nbytes(r.fit.weights))]
        for c, f in zip(tiny, tiny_out, strict=True):
            samples = f.num_samples * ctx.settings.epochs
            ex.compute(
                c,
                training_cost(ctx.model_profile, c.profile, samples=samples),
                what="student-train",
            )
            up[c.id] = [("student", _kd.nbytes(f.weights))]
        kept = ex.upload([*lora, *tiny], up)
        kept_ids = {c.id for c in kept}
        end = ex.end_s(kept)
        lora_fits = [r.fit for r in lora_out if r.fit.client in kept_ids]
        tiny_fits = [f for f in tiny_out if f.client in kept_ids]
        if lora_fits:
            self.adapters = weighted_average(lora_fits)
            end += ctx.bill_server(rnd, _size(self.adapters) * len(lora_fits), what="aggregate")
        if tiny_fits:
            self.student = weighted_average(tiny_fits)
            end += ctx.bill_server(rnd, _size(self.student) * len(tiny_fits), what="aggregate")
        end += self._distill(rnd)
        losses = [r.loss for r in lora_fits]
        return RoundReport(
            latency_s=end,
            participants=sampled,
            dropped=ex.dropped,
            train_loss=float(np.mean(losses)) if losses else None,
        )

    def _distill(self, rnd: int) -> float:
        """Server: teacher logits on the public texts, then KD into the student; its seconds."""
        ctx, o = self.ctx, self.opts
        if o.distill_epochs == 0:
            return 0.0
        torch.set_num_threads(ctx.config.engine.threads)
        self.model.set_trainable(self.adapters)
        texts = [self.texts.texts_train[i] for i in self.public]
        teacher, batches = fm.predict(self.model, texts)
        cost = fm.lora_inference_cost(self.spec, ctx.server, batches=batches)
        seconds = ctx.bill_server_compute(rnd, cost, what="teacher-logits")
        self.student = distill(
            ctx.spec,
            self.student,
            ctx.dataset.x_train[self.public],
            teacher,
            settings=ctx.settings,
            epochs=o.distill_epochs,
            temperature=o.temperature,
            seed=ctx.task_seed(rnd, len(ctx.clients)),  # a stream no device uses,
        )
        samples = len(self.public) * o.distill_epochs
        cost = training_cost(ctx.model_profile, ctx.server, samples=samples)
        return seconds + ctx.bill_server_compute(rnd, cost, what="distill")

    # -- metrics --------------------------------------------------------------------------
    def evaluate(self) -> dict[str, float | None]:
        acc, loss = self.ctx.evaluate(self.student)
        torch.set_num_threads(self.ctx.config.engine.threads)
        self.model.set_trainable(self.adapters)
        logits, _ = fm.predict(self.model, self.texts.texts_test)
        return {
            "accuracy": acc,
            "loss": loss,
            "large_accuracy": _kd.accuracy(logits, self.texts.y_test),
        }

    def baselines(self) -> dict[str, float]:
        """Frozen-model accuracies: a linear probe and zero-shot by intent name.

        The probe is a logistic regression on the frozen embeddings of the LoRA
        devices' texts (the data the LoRA model learns from), fitted centrally
        with an exact solver: a generous baseline.
        """
        if self._baselines is None:
            from sklearn.linear_model import LogisticRegression

            torch.set_num_threads(self.ctx.config.engine.threads)
            train = np.concatenate([self.local[c.id] for c in self.lora_pool])
            texts = [self.texts.texts_train[i] for i in train]
            x, _ = fm.predict(self.model, texts, frozen=True, embeddings=True)
            x_test, _ = fm.predict(self.model, self.texts.texts_test, frozen=True, embeddings=True)
            probe = LogisticRegression(C=10.0, max_iter=2000).fit(x, self.texts.y_train[train])
            names = [n.replace("_", " ").replace("+", " and ") for n in self.texts.label_names]
            protos, _ = fm.predict(self.model, names, frozen=True, embeddings=True)
            sims = _unit(x_test) @ _unit(protos).T
            self._baselines = {
                "frozen_accuracy": float(probe.score(x_test, self.texts.y_test)),
                "zero_shot_accuracy": _kd.accuracy(sims, self.texts.y_test),
            }
        return self._baselines

    def state(self) -> dict[str, Any]:
        return {"adapters": self.adapters, "student": self.student}

    def load_state(self, state: dict[str, Any]) -> None:
        self.adapters = state["adapters"]
        self.student = state["student"]

    def summary_extras(self) -> dict[str, Any]:
        ctx, o = self.ctx, self.opts
        fits = {
            c.profile.id: self.lora_fit[c.profile.id] if self.lora_fit[c.profile.id].fits else c.fit
            for c in ctx.clients
        }
        roles = {
            pid: "lora" if self.lora_fit[pid].fits else ("student" if r.fits else "excluded")
            for pid, r in fits.items()
        }
        adapter_bytes = _kd.nbytes(self.adapters)
        full_bytes = self.profile.params * 4
        rounds = ctx.config.training.rounds
        uploads = ctx.ledger.select(kind="upload", what="adapters")
        out: dict[str, Any] = {
            **_kd.fits_summary(ctx, fits),
            "roles": roles,
            "foundation_model": "all-MiniLM-L6-v2 "
            + (f"+ LoRA rank {o.lora_rank}" if o.lora_rank else "frozen, head only"),
            "adapter_bytes": adapter_bytes,
            "full_model_bytes": full_bytes,
            "adapter_fraction": adapter_bytes / full_bytes,
            "adapter_bytes_up_per_round": sum(e.bytes for e in uploads) / rounds,
            "full_model_bytes_up_per_round": full_bytes * len(uploads) / rounds,
            "lora_devices": len(self.lora_pool),
            "student_devices": len(self.tiny_pool),
            "public_samples": len(self.public),
            "foundation": {
                "params": self.profile.params,
                "trainable_params": self.profile.extra["trainable_params"],
                "flash_bytes": self.profile.flash_bytes,
                "train_memory_bytes": self.profile.train_memory_bytes,
                "max_length": o.max_length,
                "lora_rank": o.lora_rank,
                "lora_targets": list(o.lora_targets),
            },
        }
        if o.frozen_baseline:
            out.update(self.baselines())
        return out


def _size(weights: Weights) -> int:
    return int(sum(np.asarray(w).size for w in weights))


def _unit(x: np.ndarray) -> np.ndarray:
    unit: np.ndarray = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return unit
