"""``tinylarge export RUN_DIR --format c-source [--target CORE [--qemu N]]``.

Generates the C99 library of the run's int8 TFLite artifact (converted first
if the run has none yet) into ``RUN_DIR/artifacts/student-int8-c`` (or
``--out``) and prints the fit report's prediction of the firmware's flash and
RAM. With ``--target`` (cortex-m4, cortex-m7, cortex-m33) it cross-compiles
the firmware with arm-none-eabi-gcc and prints the linked image's flash and
RAM beside the prediction; with ``--qemu N`` it runs the first N test inputs
in QEMU and compares the outputs with the same library built for the host.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from tinylarge.errors import TinylargeError


def export_c_source_cmd(run_dir: Path, onnx_path: Path, args: argparse.Namespace) -> dict[str, Any]:
    from tinylarge.cli._tflite_export import export_tflite, tflite_path
    from tinylarge.compress.contract import read_contract
    from tinylarge.compress.csource import export_c_source
    from tinylarge.compress.fit_report import c_source_footprint

    if args.qemu and not args.target:
        raise TinylargeError("--qemu N needs --target (cortex-m4 or cortex-m7)")
    if args.target:
        from tinylarge.compress.firmware import TARGETS

        TARGETS[args.target]  # an unknown core: one line naming the known ones, nothing written
    tflite = tflite_path(onnx_path)
    if not tflite.is_file():
        export_tflite(run_dir, onnx_path, tflite)
    out = Path(args.out) if args.out else onnx_path.with_name(f"{onnx_path.stem}-c")
    src = export_c_source(tflite, out, contract=read_contract(tflite))
    predicted = c_source_footprint(src.model)
    info: dict[str, Any] = {
        "format": "c-source",
        "path": str(out),
        "files": sorted(p.name for p in out.iterdir()),
        "source": tflite.name,
        "operators": ", ".join(src.model.operators),
        "arena_bytes": src.model.arena_bytes,
        "predicted_flash_bytes": predicted.flash_bytes,
        "predicted_ram_bytes": predicted.ram_bytes,
    }
    if args.target:
        info.update(_firmware(run_dir, src, args, predicted.flash_bytes, predicted.ram_bytes))
    return info


def _firmware(
    run_dir: Path, src: Any, args: argparse.Namespace, flash: int, ram: int
) -> dict[str, Any]:
    from tinylarge.compress.firmware import build_firmware, run_qemu

    image = build_firmware(
        src, args.target, src.directory.with_name(f"{src.directory.name}-{args.target}")
    )
    info: dict[str, Any] = {
        "target": args.target,
        "elf": str(image.elf),
        "flash_bytes": image.flash_bytes,
        "ram_bytes": image.ram_bytes,
        "sections": ", ".join(f"{k} {v}" for k, v in image.sections.items()),
        "flash_vs_predicted": round(image.flash_bytes / flash, 4),
        "ram_vs_predicted": round(image.ram_bytes / ram, 4),
    }
    if args.qemu:
        x = _test_inputs(run_dir, src, args.qemu)
        y_fw = run_qemu(image, x, output_bytes=_output_bytes(src))
        y_host = _host_outputs(src, x)
        info["qemu_inputs"] = len(x)
        info["qemu_classes"] = " ".join(str(int(c)) for c in np.argmax(y_fw, 1))
        info["qemu_matches_host"] = f"{int(np.all(y_fw == y_host, axis=1).sum())}/{len(x)}"
    return info


def _output_bytes(src: Any) -> int:
    return int(np.prod(src.model.output.shape))


def _test_inputs(run_dir: Path, src: Any, n: int) -> np.ndarray:
    """The first ``n`` test samples of the run's dataset, quantized as the contract says."""
    from tinylarge.compress.quantize import quantize
    from tinylarge.config import load_config
    from tinylarge.data.task import load_task_data

    config = load_config(run_dir / "config.yaml")
    task = config.task
    ds, _ = load_task_data(task.dataset, data_dir=task.data_dir, subset=task.subset,
                           seed=config.seed)  # fmt: skip
    x = ds.x_test[:n]
    if len(x.shape) == 4:  # (N, C, H, W) -> NHWC as the artifact takes it
        x = np.moveaxis(x, 1, -1)
    inp = src.model.input
    q = quantize(x, scale=inp.scales[0], zero_point=inp.zero_points[0])
    return np.ascontiguousarray(q.reshape(len(q), -1))


def _host_outputs(src: Any, x: np.ndarray) -> np.ndarray:
    import tempfile

    from tinylarge.compress.csource.host import HostModel, build_host_library

    with tempfile.TemporaryDirectory() as tmp:
        lib = build_host_library(src.c_files, Path(tmp) / "model.so")
        host = HostModel(
            lib, prefix=src.prefix, input_bytes=x.shape[1], output_bytes=_output_bytes(src)
        )
        return host.run(x)[0]
