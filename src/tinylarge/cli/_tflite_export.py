"""The TFLite artifact of a kd run: where it goes, its conversion from the run's deployed
model checked against the int8 ONNX one, and its check in TensorFlow Lite Micro.

Shared by ``tinylarge export --format tflite`` (:mod:`tinylarge.cli.export`) and the C
export, which generates its library from this file (:mod:`tinylarge.cli.export_csource`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tinylarge.errors import TinylargeError


def tflite_path(onnx_path: Path) -> Path:
    """Where the TFLite artifact goes by default: ``student-int8-tflite.tflite`` (own contract)."""
    return onnx_path.with_name(f"{onnx_path.stem}-tflite.tflite")


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
