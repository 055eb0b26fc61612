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

from tinylarge.cli._tflite_export import export_tflite, tflite_path
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
