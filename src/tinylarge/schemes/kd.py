"""KD: the server distils a large teacher into the configured tiny model and deploys it in int8.

LargeML -> TinyML (Vu et al., "Integration of TinyML and LargeML: A Survey of
6G and Beyond", https://arxiv.org/abs/2505.15854): knowledge distillation
(Hinton et al., https://arxiv.org/abs/1503.02531), optional pruning, int8
quantization in the TFLite scheme, and an over-the-air deployment.

Data. The server holds a stratified ``server_fraction`` of the training set
(drawn from the run seed; every class at least once). It trains the teacher
and distils the student on that split only. The rest stays on the devices
(each device keeps its partition minus the server-held samples) and is used
on-device, to evaluate the deployed artifact (federated evaluation).

Rounds. Round 0 trains the teacher (``teacher_epochs``) and computes its
logits on the server split, then every round is one release: the server
distils the student for ``distill_epochs`` more epochs (round 0 also prunes,
then fine-tunes), optionally fine-tunes a fake-quantized copy (``qat``),
quantizes it to an int8 ONNX artifact calibrated on ``calibration_samples``
server-held samples, and sends the artifact to every device it fits; each
device runs it on its local samples and uploads an 8-byte report (correct,
total). All server compute (teacher training and logits, distillation,
calibration) is billed to the server, every byte to the device's link, the
on-device inferences at the artifact's int8 cost.

Metrics. ``accuracy`` is the int8 artifact's, measured by running the file in
ONNX Runtime on the test set; ``large_accuracy`` is the teacher's (fp32). The
summary adds the artifact (bytes, fp32 bytes, peak SRAM), the fit on every
device profile with the shortfall when it does not fit, and per-profile
inference latency and energy.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from tinylarge.compress.distill import KDConfig
from tinylarge.compress.export import onnx_logits
from tinylarge.compress.fit_report import (
    DeviceFit,
    deployed_profile,
    device_fit,
    fits_by_profile,
    require_any_fit,
)
from tinylarge.compress.pipeline import (
    ArtifactEvalTask,
    Artifacts,
    build_artifacts,
    default_teacher,
    evaluate_artifact_task,
    load_artifacts,
    stratified_fraction,
)
from tinylarge.compress.prune import apply_masks, magnitude_masks, mask_hook, prune_channels
from tinylarge.compress.qat import fold_batchnorm, prepare_qat, strip_qat
from tinylarge.compress.quantize import DEFAULT_PERCENTILE, CalibrationMethod
from tinylarge.compress.train import StepHook, TrainConfig, accuracy, predict_logits, train_model
from tinylarge.errors import TinylargeError
from tinylarge.hardware.cost import ComputeCost, inference_cost, training_cost
from tinylarge.models.profile import ModelProfile
from tinylarge.models.profiler import profile_model
from tinylarge.schemes.base import RoundReport, Scheme, register_scheme
from tinylarge.sim.client import ModelSpec, get_weights, set_weights

#: Bytes of the evaluation report a device uploads: correct and total as two int32.
REPORT_BYTES = 8


class KDOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    #: Teacher zoo model, or "auto" (cnn-large for images/spectrograms, a wide mlp otherwise).
    teacher: str = "auto"
    teacher_options: dict[str, Any] = Field(default_factory=dict)
    teacher_epochs: Annotated[int, Field(ge=1)] = 5
    #: Share of the training set the server holds (stratified, from the seed).
    server_fraction: Annotated[float, Field(gt=0, le=1)] = 0.5
    #: Distillation epochs per round (one round = one release to the devices).
    distill_epochs: Annotated[int, Field(ge=1)] = 2
    #: Server-side optimisation (devices do not train in kd: ``training.*`` other
    #: than ``rounds`` is not used).
    optimizer: Literal["sgd", "momentum", "adam"] = "adam"
    lr: Annotated[float, Field(gt=0)] = 0.002
    batch_size: Annotated[int, Field(ge=1)] = 64
    #: Learning-rate schedule of every server-side training call (cosine: SGDR restarts per round).
    schedule: Literal["constant", "cosine"] = "cosine"
    temperature: Annotated[float, Field(gt=0)] = 2.0
    alpha: Annotated[float, Field(ge=0, le=1)] = 0.5
    quantization: Literal["ptq", "qat"] = "ptq"
    qat_epochs: Annotated[int, Field(ge=1)] = 1
    calibration_samples: Annotated[int, Field(ge=1)] = 256
    #: Activation ranges: 99.99th percentile of |x| (default) or min/max (compress.quantize).
    calibration_method: CalibrationMethod = "percentile"
    calibration_percentile: Annotated[float, Field(gt=50, le=100)] = DEFAULT_PERCENTILE
    prune: Literal["none", "magnitude", "channels"] = "none"
    prune_amount: Annotated[float, Field(ge=0, lt=1)] = 0.5
    prune_finetune_epochs: Annotated[int, Field(ge=0)] = 1

    @field_validator("teacher")
    @classmethod
    def _known_teacher(cls, v: str) -> str:
        from tinylarge.models.zoo import MODELS

        if v != "auto" and v not in MODELS:
            raise ValueError(f"unknown teacher {v!r}; known: auto, {', '.join(MODELS.names())}")
        return v


@register_scheme
class KD(Scheme):
    """Server-side distillation, compression and int8 deployment to every device."""

    name = "kd"
    Options = KDOptions

    # -- set-up --------------------------------------------------------------
    def setup(self) -> None:
        o = self._opts
        ctx, ds = self.ctx, self.ctx.dataset
        name, options = (o.teacher, dict(o.teacher_options))
        if name == "auto":
            name, options = default_teacher(ds.input_shape)
            options.update(o.teacher_options)
        self.teacher_spec = ModelSpec(name, tuple(ds.input_shape), ds.num_classes, options)
        torch.manual_seed(ctx.seed)
        self.teacher = self.teacher_spec.build()
        self.teacher_profile = self._profile(self.teacher)
        self.server_idx = stratified_fraction(ds.y_train, o.server_fraction, seed=ctx.seed)
        held = np.zeros(ds.num_train, dtype=bool)
        held[self.server_idx] = True
        self.local = {c.id: c.indices[~held[c.indices]] for c in ctx.clients}
        rng = np.random.default_rng([ctx.seed, 0xCA1])
        k = min(o.calibration_samples, len(self.server_idx))
        self.calib_idx = np.sort(rng.choice(self.server_idx, size=k, replace=False))
        torch.manual_seed(ctx.seed + 1)
        self.student: nn.Module = ctx.spec.build()
        self.keep: list[list[int]] | None = None
        self.masks: dict[str, np.ndarray] | None = None
        self.teacher_logits: np.ndarray | None = None
        self.deployed: nn.Module | None = None
        self.artifacts: Artifacts | None = None
        self.artifact_bytes = b""
        self.deployed_fp32_accuracy: float | None = None
        self.device_eval: tuple[int, int] = (0, 0)
        self.fits: dict[int, DeviceFit] = {}
        require_any_fit(  # before the run starts, from the profiler's int8 estimate
            self._profile(self.student, "int8"),
            [c.profile for c in ctx.clients],
            what=f"model {ctx.config.model.name!r} at int8",
        )

    @property
    def _opts(self) -> KDOptions:
        assert isinstance(self.options, KDOptions)
        return self.options

    def _profile(self, model: nn.Module, dtype: Literal["fp32", "int8"] = "fp32") -> ModelProfile:
        return profile_model(
            model,
            input_shape=self.ctx.dataset.input_shape,
            dtype=dtype,
            train_batch_size=self._opts.batch_size,
        )

    def _train_config(self, rnd: int, epochs: int, salt: int) -> TrainConfig:
        o = self._opts
        return TrainConfig(
            epochs=epochs,
            batch_size=o.batch_size,
            lr=o.lr,
            optimizer=o.optimizer,
            seed=self.ctx.task_seed(rnd, 1_000_000 + salt),  # server-side streams
            threads=self.ctx.config.engine.threads,
            schedule=o.schedule,
        )

    def _bill_train(self, rnd: int, profile: ModelProfile, epochs: int, what: str) -> float:
        cost = training_cost(profile, self.ctx.server, samples=epochs * len(self.server_idx))
        return self.ctx.bill_server_compute(rnd, cost, what=what)

    # -- one round = one release ----------------------------------------------
    def run_round(self, rnd: int) -> RoundReport:
        o, ctx, ds = self._opts, self.ctx, self.ctx.dataset
        x, y = ds.x_train[self.server_idx], ds.y_train[self.server_idx]
        server_s = 0.0
        if self.teacher_logits is None:
            train_model(self.teacher, x, y, config=self._train_config(rnd, o.teacher_epochs, 0))
            server_s += self._bill_train(
                rnd, self.teacher_profile, o.teacher_epochs, "teacher-train"
            )
            self.teacher_logits = predict_logits(self.teacher, x)
            cost = inference_cost(self.teacher_profile, ctx.server, batch=len(x))
            server_s += ctx.bill_server_compute(rnd, cost, what="teacher-logits")
        kd = KDConfig(temperature=o.temperature, alpha=o.alpha)
        student_profile = self._profile(self.student)
        loss = train_model(
            self.student,
            x,
            y,
            config=self._train_config(rnd, o.distill_epochs, 1),
            teacher_logits=self.teacher_logits,
            kd=kd,
            after_step=self._hook(),
        )
        server_s += self._bill_train(rnd, student_profile, o.distill_epochs, "distill")
        if o.prune != "none" and self.keep is None and self.masks is None:
            self._prune()
            student_profile = self._profile(self.student)
            epochs = o.prune_finetune_epochs
            if epochs:
                cfg = self._train_config(rnd, epochs, 2)
                train_model(
                    self.student, x, y, config=cfg, teacher_logits=self.teacher_logits, kd=kd,
                    after_step=self._hook(),
                )  # fmt: skip
                server_s += self._bill_train(rnd, student_profile, epochs, "prune-finetune")
        deploy = self.student
        calib = ds.x_train[self.calib_idx]
        if o.quantization == "qat":
            qat = prepare_qat(self.student, calib)
            cfg = self._train_config(rnd, o.qat_epochs, 3)
            train_model(qat, x, y, config=cfg, teacher_logits=self.teacher_logits, kd=kd)
            server_s += self._bill_train(rnd, student_profile, o.qat_epochs, "qat")
            deploy = strip_qat(qat)
        self.deployed = deploy
        server_s += self._deploy_artifact(rnd, deploy, calib, student_profile)
        device_s, dropped = self._release(rnd)
        return RoundReport(
            latency_s=server_s + device_s,
            participants=len(ctx.clients),
            dropped=dropped,
            train_loss=loss,
        )

    def _hook(self) -> StepHook | None:
        return None if self.masks is None else mask_hook(self.masks)

    def _prune(self) -> None:
        o = self._opts
        if o.prune == "magnitude":
            self.masks = magnitude_masks(self.student, amount=o.prune_amount)
            apply_masks(self.student, self.masks)
        else:
            self.student, self.keep = prune_channels(
                self.student, input_shape=self.ctx.dataset.input_shape, amount=o.prune_amount
            )

    def _deploy_artifact(
        self, rnd: int, model: nn.Module, calib: np.ndarray, profile: ModelProfile
    ) -> float:
        ctx, ds = self.ctx, self.ctx.dataset
        if ctx.run_dir is None:
            raise RuntimeError("the kd scheme needs a run directory for its artifacts")
        self.deployed_fp32_accuracy = accuracy(predict_logits(model, ds.x_test), ds.y_test)
        self.artifacts = build_artifacts(
            model,
            ctx.run_dir / "artifacts",
            stem="student",
            input_shape=ds.input_shape,
            calibration=calib,
            preprocessing=ds.preprocessing,
            labels=ds.label_names,
            method=self._opts.calibration_method,
            percentile=self._opts.calibration_percentile,
        )
        self.artifact_bytes = self.artifacts.int8_path.read_bytes()
        self.fits = {c.id: device_fit(self.artifacts.int8_profile, c.profile) for c in ctx.clients}
        cost = inference_cost(profile, ctx.server, batch=len(calib))
        return ctx.bill_server_compute(rnd, cost, what="calibrate")

    def _release(self, rnd: int) -> tuple[float, dict[int, str]]:
        """Send the artifact to every device it fits; devices evaluate it locally and report.

        A device can lose its link (outage), drop out after the download
        (``engine.dropout_prob``) or report after ``engine.deadline_s`` (a
        straggler: its work is billed, its report discarded).
        """
        ctx, eng = self.ctx, self.ctx.config.engine
        assert self.artifacts is not None
        targets = [c for c in ctx.clients if self.fits[c.id].fits]
        shares = ctx.shares(targets)
        dropped = {c.id: "artifact does not fit" for c in ctx.clients if not self.fits[c.id].fits}
        elapsed: dict[int, float] = {}
        draws = ctx.rng(rnd, 4).random(len(targets))
        for c, u in zip(targets, draws, strict=True):
            t, outage = ctx.transfer(
                rnd, c, len(self.artifact_bytes), direction="down", what="artifact",
                share=shares[c.id],
            )  # fmt: skip
            if outage:
                dropped[c.id] = "outage"
                continue
            elapsed[c.id] = t
            if u < eng.dropout_prob:
                dropped[c.id] = "dropout"
        evaluators = [c for c in targets if c.id not in dropped and len(self.local[c.id])]
        tasks = [ArtifactEvalTask(c.id, self.artifact_bytes, self.local[c.id]) for c in evaluators]
        results = ctx.backend.map(evaluate_artifact_task, tasks)
        deployed = deployed_profile(self.artifacts.int8_profile)
        up = ctx.shares(evaluators)
        correct = total = 0
        for c, r in zip(evaluators, results, strict=True):
            per, n = inference_cost(deployed, c.profile, dtype="int8"), r.samples
            cost = ComputeCost(per.macs * n, per.latency_s * n, per.energy_j * n)
            elapsed[c.id] += ctx.bill_device_compute(rnd, c, cost, what="on-device-eval")
            t, outage = ctx.transfer(
                rnd, c, REPORT_BYTES, direction="up", what="eval-report", share=up[c.id]
            )
            elapsed[c.id] += t
            if outage:
                dropped[c.id] = "outage"
            elif eng.deadline_s is not None and elapsed[c.id] > eng.deadline_s:
                dropped[c.id] = "straggler"
            else:
                correct, total = correct + r.correct, total + r.samples
        self.device_eval = (correct, total)
        end = max(elapsed.values(), default=0.0)
        if eng.deadline_s is not None:
            end = min(end, eng.deadline_s)
        return end, dropped

    def _restore_artifacts(self) -> None:
        """After a resume with no round left to run: read the last artifacts back from disk."""
        run_dir = self.ctx.run_dir
        if self.artifacts is not None or run_dir is None:
            return
        self.artifacts = load_artifacts(run_dir / "artifacts", stem="student")
        if self.artifacts is not None:
            self.artifact_bytes = self.artifacts.int8_path.read_bytes()
            prof = self.artifacts.int8_profile
            self.fits = {c.id: device_fit(prof, c.profile) for c in self.ctx.clients}

    # -- metrics and state -----------------------------------------------------
    def evaluate(self) -> dict[str, float | None]:
        ds = self.ctx.dataset
        self._restore_artifacts()
        if not self.artifact_bytes:
            return {"accuracy": None, "loss": None, "large_accuracy": None}
        logits = onnx_logits(self.artifact_bytes, ds.x_test)
        loss = float(
            nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(ds.y_test))
        )
        teacher = accuracy(predict_logits(self.teacher, ds.x_test), ds.y_test)
        return {"accuracy": accuracy(logits, ds.y_test), "loss": loss, "large_accuracy": teacher}

    def state(self) -> dict[str, Any]:
        return {
            "teacher": get_weights(self.teacher),
            "teacher_logits": self.teacher_logits,
            "student": get_weights(self.student),
            "keep": self.keep,
            "masks": self.masks,
            "deployed": None if self.deployed is None else get_weights(self.deployed),
            "fp32_accuracy": self.deployed_fp32_accuracy,
            "device_eval": self.device_eval,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        set_weights(self.teacher, state["teacher"])
        self.teacher_logits = state["teacher_logits"]
        self.keep, self.masks = state["keep"], state["masks"]
        if self.keep is not None:
            self.student, _ = prune_channels(
                self.student, input_shape=self.ctx.dataset.input_shape, keep=self.keep
            )
        set_weights(self.student, state["student"])
        self.deployed_fp32_accuracy = state["fp32_accuracy"]
        self.device_eval = state["device_eval"]
        self.deployed = None
        if state.get("deployed") is not None:
            qat = self._opts.quantization == "qat"
            self.deployed = fold_batchnorm(self.student) if qat else copy.deepcopy(self.student)
            set_weights(self.deployed, state["deployed"])

    def deployed_module(self) -> nn.Module:
        """The float model the last artifact was quantized from (after pruning and QAT)."""
        if self.deployed is None:
            raise TinylargeError("no artifact has been deployed yet (the run has no rounds)")
        return self.deployed.eval()

    def calibration_inputs(self) -> np.ndarray:
        """The server-held calibration samples the artifacts were quantized with."""
        calib: np.ndarray = self.ctx.dataset.x_train[self.calib_idx]
        return calib

    def calibration_settings(self) -> dict[str, Any]:
        """How the artifacts' activation ranges were calibrated (``method``, ``percentile``)."""
        o = self._opts
        return {"method": o.calibration_method, "percentile": o.calibration_percentile}

    def summary_extras(self) -> dict[str, Any]:
        ctx, o = self.ctx, self._opts
        self._restore_artifacts()
        if self.artifacts is None:
            return {}
        art = self.artifacts
        prof = art.int8_profile
        rel = art.int8_path.relative_to(ctx.run_dir) if ctx.run_dir else art.int8_path
        per_profile, excluded = fits_by_profile(
            [(c.profile.id, self.fits[c.id]) for c in ctx.clients]
        )
        correct, total = self.device_eval
        return {
            "accuracy_source": "int8 ONNX artifact run in ONNX Runtime on the test set",
            "student_fp32_accuracy": self.deployed_fp32_accuracy,
            "artifact": {
                "path": str(rel),
                "format": "onnx-int8 (QDQ)",
                "bytes": art.int8_bytes,
                "fp32_bytes": art.fp32_bytes,
                "size_ratio": art.size_ratio,
                "peak_sram_bytes": prof.peak_sram_bytes,
                "macs": prof.macs,
                "params": prof.params,
                "quantization": o.quantization,
                "prune": o.prune,
            },
            "teacher": {
                "model": self.teacher_spec.name,
                "options": dict(self.teacher_spec.options),
                "params": self.teacher_profile.params,
                "macs": self.teacher_profile.macs,
            },
            "server_split": {"fraction": o.server_fraction, "samples": len(self.server_idx)},
            "device_eval_accuracy": correct / total if total else None,
            "device_eval_samples": total,
            "fits": {pid: v["fits"] for pid, v in per_profile.items()},
            "fit_per_profile": per_profile,
            "excluded": excluded,
            "peak_sram_bytes": prof.peak_sram_bytes,
            "flash_bytes": prof.flash_bytes,
            "params": prof.params,
        }
