"""LargeML -> TinyML compression on Fashion-MNIST, NSL-KDD and FSDD, over 3 seeds.

For every dataset and seed, on the server-held training data:

- the teacher (fp32, PyTorch);
- the student trained from scratch (fp32);
- the student distilled from the teacher (KD, fp32; Hinton et al. 2015);
- the KD student as an int8 ONNX artifact (ONNX Runtime static PTQ, QDQ,
  TFLite int8 scheme), its accuracy measured by running the file; calibrated
  as the ``kd`` scheme does by default (inputs clipped to their 99.99th
  percentile of ``|x|``, then min/max) and, for comparison, with plain min/max;
- the KD student with 50% of its channels pruned (structured) and fine-tuned
  with KD, as an int8 artifact;
- the KD student with 50% of its weights pruned (magnitude) and fine-tuned
  with KD, as an int8 artifact (a dense file: same bytes, half the weights zero);
- the KD student after one epoch of quantization-aware training, as an int8 artifact.

Bytes are the artifact file sizes (the fp32 rows: the fp32 ONNX file); peak
SRAM and the fit on ``nrf52840`` and ``stm32f746`` come from profiling the
artifact file. Every (dataset, seed) is one job; ``--jobs 2`` runs two at a
time on two cores, each on one thread (results do not depend on ``--jobs``).

    TINYLARGE_DATA=../shared/datasets .venv/bin/python bench/compression.py [--jobs 2]
        [--datasets fashion-mnist,nsl-kdd,fsdd] [--seeds 0,1,2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tinylarge.compress.distill import KDConfig
from tinylarge.compress.export import onnx_logits
from tinylarge.compress.fit_report import device_fit
from tinylarge.compress.pipeline import artifact_accuracy, build_artifacts, stratified_fraction
from tinylarge.compress.prune import apply_masks, magnitude_masks, mask_hook, prune_channels
from tinylarge.compress.qat import prepare_qat, strip_qat
from tinylarge.compress.quantize import DEFAULT_PERCENTILE, percentile_range
from tinylarge.compress.tflite import export_tflite_int8, litert_available, tflite_logits
from tinylarge.compress.train import TrainConfig, accuracy, predict_logits, train_model
from tinylarge.data import Dataset, load_dataset
from tinylarge.hardware.catalogue import get_device
from tinylarge.models.files import profile_file
from tinylarge.models.profiler import profile_model
from tinylarge.models.zoo import build_model

DEVICES = ("nrf52840", "stm32f746")


@dataclass(frozen=True)
class Setup:
    """What the bench trains on one dataset."""

    server_fraction: float
    teacher: tuple[str, dict[str, Any]]
    teacher_epochs: int
    student: tuple[str, dict[str, Any]]
    student_epochs: int
    finetune_epochs: int
    lr: float = 2e-3
    teacher_lr: float = 2e-3
    calibration: int = 512
    kd: KDConfig = field(default_factory=KDConfig)


SETUPS: dict[str, Setup] = {
    # Half of the 60,000 training images are server-held (the kd scheme's default split).
    "fashion-mnist": Setup(
        server_fraction=0.5,
        teacher=("cnn-tiny", {"width": 32}),
        teacher_epochs=3,
        student=("mlp", {"hidden": 64}),
        student_epochs=20,
        finetune_epochs=3,
    ),
    # The whole 20% training file (25,192 rows); the test file has unseen attack types.
    "nsl-kdd": Setup(
        server_fraction=1.0,
        teacher=("mlp", {"hidden": [512, 256]}),
        teacher_epochs=5,
        student=("mlp", {"hidden": [256, 64]}),
        student_epochs=5,
        finetune_epochs=2,
        lr=1e-3,
        teacher_lr=1e-3,
    ),
    # All 2,700 training recordings (each speaker's recordings 5-49).
    "fsdd": Setup(
        server_fraction=1.0,
        teacher=("cnn-large", {"width": 8}),
        teacher_epochs=15,
        student=("cnn-tiny", {"width": 4}),
        student_epochs=40,
        finetune_epochs=10,
        lr=3e-3,
    ),
}


def _build(spec: tuple[str, dict[str, Any]], ds: Dataset, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(spec[0], input_shape=ds.input_shape, num_classes=ds.num_classes, **spec[1])


def _cfg(setup: Setup, epochs: int, seed: int, *, teacher: bool = False) -> TrainConfig:
    lr = setup.teacher_lr if teacher else setup.lr
    return TrainConfig(epochs=epochs, batch_size=64, lr=lr, seed=seed, schedule="cosine", threads=1)


def server_data(setup: Setup, ds: Dataset, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The server-held training samples, their labels and the calibration subset."""
    idx = stratified_fraction(ds.y_train, setup.server_fraction, seed=seed)
    x, y = ds.x_train[idx], ds.y_train[idx]
    rng = np.random.default_rng([seed, 0xCA1])
    calib = x[np.sort(rng.choice(len(x), size=min(setup.calibration, len(x)), replace=False))]
    return x, y, calib


