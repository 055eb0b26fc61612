"""``tinylarge export RUN_DIR --format onnx-int8|c-header|tflite|c-source [--out PATH]``.

Reads the deployable artifacts of a completed run (the ``kd`` scheme writes
them into ``RUN_DIR/artifacts``) and writes the requested format; every file
gets its input contract beside it (same stem, ``.json``):

- ``onnx-int8``: the int8 QDQ ONNX artifact the run measured (copied to
  ``--out`` if given, with its contract);
- ``c-header``: a C array of an artifact's bytes for firmware
  (``--source onnx-int8`` by default, or ``tflite``);
- ``tflite``: a fully-integer TFLite file converted from the run's deployed
  model with litert-torch (the ``tflite`` extra), calibrated on the same
  server-held samples as the ONNX artifact; its test accuracy and its agreement
  with the ONNX artifact are printed, and it is run in TFLite Micro (the
  ``tflite-micro`` extra): its test accuracy there and the smallest arena it
  runs in, beside the predicted arena (x86-64 and 32-bit builds);
- ``c-source``: a C99 library of the TFLite artifact, optionally built for a
  Cortex-M and run in QEMU (:mod:`tinylarge.cli.export_csource`).

A run of a scheme without artifacts, or an unfinished run, is a one-line error
(exit code 2).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from tinylarge.errors import TinylargeError

ORDER = 35
FORMATS = ("onnx-int8", "c-header", "tflite", "c-source")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "export",
        help="write a run's deployable artifact: int8 ONNX, C header or TFLite",
        description="Export the deployable artifact of a completed run (scheme kd) as int8 "
        "ONNX, a C header for firmware or an int8 TFLite file (needs the tflite extra). "
        "An input-contract JSON is written beside every file.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a completed run directory")
    p.add_argument("--format", required=True, choices=FORMATS, help="what to write")
    p.add_argument("--out", help="output file (default: inside RUN_DIR/artifacts)")
    p.add_argument(
        "--source",
        choices=("onnx-int8", "tflite"),
        default="onnx-int8",
        help="artifact a c-header embeds (default onnx-int8)",
    )
    p.add_argument("--target", help="c-source: also build firmware for a core (cortex-m4|m7|m33)")
    p.add_argument(
        "--qemu",
        type=int,
        default=0,
        metavar="N",
        help="c-source with --target: run N test inputs in QEMU and compare with the host build",
    )
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    p.set_defaults(func=run)


def artifact_of(run_dir: Path) -> Path:
    """The int8 ONNX artifact of a completed run, or a user error saying why there is none."""
    summary_path = run_dir / "summary.json"
    if not (run_dir / "config.yaml").is_file():
        raise TinylargeError(f"{run_dir} is not a run directory (no config.yaml)")
    if not summary_path.is_file():
        raise TinylargeError(
            f"run {run_dir} is not complete (no summary.json); finish it with "
            f"`tinylarge run CONFIG --out {run_dir} --resume`"
        )
    summary = json.loads(summary_path.read_text())
    art = summary.get("artifact")
    if not isinstance(art, dict) or "path" not in art:
        raise TinylargeError(
            f"run {run_dir} (scheme {summary.get('scheme')!r}) has no deployable artifacts; "
            "run a scheme that compresses a model for devices: kd"
        )
    path = run_dir / str(art["path"])
    if not path.is_file():
        raise TinylargeError(f"artifact {path} named in summary.json is missing")
    return path


def tflite_path(onnx_path: Path) -> Path:
    """Where the TFLite artifact goes by default: ``student-int8-tflite.tflite`` (own contract)."""
    return onnx_path.with_name(f"{onnx_path.stem}-tflite.tflite")


def _copy_with_contract(src: Path, dst: Path) -> Path:
    from tinylarge.compress.contract import read_contract, write_contract

    contract = read_contract(src)
    contract.pop("artifact", None)
    if dst.resolve() != src.resolve():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return write_contract(dst, contract)


def run(args: argparse.Namespace) -> int:
    from tinylarge.cli._output import print_json, print_table

    run_dir = Path(args.run_dir)
    onnx_path = artifact_of(run_dir)
    info: dict[str, Any]
    if args.format == "onnx-int8":
        out = Path(args.out) if args.out else onnx_path
        contract = _copy_with_contract(onnx_path, out)
        info = {"format": "onnx-int8", "path": str(out), "contract": str(contract)}
    elif args.format == "tflite":
        out = Path(args.out) if args.out else tflite_path(onnx_path)
        info = export_tflite(run_dir, onnx_path, out)
    elif args.format == "c-source":
        from tinylarge.cli.export_csource import export_c_source_cmd

        info = export_c_source_cmd(run_dir, onnx_path, args)
    else:
        info = export_header(run_dir, onnx_path, args)
    path = Path(info["path"])
    info["bytes"] = (
        sum(f.stat().st_size for f in path.iterdir()) if path.is_dir() else path.stat().st_size
    )
    if args.json:
        print_json(info)
    else:
        print_table(["", ""], [[k, v] for k, v in info.items()], title=f"export {run_dir}")
    return 0


def export_header(run_dir: Path, onnx_path: Path, args: argparse.Namespace) -> dict[str, Any]:
    from tinylarge.compress.contract import read_contract, write_contract
    from tinylarge.compress.export import c_header, c_symbol

    src = onnx_path if args.source == "onnx-int8" else tflite_path(onnx_path)
    if not src.is_file():
        export_tflite(run_dir, onnx_path, src)
    symbol = c_symbol(src.name)
    out = Path(args.out) if args.out else src.with_name(f"{symbol}.h")
    out.parent.mkdir(parents=True, exist_ok=True)
    data = src.read_bytes()
    out.write_text(c_header(data, symbol=symbol, source=src.name))
    contract = read_contract(src)
    embedded = contract.pop("artifact")
    contract["embeds"] = embedded
    path = write_contract(out, contract)
    return {"format": "c-header", "path": str(out), "contract": str(path), "embeds": src.name}


def export_tflite(run_dir: Path, onnx_path: Path, out: Path) -> dict[str, Any]:
    """Convert the run's deployed model to a TFLite int8 file; check it against the ONNX one."""
    import numpy as np

    from tinylarge.compress.contract import make_contract, write_contract
    from tinylarge.compress.export import onnx_logits
    from tinylarge.compress.tflite import export_tflite_int8, tflite_logits
    from tinylarge.config import load_config
    from tinylarge.results.rundir import RunDir
    from tinylarge.schemes.kd import KD
    from tinylarge.sim.context import Context
    from tinylarge.sim.engine import build_scheme

    config = load_config(run_dir / "config.yaml")
    ctx = Context(config, backend="sequential")
    scheme = build_scheme(ctx)
    if not isinstance(scheme, KD):
        raise TinylargeError(f"run {run_dir} (scheme {config.scheme.name!r}) cannot export tflite")
    scheme.setup()
    scheme.load_state(RunDir(run_dir).load_checkpoint()["scheme"])
    ds = ctx.dataset
    out.parent.mkdir(parents=True, exist_ok=True)
    io = export_tflite_int8(
        scheme.deployed_module(),
        out,
        input_shape=ds.input_shape,
        calibration=scheme.calibration_inputs(),
        **scheme.calibration_settings(),
    )
    contract = make_contract(
        preprocessing=ds.preprocessing,
        sample_shape=ds.input_shape,
        labels=ds.label_names,
        dtype="int8",
        channels_last=io.channels_last,
        input_scale=io.input_scale,
        input_zero_point=io.input_zero_point,
        output={
            "dtype": "int8",
            "meaning": "logits",
            "scale": io.output_scale,
            "zero_point": io.output_zero_point,
        },
    )
    micro, micro_logits = verify_in_tflite_micro(out, ds.x_test, ds.y_test, io.channels_last)
    lite = tflite_logits(out, ds.x_test, channels_last=io.channels_last)
    if micro_logits is not None:
        same = np.argmax(micro_logits, 1) == np.argmax(lite, 1)
        micro["tflite_micro_agreement_with_litert"] = float(np.mean(same))
    path = write_contract(out, contract)
    ref = onnx_logits(onnx_path, ds.x_test)
    return {
        "format": "tflite",
        "path": str(out),
        "contract": str(path),
        "test_accuracy": float(np.mean(np.argmax(lite, 1) == ds.y_test)),
        "onnx_int8_test_accuracy": float(np.mean(np.argmax(ref, 1) == ds.y_test)),
        "agreement_with_onnx_int8": float(np.mean(np.argmax(lite, 1) == np.argmax(ref, 1))),
        **micro,
    }


def verify_in_tflite_micro(
    path: Path, x: Any, y: Any, channels_last: bool
) -> tuple[dict[str, Any], Any]:
    """Run the exported file in TFLite Micro: its test accuracy, arena need and outputs.

    A file TFLM cannot run as an int8 model (float or hybrid operators, an
    operator outside its resolver) is a one-line error and the file is removed.
    Without the ``tflite-micro`` extra the check is skipped and says why.
    """
    import numpy as np

    from tinylarge.compress.tflm import unavailable_reason, verify_tflite
    from tinylarge.models.tflite_reader import read_tflite
    from tinylarge.models.tflm_arena import predict_arenas

    reason = unavailable_reason()
    if reason:
        return {"tflite_micro": f"not verified: {reason}"}, None
    try:
        run = verify_tflite(path, x, channels_last=channels_last)
    except TinylargeError:
        path.unlink(missing_ok=True)
        raise
    predicted = predict_arenas(read_tflite(path))
    info = {
        "tflite_micro_test_accuracy": float(np.mean(np.argmax(run.logits, 1) == y)),
        "tflite_micro_arena_bytes": run.arena_bytes,
        "predicted_arena_bytes": {k: v.arena_bytes for k, v in predicted.items()},
    }
    return info, run.logits
