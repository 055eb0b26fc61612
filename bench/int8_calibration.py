"""How int8 calibration moves the NSL-KDD student: flips against fp32 per method.

For each seed, trains the KD student of bench/compression.py's NSL-KDD setup
(same data, teacher and seeds), quantizes it with plain min/max calibration and
with the calibration inputs clipped to a percentile of ``|x|``
(:func:`tinylarge.compress.quantize.calibration_inputs`), runs every int8 file
in ONNX Runtime and prints the share of predictions that change against the
fp32 student on the training rows (needs no test labels) and on the test rows,
and int8 - fp32 test accuracy in points.

    TINYLARGE_DATA=../shared/datasets .venv/bin/python bench/int8_calibration.py [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from compression import SETUPS, server_data, train_student, train_teacher
from tinylarge.compress.export import export_onnx_int8, onnx_logits
from tinylarge.compress.train import predict_logits
from tinylarge.data import load_dataset

#: (label, calibrate on all server rows instead of the bench's subset, method, percentile)
VARIANTS = [
    ("min/max", False, "minmax", 100.0),
    ("clip 99.99 % (default)", False, "percentile", 99.99),
    ("clip 99.9 %", False, "percentile", 99.9),
    ("clip 99.99 %, all rows", True, "percentile", 99.99),
]


def run_seed(seed: int) -> list[str]:
    """One table row: ``train flips / test flips, int8 - fp32`` per variant."""
    setup = SETUPS["nsl-kdd"]
    ds = load_dataset("nsl-kdd")
    x, y, calib = server_data(setup, ds, seed)
    teacher = train_teacher(setup, ds, x, y, seed)
    student = train_student(setup, ds, x, y, seed, teacher_logits=predict_logits(teacher, x))
    fp_test = predict_logits(student, ds.x_test).argmax(1)
    fp_train = predict_logits(student, x).argmax(1)
    fp_acc = np.mean(fp_test == ds.y_test)
    cells = []
    with tempfile.TemporaryDirectory() as tmp:
        for _, all_rows, method, pct in VARIANTS:
            path = export_onnx_int8(
                student, Path(tmp) / "q.onnx", input_shape=ds.input_shape,
                calibration=x if all_rows else calib, method=method, percentile=pct,
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