def train_teacher(setup: Setup, ds: Dataset, x: np.ndarray, y: np.ndarray, seed: int) -> nn.Module:
    teacher = _build(setup.teacher, ds, 1000 + seed)
    train_model(teacher, x, y, config=_cfg(setup, setup.teacher_epochs, 1000 + seed, teacher=True))
    return teacher


def train_student(
    setup: Setup,
    ds: Dataset,
    x: np.ndarray,
    y: np.ndarray,
    seed: int,
    teacher_logits: np.ndarray | None = None,
) -> nn.Module:
    """The student from scratch, or distilled from ``teacher_logits``."""
    student = _build(setup.student, ds, seed)
    kd = setup.kd if teacher_logits is not None else None
    train_model(student, x, y, config=_cfg(setup, setup.student_epochs, seed),
                teacher_logits=teacher_logits, kd=kd)  # fmt: skip
    return student


def run_job(job: tuple[str, int]) -> dict[str, Any]:
    """All rows of one dataset and seed (a process-pool task)."""
    name, seed = job
    setup = SETUPS[name]
    started = time.perf_counter()
    ds = load_dataset(name)
    x, y, calib = server_data(setup, ds, seed)
    rows: dict[str, dict[str, Any]] = {}
    sname = setup.student[0]

    teacher = train_teacher(setup, ds, x, y, seed)
    rows["teacher fp32"] = _torch_row(teacher, ds, setup.teacher[0])
    logits = predict_logits(teacher, x)

    scratch = train_student(setup, ds, x, y, seed)
    rows["student scratch fp32"] = _torch_row(scratch, ds, setup.student[0])

    student = train_student(setup, ds, x, y, seed, teacher_logits=logits)
    rows["student KD fp32"] = _torch_row(student, ds, setup.student[0])
    # the int8 input saturates outside the calibrated range: the fp32 model with that clipping
    lo, hi = percentile_range(calib, percentile=DEFAULT_PERCENTILE)
    clipped = np.clip(ds.x_test, lo, hi)
    clipped_accuracy = accuracy(predict_logits(student, clipped), ds.y_test)

    with tempfile.TemporaryDirectory() as tmp:
        art = _artifact(student, sname, ds, calib, Path(tmp), "kd")
        rows["student KD fp32"].update(bytes=art["fp32_bytes"], peak_sram_bytes=None, fits={})
        rows["student KD int8"] = art
        rows["student KD int8, min/max calibration"] = _artifact(
            student, sname, ds, calib, Path(tmp), "kdmm", method="minmax"
        )
        if litert_available():
            rows["student KD int8 TFLite"] = _tflite(student, sname, ds, calib, Path(tmp), art)

        small, _ = prune_channels(student, input_shape=ds.input_shape, amount=0.5)
        train_model(small, x, y, config=_cfg(setup, setup.finetune_epochs, seed + 1),
                    teacher_logits=logits, kd=setup.kd)  # fmt: skip
        rows["KD + 50% channels pruned, int8"] = _artifact(small, sname, ds, calib, Path(tmp), "ch")

        sparse = _build(setup.student, ds, seed)
        sparse.load_state_dict(student.state_dict())
        masks = magnitude_masks(sparse, amount=0.5)
        apply_masks(sparse, masks)
        train_model(sparse, x, y, config=_cfg(setup, setup.finetune_epochs, seed + 2),
                    teacher_logits=logits, kd=setup.kd, after_step=mask_hook(masks))  # fmt: skip
        rows["KD + 50% weights pruned, int8"] = _artifact(
            sparse, sname, ds, calib, Path(tmp), "mag"
        )

        qat = prepare_qat(student, calib)
        train_model(qat, x, y, config=_cfg(setup, 1, seed + 3), teacher_logits=logits,
                    kd=setup.kd)  # fmt: skip
        rows["KD + QAT (1 epoch), int8"] = _artifact(
            strip_qat(qat), sname, ds, calib, Path(tmp), "qat"
        )
    return {
        "dataset": name,
        "seed": seed,
        "server_samples": len(x),
        "kd_fp32_clipped_input_accuracy": clipped_accuracy,
        "rows": rows,
        "wall_s": time.perf_counter() - started,
    }


