"""How int8 calibration moves the NSL-KDD student: flips against fp32 per method.

For each seed, trains the KD student of bench/compression.py's NSL-KDD setup
(same data, teacher and seeds), quantizes it with plain min/max calibration and
with the calibration inputs clipped to a percentile of ``|x|``
(:func:`tinylarge.compress.quantize.calibration_inputs`), runs every int8 file
in ONNX Runtime and prints the share of predictions that change against the
fp32 student on the training rows (needs no test labels) and on the test rows,
and int8 - fp32 test accuracy in points.

    TINYLARGE_DATA=../shared/datasets .venv/bin/python bench/calibration.py [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from compression import SETUPS, _build, _cfg
from tinylarge.compress import predict_logits, train_model
from tinylarge.compress.export import export_onnx_int8, onnx_logits
from tinylarge.compress.pipeline import stratified_fraction
from tinylarge.data import load_dataset

#: (label, calibration rows (None: all), method, percentile)
VARIANTS = [
    ("min/max", 512, "minmax", 100.0),
    ("clip 99.99 % (default)", 512, "percentile", 99.99),
    ("clip 99.9 %", 512, "percentile", 99.9),
    ("clip 99.99 %, all rows", None, "percentile", 99.99),
]


def run_seed(seed: int) -> list[str]:
    """One table row: ``train flips / test flips, int8 - fp32`` per variant."""
    setup = SETUPS["nsl-kdd"]
    ds = load_dataset("nsl-kdd")
    idx = stratified_fraction(ds.y_train, setup.server_fraction, seed=seed)
    x, y = ds.x_train[idx], ds.y_train[idx]
    rng = np.random.default_rng([seed, 0xCA1])
    calib = x[np.sort(rng.choice(len(x), size=512, replace=False))]
    teacher = _build(setup.teacher, ds, 1000 + seed)
    train_model(teacher, x, y, config=_cfg(setup, setup.teacher_epochs, 1000 + seed, teacher=True))
    student = _build(setup.student, ds, seed)
    train_model(student, x, y, config=_cfg(setup, setup.student_epochs, seed),
                teacher_logits=predict_logits(teacher, x), kd=setup.kd)  # fmt: skip
    fp_test = predict_logits(student, ds.x_test).argmax(1)
    fp_train = predict_logits(student, x).argmax(1)
    fp_acc = np.mean(fp_test == ds.y_test)
    cells = []
    with tempfile.TemporaryDirectory() as tmp:
        for _, rows, method, pct in VARIANTS:
            path = export_onnx_int8(
                student, Path(tmp) / "q.onnx", input_shape=ds.input_shape,
                calibration=calib if rows else x, method=method, percentile=pct,
            )  # fmt: skip
            q_test = onnx_logits(path, ds.x_test).argmax(1)
            q_train = onnx_logits(path, x).argmax(1)
            diff = 100 * (np.mean(q_test == ds.y_test) - fp_acc)
            cells.append(
                f"{100 * np.mean(q_train != fp_train):.2f} / "
                f"{100 * np.mean(q_test != fp_test):.2f} %, {diff:+.2f}"
            )
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| seed | " + " | ".join(v[0] for v in VARIANTS) + " |")
    print("|---|" + "---|" * len(VARIANTS))
    for seed in (int(s) for s in args.seeds.split(",")):
        print(f"| {seed} | " + " | ".join(run_seed(seed)) + " |", flush=True)


if __name__ == "__main__":
    main()
