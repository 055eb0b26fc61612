"""FFM: federated LoRA fine-tuning of a foundation model, and a tiny model distilled from it.

Federated foundation models (Vu et al., "Integration of TinyML and LargeML: A
Survey of 6G and Beyond", https://arxiv.org/abs/2505.15854): devices fine-tune a
pre-trained transformer without sharing raw data by training only small LoRA
adapters (Hu et al., ICLR 2022, https://arxiv.org/abs/2106.09685) that the server
averages tensor by tensor, ``A`` and ``B`` separately, as in federated
instruction tuning (FedIT, Zhang et al., ICASSP 2024, https://arxiv.org/abs/2305.05644).
The foundation model is all-MiniLM-L6-v2 (:mod:`tinylarge.models.foundation`)
with a linear intent head.

Every device gets a role when the run is set up (summary.json's ``roles``):
``lora`` if its flash and training memory hold the LoRA-wrapped model at
``max_length`` tokens (phones, SBCs, edge boxes), else ``student`` if it can
train the config's zoo ``model`` on hashed bag-of-words features (MCUs), else
``excluded``. At least one device must be a LoRA device. The two roles are
sampled separately (``training.fraction`` of each) and share one round clock:

1. LoRA devices download the adapters and head, train them on their private
   texts for ``local_epochs`` (Adam, ``lora_lr``/``head_lr``) and upload them;
   the server averages them weighted by sample count.
2. Student devices download the student, train it on their private labels and
   upload it; the server averages.
3. The server distils the new LoRA model into the student (Hinton et al. 2015,
   https://arxiv.org/abs/1503.02531) on its own unlabeled texts: a
   ``public_fraction`` of the training split held out from every device. Its
   teacher forward passes and the student's training are server work after the
   device phase.

``accuracy`` is the student's (what the MCUs run), ``large_accuracy`` the
LoRA-tuned foundation model's. For comparison, ``frozen_accuracy`` is a linear
probe (logistic regression) on the frozen model's embeddings trained centrally
on all device data (a generous baseline that no federation of the frozen model
can beat), and ``zero_shot_accuracy`` the nearest intent name in embedding
space; both are measurements outside the protocol and are not billed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from tinylarge.errors import TinylargeError
from tinylarge.hardware.cost import Train
from tinylarge.hardware.fit import FitReport, check_fit
from tinylarge.models import foundation as fm
from tinylarge.models.foundation_profile import (
    FoundationSpec,
    foundation_profile,
    lora_infer_work,
    lora_train_work,
)
from tinylarge.models.weights import Weights, get_weights, nbytes
from tinylarge.models.zoo import ModelSpec
from tinylarge.schemes._device_models import hold_out
from tinylarge.schemes.base import Scheme, register_scheme
from tinylarge.schemes.options.transfer import FFMOptions
from tinylarge.sim.aggregation import Update
from tinylarge.sim.backends import fit_many
from tinylarge.sim.context import Client
from tinylarge.sim.rounds import Payload, Round, RoundReport, sample
from tinylarge.sim.training import (
    FitResult,
    FitTask,
    TrainSettings,
    accuracy,
    build,
    make_optimizer,
    run_steps,
    seeded,
    tensor,
    train_supervised,
)

Role = Literal["lora", "student", "excluded"]


@dataclass(frozen=True)
class LoraTask:
    """One LoRA device's local training job: the adapters and its own texts.

    ``settings`` gives the epochs, the batch size and Adam; the adapters train at
    ``lora_lr`` and the head at ``head_lr`` (two parameter groups).
    """

    client: int
    seed: int
    spec: FoundationSpec
    weights: Weights
    texts: tuple[str, ...]
    labels: np.ndarray
    settings: TrainSettings
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
    model = fm.build_classifier(task.spec, seed=task.seed)
    gen = seeded(task.seed)
    model.set_trainable(task.weights)
    model.train()
    opt = make_optimizer(
        model.param_groups(lora_lr=task.lora_lr, head_lr=task.head_lr), task.settings
    )
    labels = torch.from_numpy(task.labels)
    steps: list[tuple[int, int]] = []

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        batch = model.tokenize([task.texts[i] for i in idx.tolist()])
        steps.append((int(batch["input_ids"].shape[1]), len(idx)))
        return torch.nn.functional.cross_entropy(model(batch), labels[idx])

    stats = run_steps(loss_of, opt, n=len(task.texts), settings=task.settings, gen=gen)
    fit = FitResult(task.client, model.get_trainable(), len(task.texts), stats.loss)
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
    gen = seeded(seed)
    model = build(spec, weights)
    train_supervised(
        model,
        tensor(x),
        None,
        settings=settings,
        gen=gen,
        teacher=tensor(teacher),
        kd_weight=1.0,
        temperature=temperature,
        epochs=epochs,
    )
    return get_weights(model)


@register_scheme
class FederatedFoundationModel(Scheme[FFMOptions]):
    """Federated LoRA on MiniLM for capable devices; a distilled tiny model for MCUs."""

    name = "ffm"

    def setup(self) -> None:
        ctx, o = self.ctx, self.options
        if ctx.text_dataset is None:  # refused at validation (FFMOptions.refuse)
            raise TinylargeError(f"scheme 'ffm' needs a text task, got {ctx.config.task.dataset!r}")
        self.texts = ctx.text_dataset
        self.spec = FoundationSpec(
            num_classes=self.texts.num_classes,
            max_length=o.max_length,
            rank=o.lora_rank,
            alpha=o.lora_alpha,
            targets=tuple(o.lora_targets),
            dropout=o.lora_dropout,
        )
        self.profile = foundation_profile(
            self.spec, tokens=o.max_length, train_batch_size=ctx.settings.batch_size
        )
        lora_fit = {c.id: check_fit(self.profile, c.profile, training=True) for c in ctx.clients}
        ctx.admit(
            lora_fit,
            what="fine-tune the foundation model",
            hint="add phones, SBCs or edge devices, or lower scheme.options.max_length",
        )
        student_fit = {c.id: ctx.training_fit(ctx.spec, c.profile) for c in ctx.clients}
        #: Each device's role: LoRA if the foundation model fits, else the student if it does.
        self.roles: dict[int, Role] = {}
        verdicts: dict[int, FitReport] = {}
        for c in ctx.clients:
            lora_ok, student_ok = lora_fit[c.id].fits, student_fit[c.id].fits
            self.roles[c.id] = "lora" if lora_ok else "student" if student_ok else "excluded"
            verdicts[c.id] = lora_fit[c.id] if lora_ok else student_fit[c.id]
        admitted = ctx.admit(verdicts, what="fine-tune the foundation model or train its student")
        self.public, self.local = hold_out(ctx, fraction=o.public_fraction)
        has_data = [c for c in admitted if len(self.local[c.id]) > 0]
        self.lora_pool = [c for c in has_data if self.roles[c.id] == "lora"]
        self.tiny_pool = [c for c in has_data if self.roles[c.id] == "student"]
        self.model = fm.build_classifier(self.spec, seed=ctx.seed)
        self.adapters: Weights = self.model.get_trainable()
        torch.manual_seed(ctx.seed)
        self.student: Weights = get_weights(ctx.spec.build())
        self._baselines: dict[str, float] | None = None

    # -- one round ------------------------------------------------------------------------
    def _lora_task(self, rnd: int, c: Client) -> LoraTask:
        idx = self.local[c.id]
        return LoraTask(
            client=c.id,
            seed=self.ctx.task_seed(rnd, c.id),
            spec=self.spec,
            weights=self.adapters,
            texts=tuple(self.texts.texts_train[i] for i in idx),
            labels=self.texts.y_train[idx],
            settings=self.ctx.settings.with_(optimizer="adam", weight_decay=0.0),
            lora_lr=self.options.lora_lr,
            head_lr=self.options.head_lr,
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
        # the two roles are sampled separately, then share the round's clock and cells
        lora = sample(ctx, rnd, self.lora_pool)
        tiny = sample(ctx, rnd, self.tiny_pool) if self.tiny_pool else []
        rd = Round(ctx, rnd, [*lora, *tiny])
        down: dict[int, Payload] = {c.id: [("adapters", nbytes(self.adapters))] for c in lora}
        down |= {c.id: [("student", nbytes(self.student))] for c in tiny}
        active = {c.id for c in rd.download(down)}
        lora = [c for c in lora if c.id in active]
        tiny = [c for c in tiny if c.id in active]
        lora_out = ctx.backend.map(fit_lora, [self._lora_task(rnd, c) for c in lora])
        tiny_out = fit_many(ctx.backend, [self._student_task(rnd, c) for c in tiny])
        up: dict[int, Payload] = {}
        for c, r in zip(lora, lora_out, strict=True):
            work = lora_train_work(self.spec, steps=r.steps, batch_size=ctx.settings.batch_size)
            rd.compute(c, work, what="lora-train")
            up[c.id] = [("adapters", nbytes(r.fit.weights))]
        for c, f in zip(tiny, tiny_out, strict=True):
            samples = f.num_samples * ctx.settings.epochs
            rd.compute(c, Train(ctx.model_profile, samples), what="student-train")
            up[c.id] = [("student", nbytes(f.weights))]
        kept = {c.id for c in rd.upload(up)}
        lora_fits = [r.fit for r in lora_out if r.fit.client in kept]
        tiny_fits = [f for f in tiny_out if f.client in kept]
        self.adapters = rd.aggregate(
            [Update.full(f.client, f.weights, f.num_samples) for f in lora_fits],
            base=self.adapters,
        )
        self.student = rd.aggregate(
            [Update.full(f.client, f.weights, f.num_samples) for f in tiny_fits],
            base=self.student,
        )
        self._distill(rd)
        losses = [r.loss for r in lora_fits]
        return rd.report(train_loss=float(np.mean(losses)) if losses else None)

    def _distill(self, rd: Round) -> None:
        """Server: teacher logits on the public texts, then KD into the student."""
        ctx, o = self.ctx, self.options
        if o.distill_epochs == 0:
            return
        torch.set_num_threads(ctx.config.engine.threads)
        self.model.set_trainable(self.adapters)
        texts = [self.texts.texts_train[i] for i in self.public]
        teacher, batches = fm.predict(self.model, texts)
        rd.server(lora_infer_work(self.spec, batches=batches), what="teacher-logits")
        self.student = distill(
            ctx.spec,
            self.student,
            ctx.dataset.x_train[self.public],
            teacher,
            settings=ctx.settings,
            epochs=o.distill_epochs,
            temperature=o.temperature,
            seed=ctx.task_seed(rd.rnd, len(ctx.clients)),  # a stream no device uses
        )
        samples = len(self.public) * o.distill_epochs
        rd.server(Train(ctx.model_profile, samples), what="distill")

    # -- metrics --------------------------------------------------------------------------
    def evaluate(self) -> dict[str, float | None]:
        acc, loss = self.ctx.evaluate(self.student)
        torch.set_num_threads(self.ctx.config.engine.threads)
        self.model.set_trainable(self.adapters)
        logits, _ = fm.predict(self.model, self.texts.texts_test)
        return {
            "accuracy": acc,
            "loss": loss,
            "large_accuracy": accuracy(logits, self.texts.y_test),
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
                "zero_shot_accuracy": accuracy(sims, self.texts.y_test),
            }
        return self._baselines

    def state(self) -> dict[str, Any]:
        return {"adapters": self.adapters, "student": self.student}

    def load_state(self, state: dict[str, Any]) -> None:
        self.adapters = state["adapters"]
        self.student = state["student"]

    def summary_extras(self) -> dict[str, Any]:
        ctx, o = self.ctx, self.options
        roles = {c.profile.id: self.roles[c.id] for c in ctx.clients}
        adapter_bytes = nbytes(self.adapters)
        full_bytes = self.profile.params * 4
        rounds = ctx.config.training.rounds
        uploads = ctx.ledger.select(kind="upload", what="adapters")
        out: dict[str, Any] = {
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


def _unit(x: np.ndarray) -> np.ndarray:
    unit: np.ndarray = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return unit