def _torch_row(model: nn.Module, ds: Dataset, name: str) -> dict[str, Any]:
    prof = profile_model(model, input_shape=ds.input_shape)
    return {
        "model": name,
        "accuracy": accuracy(predict_logits(model, ds.x_test), ds.y_test),
        "params": prof.params,
        "macs": prof.macs,
        "bytes": None,
        "ratio": None,
        "peak_sram_bytes": None,
        "fits": {},
    }


def _artifact(
    model: nn.Module,
    name: str,
    ds: Dataset,
    calib: np.ndarray,
    tmp: Path,
    stem: str,
    method: str = "percentile",
) -> dict[str, Any]:
    arts = build_artifacts(
        model, tmp, stem=stem, input_shape=ds.input_shape, calibration=calib,
        preprocessing=ds.preprocessing, labels=ds.label_names, method=method,
    )  # fmt: skip
    prof = arts.int8_profile
    fits = {d: device_fit(prof, get_device(d)) for d in DEVICES}
    logits = onnx_logits(arts.int8_path, ds.x_test)
    return {
        "model": name,
        "accuracy": accuracy(logits, ds.y_test),
        "predictions": np.argmax(logits, 1),
        "fp32_artifact_accuracy": artifact_accuracy(arts.fp32_path, ds.x_test, ds.y_test),
        "params": prof.params,
        "macs": prof.macs,
        "bytes": arts.int8_bytes,
        "fp32_bytes": arts.fp32_bytes,
        "ratio": arts.size_ratio,
        "peak_sram_bytes": prof.peak_sram_bytes,
        "fits": {d: f.fits if f.fits else f.reason for d, f in fits.items()},
        "latency_ms": {d: 1e3 * f.latency_s for d, f in fits.items()},
    }


def _tflite(
    model: nn.Module, name: str, ds: Dataset, calib: np.ndarray, tmp: Path, onnx_row: dict[str, Any]
) -> dict[str, Any]:
    path = tmp / "kd.tflite"
    io = export_tflite_int8(model, path, input_shape=ds.input_shape, calibration=calib)
    logits = tflite_logits(path, ds.x_test, channels_last=io.channels_last)
    prof = profile_file(path)
    fits = {d: device_fit(prof, get_device(d)) for d in DEVICES}
    return {
        "model": name,
        "accuracy": accuracy(logits, ds.y_test),
        "agreement_with_onnx_int8": float(np.mean(np.argmax(logits, 1) == onnx_row["predictions"])),
        "params": prof.params,
        "macs": prof.macs,
        "bytes": path.stat().st_size,
        "ratio": None,
        "peak_sram_bytes": prof.peak_sram_bytes,
        "fits": {d: f.fits if f.fits else f.reason for d, f in fits.items()},
        "latency_ms": {d: 1e3 * f.latency_s for d, f in fits.items()},
    }


