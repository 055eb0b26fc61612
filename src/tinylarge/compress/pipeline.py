"""Teacher -> student -> artifact: the steps the ``kd`` scheme and the benchmark share.

- :func:`default_teacher`: the server's large model for an input shape
  (``cnn-large`` for images and spectrograms, a wide ``mlp`` for tables).
- :func:`stratified_fraction`: the server-held share of a training set.
- :func:`build_artifacts`: the fp32 and int8 ONNX files of a student with an
  input contract beside each, and the int8 file's own profile.
- :func:`artifact_accuracy`: the accuracy of an artifact file run in ONNX Runtime.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from tinylarge.compress.contract import make_contract, write_contract
from tinylarge.compress.export import export_onnx, export_onnx_int8, onnx_logits
from tinylarge.compress.quantize import DEFAULT_PERCENTILE
from tinylarge.models.files import profile_file
from tinylarge.models.profile import ModelProfile
from tinylarge.sim.training import accuracy


def default_teacher(input_shape: Sequence[int]) -> tuple[str, dict[str, Any]]:
    """The large zoo model the server trains as a teacher for inputs of ``input_shape``.

    ``(C, H, W)`` inputs (images, MFCC maps): ``cnn-large`` at width 16
    (VGG-style, about 7 M MACs at 28x28); anything else: an ``mlp`` with
    hidden layers of 512 and 256 units.
    """
    if len(input_shape) == 3:
        return "cnn-large", {"width": 16}
    return "mlp", {"hidden": [512, 256]}


def stratified_fraction(y: np.ndarray, fraction: float, *, seed: int) -> np.ndarray:
    """Sorted indices of a ``fraction`` of ``y`` drawn per class (at least one per class).

    >>> stratified_fraction(np.array([0, 0, 1, 1]), 0.5, seed=0).size
    2
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0:
        return np.arange(len(y))
    rng = np.random.default_rng([seed, 0x5E7])
    chosen = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        take = max(1, round(fraction * len(members)))
        chosen.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Artifacts:
    """The files of one student: fp32 and int8 ONNX, each with its contract.

    ``int8_profile`` is profiled from the int8 file itself (flash = file size).
    """

    fp32_path: Path
    int8_path: Path
    fp32_bytes: int
    int8_bytes: int
    int8_profile: ModelProfile

    @property
    def size_ratio(self) -> float:
        """int8 bytes over fp32 bytes."""
        return self.int8_bytes / self.fp32_bytes


def build_artifacts(
    model: nn.Module,
    out_dir: str | Path,
    *,
    stem: str,
    input_shape: Sequence[int],
    calibration: np.ndarray,
    preprocessing: Mapping[str, Any],
    labels: Sequence[str],
    method: str = "percentile",
    percentile: float = DEFAULT_PERCENTILE,
) -> Artifacts:
    """Write ``<stem>-fp32.onnx``, ``<stem>-int8.onnx`` and their contracts into ``out_dir``.

    ``method``, ``percentile``: activation-range calibration (:mod:`tinylarge.compress.quantize`).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fp32 = export_onnx(model, out / f"{stem}-fp32.onnx", input_shape=input_shape)
    int8 = export_onnx_int8(
        model,
        out / f"{stem}-int8.onnx",
        input_shape=input_shape,
        calibration=calibration,
        method=method,
        percentile=percentile,
    )
    for path in (fp32, int8):
        contract = make_contract(
            preprocessing=preprocessing, sample_shape=input_shape, labels=labels, dtype="float32"
        )
        write_contract(path, contract)
    return Artifacts(
        fp32_path=fp32,
        int8_path=int8,
        fp32_bytes=fp32.stat().st_size,
        int8_bytes=int8.stat().st_size,
        int8_profile=profile_file(int8),
    )


def load_artifacts(out_dir: str | Path, *, stem: str) -> Artifacts | None:
    """The artifacts :func:`build_artifacts` wrote into ``out_dir``, or ``None`` if absent."""
    fp32, int8 = (Path(out_dir) / f"{stem}-{kind}.onnx" for kind in ("fp32", "int8"))
    if not (fp32.is_file() and int8.is_file()):
        return None
    return Artifacts(fp32, int8, fp32.stat().st_size, int8.stat().st_size, profile_file(int8))


def artifact_accuracy(path: str | Path | bytes, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of the artifact file run in ONNX Runtime on ``(x, y)``."""
    return accuracy(onnx_logits(path, x), y)


@dataclass(frozen=True)
class ArtifactEvalTask:
    """A device runs the artifact on its local labelled samples (federated evaluation)."""

    client: int
    artifact: bytes
    indices: np.ndarray


@dataclass(frozen=True)
class ArtifactEvalResult:
    client: int
    correct: int
    samples: int


def evaluate_artifact_task(
    task: ArtifactEvalTask, x_train: np.ndarray, y_train: np.ndarray
) -> ArtifactEvalResult:
    """Backend task: correct predictions of the artifact on ``x_train[task.indices]``.

    Module-level and deterministic (ONNX Runtime on one thread), so the
    sequential and Ray backends agree.
    """
    if len(task.indices) == 0:
        return ArtifactEvalResult(task.client, 0, 0)
    logits = onnx_logits(task.artifact, x_train[task.indices])
    correct = int(np.sum(np.argmax(logits, axis=1) == y_train[task.indices]))
    return ArtifactEvalResult(task.client, correct, len(task.indices))
