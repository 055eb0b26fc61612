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

Rounds. One round is one release, on the round clock
(:mod:`tinylarge.sim.rounds`). First the server's work, before the device
phase: round 0 trains the teacher (``teacher_epochs``) and computes its logits
on the server split; every round distils the student for ``distill_epochs``
more epochs (round 0 also prunes, then fine-tunes), optionally fine-tunes a
fake-quantized copy (``qat``), and quantizes it to an int8 ONNX artifact
calibrated on ``calibration_samples`` server-held samples. Then the release:
the devices the artifact fits are admitted (:meth:`~tinylarge.sim.context.Context.admit`
with the fit of the int8 file's own profile), ``training.fraction`` of them
(at least ``training.min_clients``) are sampled as the release's targets, each
downloads the artifact, runs it on its local samples and uploads an 8-byte
report (correct, total). Outages, ``engine.dropout_prob`` and
``engine.deadline_s`` act as in every scheme: a device that drops out after
the download does not evaluate, one whose report arrives after the deadline is
a straggler (its work billed, its report discarded), and the device phase ends
when the last device still in the release is done (or at the deadline).

Devices never train in kd: ``training.local_epochs``, ``batch_size``, ``lr``,
``optimizer``, ``momentum`` and ``weight_decay`` are refused at validation
(:class:`~tinylarge.schemes.options.compress.KDOptions`); the server's training
takes ``scheme.options``.

Metrics. ``accuracy`` is the int8 artifact's, measured by running the file in
ONNX Runtime on the test set; ``large_accuracy`` is the teacher's (fp32). The
summary adds the artifact (bytes, fp32 bytes, peak SRAM), per device profile
the artifact's fit with the shortfall in bytes when it does not fit and the
latency and energy of one inference (``fit_per_profile``); ``fits`` and
``excluded`` are the engine's, from the last release's admission.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from tinylarge.compress.distill import KDConfig
from tinylarge.compress.export import onnx_logits
from tinylarge.compress.fit_report import DeviceFit, deployed_profile, device_fit, fit_per_profile
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
from tinylarge.compress.train import StepHook, TrainConfig, accuracy, predict_logits, train_model
from tinylarge.errors import TinylargeError
from tinylarge.hardware.cost import Infer, Train, Work
from tinylarge.models.profile import ModelProfile
from tinylarge.models.profiler import profile_model
from tinylarge.models.weights import get_weights, set_weights
from tinylarge.models.zoo import ModelSpec
from tinylarge.schemes.base import Scheme, register_scheme
from tinylarge.schemes.options.compress import KDOptions
from tinylarge.sim.context import Client
from tinylarge.sim.rounds import Round, RoundReport

#: Bytes of the evaluation report a device uploads: correct and total as two int32.
REPORT_BYTES = 8
#: Salt of each server-side training call's seed (``ctx.task_seed(round, 10**6 + salt)``).
_SALTS = {"teacher-train": 0, "distill": 1, "prune-finetune": 2, "qat": 3}


@register_scheme
class KD(Scheme[KDOptions]):
    """Server-side distillation, compression and int8 deployment to the devices it fits."""

    name = "kd"

    # -- set-up --------------------------------------------------------------
    def setup(self) -> None:
        o, ctx, ds = self.options, self.ctx, self.ctx.dataset
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
        #: The last artifact's fit on every device (what the last release admitted).
        self.fits: dict[int, DeviceFit] = {}
        # before the run starts: the profiler's int8 estimate of the student
        estimate = self._profile(self.student, "int8")
        self._admit(
            {c.id: device_fit(estimate, c.profile) for c in ctx.clients},
            what=f"run model {ctx.config.model.name!r} at int8",
        )

    def _admit(self, fits: dict[int, DeviceFit], *, what: str) -> list[Client]:
        return self.ctx.admit(
            {cid: fit.verdict() for cid, fit in fits.items()},
            what=what,
            hint="choose a smaller model or prune it (scheme.options.prune)",
        )

    def _profile(self, model: nn.Module, dtype: Literal["fp32", "int8"] = "fp32") -> ModelProfile:
        o = self.options
        return profile_model(
            model,
            input_shape=self.ctx.dataset.input_shape,
            dtype=dtype,
            train_batch_size=o.batch_size,
            optimizer=o.optimizer,
        )

    def _train(
        self,
        rnd: int,
        model: nn.Module,
        *,
        epochs: int,
        what: str,
        kd: KDConfig | None = None,
        after_step: StepHook | None = None,
    ) -> float:
        """Train ``model`` on the server split (distilling when ``kd`` is given)."""
        o, ds = self.options, self.ctx.dataset
        config = TrainConfig(
            epochs=epochs,
            batch_size=o.batch_size,
            lr=o.lr,
            optimizer=o.optimizer,
            seed=self.ctx.task_seed(rnd, 1_000_000 + _SALTS[what]),  # server-side streams
            threads=self.ctx.config.engine.threads,
            schedule=o.schedule,
        )
        return train_model(
            model,
            ds.x_train[self.server_idx],
            ds.y_train[self.server_idx],
            config=config,
            teacher_logits=None if kd is None else self.teacher_logits,
            kd=kd,
            after_step=after_step,
        )

    # -- one round = one release ----------------------------------------------
    def run_round(self, rnd: int) -> RoundReport:
        o, ctx, ds = self.options, self.ctx, self.ctx.dataset
        n = len(self.server_idx)
        #: The server's work of this release, in the order it ran (billed before the devices).
        work: list[tuple[str, Work]] = []
        if self.teacher_logits is None:
            self._train(rnd, self.teacher, epochs=o.teacher_epochs, what="teacher-train")
            work.append(("teacher-train", Train(self.teacher_profile, o.teacher_epochs * n)))
            self.teacher_logits = predict_logits(self.teacher, ds.x_train[self.server_idx])
            work.append(("teacher-logits", Infer(self.teacher_profile, batch=n)))
        kd = KDConfig(temperature=o.temperature, alpha=o.alpha)
        student_profile = self._profile(self.student)
        loss = self._train(
            rnd, self.student, epochs=o.distill_epochs, what="distill", kd=kd,
            after_step=self._hook(),
        )  # fmt: skip
        work.append(("distill", Train(student_profile, o.distill_epochs * n)))
        if o.prune != "none" and self.keep is None and self.masks is None:
            self._prune()
            student_profile = self._profile(self.student)
            epochs = o.prune_finetune_epochs
            if epochs:
                self._train(
                    rnd, self.student, epochs=epochs, what="prune-finetune", kd=kd,
                    after_step=self._hook(),
                )  # fmt: skip
                work.append(("prune-finetune", Train(student_profile, epochs * n)))
        deploy = self.student
        calib = ds.x_train[self.calib_idx]
        if o.quantization == "qat":
            qat = prepare_qat(self.student, calib)
            self._train(rnd, qat, epochs=o.qat_epochs, what="qat", kd=kd)
            work.append(("qat", Train(student_profile, o.qat_epochs * n)))
            deploy = strip_qat(qat)
        self.deployed = deploy
        artifacts = self._build_artifact(deploy, calib)
        work.append(("calibrate", Infer(student_profile, batch=len(calib))))

        targets = self._admit(self.fits, what="run the int8 artifact")
        rd = ctx.round(rnd, targets)
        for what, w in work:
            rd.server(w, what=what)
        self._release(rd, artifacts)
        return rd.report(train_loss=loss)

    def _hook(self) -> StepHook | None:
        return None if self.masks is None else mask_hook(self.masks)

    def _prune(self) -> None:
        o = self.options
        if o.prune == "magnitude":
            self.masks = magnitude_masks(self.student, amount=o.prune_amount)
            apply_masks(self.student, self.masks)
        else:
            self.student, self.keep = prune_channels(
                self.student, input_shape=self.ctx.dataset.input_shape, amount=o.prune_amount
            )

    def _build_artifact(self, model: nn.Module, calib: np.ndarray) -> Artifacts:
        """Write the int8 artifact of ``model`` and check the file's fit on every device."""
        ctx, ds, o = self.ctx, self.ctx.dataset, self.options
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
            method=o.calibration_method,
            percentile=o.calibration_percentile,
        )
        self.artifact_bytes = self.artifacts.int8_path.read_bytes()
        prof = self.artifacts.int8_profile
        self.fits = {c.id: device_fit(prof, c.profile) for c in ctx.clients}
        return self.artifacts

    def _release(self, rd: Round, artifacts: Artifacts) -> None:
        """Send the artifact to the round's targets; each runs it on its samples and reports."""
        active = rd.download(
            {c.id: [("artifact", len(self.artifact_bytes))] for c in rd.participants}
        )
        evaluators = [c for c in active if len(self.local[c.id])]
        tasks = [ArtifactEvalTask(c.id, self.artifact_bytes, self.local[c.id]) for c in evaluators]
        results = {r.client: r for r in self.ctx.backend.map(evaluate_artifact_task, tasks)}
        deployed = deployed_profile(artifacts.int8_profile)
        for c in evaluators:
            work = Infer(deployed, batch=1, calls=results[c.id].samples, dtype="int8")
            rd.compute(c, work, what="on-device-eval")
        # every device that ran the release reports (a device without local samples: 0 of 0)
        kept = rd.upload({c.id: [("eval-report", REPORT_BYTES)] for c in active})
        counted = [results[c.id] for c in kept if c.id in results]
        self.device_eval = (sum(r.correct for r in counted), sum(r.samples for r in counted))

    def _restore_artifacts(self) -> None:
        """After a resume with no round left to run: read the last artifacts back from disk."""
        run_dir = self.ctx.run_dir
        if self.artifacts is not None or run_dir is None:
            return
        self.artifacts = load_artifacts(run_dir / "artifacts", stem="student")
        if self.artifacts is not None:
            self.artifact_bytes = self.artifacts.int8_path.read_bytes()

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
            "device_eval": list(self.device_eval),
            "fits": {cid: fit.to_dict() for cid, fit in self.fits.items()},
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
        correct, total = state["device_eval"]
        self.device_eval = (int(correct), int(total))
        self.deployed = None
        if state["deployed"] is not None:
            qat = self.options.quantization == "qat"
            self.deployed = fold_batchnorm(self.student) if qat else copy.deepcopy(self.student)
            set_weights(self.deployed, state["deployed"])
        self.fits = {int(cid): DeviceFit(**fit) for cid, fit in state["fits"].items()}
        if self.fits:  # the last release's admission, for summary.json's fits and excluded
            self._admit(self.fits, what="run the int8 artifact")

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
        o = self.options
        return {"method": o.calibration_method, "percentile": o.calibration_percentile}

    def summary_extras(self) -> dict[str, Any]:
        ctx, o = self.ctx, self.options
        self._restore_artifacts()
        if self.artifacts is None:
            return {}
        art = self.artifacts
        prof = art.int8_profile
        rel = art.int8_path.relative_to(ctx.run_dir) if ctx.run_dir else art.int8_path
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
            "fit_per_profile": fit_per_profile(
                [(c.profile.id, self.fits[c.id]) for c in ctx.clients if c.id in self.fits]
            ),
            "peak_sram_bytes": prof.peak_sram_bytes,
            "flash_bytes": prof.flash_bytes,
            "params": prof.params,
        }