def _diffs(a: list[float], b: list[float]) -> str:
    return ", ".join(f"{100 * (x - y):+.2f}" for x, y in zip(a, b, strict=True))


def _pm(values: list[float]) -> str:
    return f"{100 * np.mean(values):.2f} ± {100 * np.std(values):.2f}"


def table(results: list[dict[str, Any]]) -> str:
    """The markdown table: mean ± std over seeds per dataset and variant."""
    lines = [
        "| dataset | variant | params | accuracy % (mean ± std) | bytes | int8/fp32 | peak SRAM B "
        "| nrf52840 | stm32f746 |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    notes = []
    for name in dict.fromkeys(r["dataset"] for r in results):
        runs = [r for r in results if r["dataset"] == name]
        for variant in runs[0]["rows"]:
            rows = [r["rows"][variant] for r in runs]
            first = rows[0]

            def cell(key: str, first: dict[str, Any] = first) -> str:
                value = first.get(key)
                if value is None:
                    return "-"
                return f"{value:.3f}" if isinstance(value, float) else f"{value:,}"

            fits = [
                ("yes" if first["fits"][d] is True else "no") if d in first["fits"] else "-"
                for d in DEVICES
            ]
            lines.append(
                f"| {name} | {variant} ({first['model']}) | {first['params']:,} | "
                f"{_pm([r['accuracy'] for r in rows])} | {cell('bytes')} | {cell('ratio')} | "
                f"{cell('peak_sram_bytes')} | {fits[0]} | {fits[1]} |"
            )
        kd = [r["rows"]["student KD fp32"]["accuracy"] for r in runs]
        scratch = [r["rows"]["student scratch fp32"]["accuracy"] for r in runs]
        int8 = [r["rows"]["student KD int8"]["accuracy"] for r in runs]
        minmax = [r["rows"]["student KD int8, min/max calibration"]["accuracy"] for r in runs]
        ratio = [r["rows"]["student KD int8"]["ratio"] for r in runs]
        clipped = [r["kd_fp32_clipped_input_accuracy"] for r in runs]
        lite = [
            r["rows"].get("student KD int8 TFLite", {}).get("agreement_with_onnx_int8")
            for r in runs
        ]
        agree = (
            f"TFLite/ONNX int8 prediction agreement {min(lite) * 100:.2f} % at least; "
            if all(v is not None for v in lite)
            else ""
        )
        notes.append(
            f"- {name}: KD - scratch = {100 * (np.mean(kd) - np.mean(scratch)):+.2f} points "
            f"(per seed {_diffs(kd, scratch)}); "
            f"int8 - fp32 = {100 * (np.mean(int8) - np.mean(kd)):+.2f} points "
            f"(per seed {_diffs(int8, kd)}); with min/max calibration "
            f"{100 * (np.mean(minmax) - np.mean(kd)):+.2f} (per seed {_diffs(minmax, kd)}); "
            f"fp32 with inputs clipped to the int8 input range: {_pm(clipped)} %; "
            f"int8/fp32 bytes {max(ratio):.3f} at most; {agree}"
            f"{runs[0]['server_samples']:,} server-held training samples"
        )
    return "\n".join(lines) + "\n\n" + "\n".join(notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(SETUPS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--jobs", type=int, default=2, help="parallel jobs (one thread each)")
    parser.add_argument("--json", default=None, help="also write every number to this file")
    args = parser.parse_args()
    jobs = [(d, int(s)) for d in args.datasets.split(",") for s in args.seeds.split(",")]
    started = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            results = list(pool.map(run_job, jobs))
    else:
        results = [run_job(j) for j in jobs]
    print(table(results))
    print(f"\n{len(jobs)} jobs, {time.perf_counter() - started:.0f} s wall")
    if args.json:
        for r in results:
            for row in r["rows"].values():
                row.pop("predictions", None)
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
