"""Predicted against measured TFLite Micro arenas: the table in docs/models.md.

For every MLPerf Tiny reference model (``$TINYLARGE_DATA/mlperf-tiny-models``)
and every example whose run exports a ``.tflite`` (the ``kd`` examples), the
smallest arena the TFLite Micro interpreter (``tflite-micro`` wheel, x86-64)
runs the model in, found by bisection to the byte, beside
:mod:`tinylarge.models.tflm_arena`'s prediction for that build and for a
32-bit Cortex-M build, the activation peak of the plan, and the
``RecordingMicroAllocator``'s head/tail split. Run as

    TINYLARGE_DATA=../shared/datasets nice python bench/tflm_arena.py [--json OUT]

Each example's student is built as its config says (zoo model and options;
``kd_nslkdd``'s structured channel pruning at its ``prune_amount``, with the
scheme's own ``prune_channels``), quantized with the kd pipeline's TFLite
exporter on 512 training samples and run in TFLite Micro on the whole test
set (:func:`tinylarge.compress.tflm.verify_tflite`). The students are not
trained: the arena depends on the operators, shapes and per-channel
quantization of the file, which training does not change (pruning keeps a
fixed share of channels), and it saves the teacher's training.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = ("kd_fmnist", "kd_nslkdd")
MLPERF = ("ad01_int8", "kws_ref_model", "pretrainedResnet_quant", "vww_96_int8")


def export_example(example: str, work: Path) -> tuple[Path, dict[str, Any]]:
    """The example's (untrained, pruned as configured) student as .tflite, checked in TFLM."""
    import numpy as np
    import torch

    from tinylarge.compress.prune import prune_channels
    from tinylarge.compress.tflite import export_tflite_int8, tflite_logits
    from tinylarge.compress.tflm import verify_tflite
    from tinylarge.data import load_dataset
    from tinylarge.models.zoo import build_model

    cfg: dict[str, Any] = yaml.safe_load((REPO / "examples" / f"{example}.yaml").read_text())
    ds = load_dataset(cfg["task"]["dataset"], seed=int(cfg.get("seed", 0)))
    torch.manual_seed(int(cfg.get("seed", 0)))
    model = build_model(cfg["model"]["name"], input_shape=ds.input_shape,
                        num_classes=ds.num_classes, **cfg["model"].get("options", {}))  # fmt: skip
    options = cfg["scheme"].get("options", {})
    if options.get("prune") == "channels":
        model, _ = prune_channels(model, input_shape=ds.input_shape,
                                  amount=float(options["prune_amount"]))  # fmt: skip
    path = work / f"{example}.tflite"
    io = export_tflite_int8(model, path, input_shape=ds.input_shape,
                            calibration=ds.x_train[:512])  # fmt: skip
    run = verify_tflite(path, ds.x_test, channels_last=io.channels_last)
    lite = tflite_logits(path, ds.x_test, channels_last=io.channels_last)
    same = np.argmax(run.logits, 1) == np.argmax(lite, 1)
    info = {
        "test_samples": len(ds.x_test),
        "tflite_micro_agreement_with_litert": float(np.mean(same)),
        "max_abs_logit_difference": float(np.max(np.abs(run.logits - lite))),
        "tflite_micro_arena_bytes": run.arena_bytes,
    }
    return path, info


def row(name: str, path: Path) -> dict[str, Any]:
    from tinylarge.compress.tflm import allocations, smallest_arena_bytes
    from tinylarge.models.tflite_reader import read_tflite
    from tinylarge.models.tflm_arena import predict_arenas

    predicted = predict_arenas(read_tflite(path))
    x86, arm = predicted["x86-64"], predicted["cortex-m"]
    data = path.read_bytes()
    measured = smallest_arena_bytes(data, hint_bytes=x86.arena_bytes)
    recorded = allocations(data, measured)
    return {
        "model": name,
        "activation_peak_bytes": x86.activation_peak_bytes,
        "measured_x86_64_bytes": measured,
        "predicted_x86_64_bytes": x86.arena_bytes,
        "error": (x86.arena_bytes - measured) / measured,
        "predicted_cortex_m_bytes": arm.arena_bytes,
        "head_measured": recorded.get("head"),
        "head_predicted": x86.head_bytes,
        "tail_measured": recorded.get("tail"),
        "tail_predicted": x86.tail_bytes,
        "binding_moment": max(
            ("final", x86.tail_bytes + x86.head_bytes),
            ("planning", x86.planning_peak_bytes),
            ("prepare", x86.prepare_peak_bytes),
            key=lambda kv: kv[1],
        )[0],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--skip-examples", action="store_true", help="MLPerf Tiny models only")
    args = parser.parse_args()
    data_dir = Path(os.environ.get("TINYLARGE_DATA", REPO.parent / "shared" / "datasets"))
    rows = [row(name, data_dir / "mlperf-tiny-models" / f"{name}.tflite") for name in MLPERF]
    exports: dict[str, Any] = {}
    if not args.skip_examples:
        with tempfile.TemporaryDirectory() as tmp:
            for example in EXAMPLES:
                path, info = export_example(example, Path(tmp))
                exports[example] = info
                rows.append(row(f"{example} (student)", path))
    print(
        "| model | activation peak B | TFLM x86-64 measured B | predicted x86-64 B | error "
        "| predicted 32-bit Cortex-M B | head meas./pred. B | tail meas./pred. B | set by |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['model']} | {r['activation_peak_bytes']:,} | {r['measured_x86_64_bytes']:,} "
              f"| {r['predicted_x86_64_bytes']:,} | {100 * r['error']:+.1f} % "
              f"| {r['predicted_cortex_m_bytes']:,} | {r['head_measured']:,} / "
              f"{r['head_predicted']:,} | {r['tail_measured']:,} / {r['tail_predicted']:,} "
              f"| {r['binding_moment']} |")  # fmt: skip
    for example, info in exports.items():
        print(f"{example}: {json.dumps(info)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "exports": exports}, indent=2))
    worst = max(abs(r["error"]) for r in rows)
    print(f"worst |error| {100 * worst:.1f} %", file=sys.stderr)
    return 0 if worst <= 0.10 else 1


if __name__ == "__main__":
    sys.exit(main())
