"""``tinylarge profile MODEL``: per-layer MACs, parameters and memory of a model.

MODEL is a zoo name (``tinylarge profile cnn-tiny --input-shape 1,28,28``) or
a ``.tflite``/``.onnx`` file. With ``--device`` the profile is checked against
a catalogue device: does it fit flash and SRAM, and what one inference costs
in seconds and joules.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tinylarge.errors import TinylargeError

if TYPE_CHECKING:
    from tinylarge.models.profile import ModelProfile

ORDER = 70
#: Most classes ``--num-classes`` may ask for (a large vocabulary's worth).
MAX_CLASSES = 1_000_000


def num_classes(text: str) -> int:
    """``--num-classes``: an integer from 1 to :data:`MAX_CLASSES`."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 1 <= value <= MAX_CLASSES:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_CLASSES:,}, got {value}")
    return value


def register(sub: Any) -> None:
    """Add the `profile` command to the subparsers `sub`."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "profile",
        help="per-layer MACs, parameters, flash and peak SRAM of a model",
        description="Profile a zoo model or a .tflite/.onnx file: MACs, parameters, "
        "activation bytes per layer, flash bytes and peak SRAM from a memory plan. "
        "With --device, also whether it fits and the latency and energy of one inference.",
    )
    parser.add_argument(
        "model", metavar="MODEL", help="zoo model (see docs/models.md) or a .tflite/.onnx file"
    )
    parser.add_argument(
        "--input-shape",
        default=None,
        help="input shape without the batch dimension, e.g. 1,28,28 (zoo models; "
        "default: the model's own)",
    )
    parser.add_argument("--num-classes", type=num_classes, default=10, help="classes (zoo models)")
    parser.add_argument(
        "--dtype",
        choices=("fp32", "int8"),
        default="fp32",
        help="bytes of weights and activations (zoo models; a file has its own)",
    )
    parser.add_argument("--device", default=None, help="catalogue device id to check against")
    parser.add_argument(
        "--stack",
        default=None,
        help="inference stack of --device for int8 latency (e.g. x-cube-ai@9.0; default: the "
        "device's own; docs/devices.md lists them)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.set_defaults(func=run)


def parse_shape(text: str) -> tuple[int, ...]:
    """Parse ``"1,28,28"`` (or ``"1x28x28"``) into a shape of positive integers: at most 4
    dimensions of at most 65,536 each, and at most 2**31 values in all."""
    parts = [p.strip() for p in text.replace("x", ",").split(",")]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if not shape or len(shape) > 4 or any(not 1 <= d <= 65_536 for d in shape):
        raise TinylargeError(
            "--input-shape must be 1 to 4 comma-separated integers from 1 to 65536 like "
            f"1,28,28, got {text!r}"
        )
    if math.prod(shape) > 2**31:
        raise TinylargeError(f"--input-shape {text!r} has more than 2**31 values")
    return shape


def load_profile(
    model: str, *, input_shape: str | None, num_classes: int, dtype: str
) -> ModelProfile:
    """Profile a zoo model by name or a model file by path."""
    from tinylarge.models.files import FILE_READERS, profile_file
    from tinylarge.models.profiler import profile_model
    from tinylarge.models.zoo import MODELS, build_model

    path = Path(model)
    if path.suffix.lower() in FILE_READERS or (path.suffix and model not in MODELS):
        if input_shape is not None:
            raise TinylargeError("--input-shape applies to zoo models only, not to model files")
        return profile_file(path)
    spec = MODELS[model]
    shape = parse_shape(input_shape) if input_shape is not None else spec.default_input_shape
    module = build_model(model, input_shape=shape, num_classes=num_classes)
    return profile_model(
        module, input_shape=shape, name=model, dtype="int8" if dtype == "int8" else "fp32"
    )


def device_report(
    profile: ModelProfile, device_id: str, *, stack: str | None = None
) -> dict[str, Any]:
    """Fit check and per-inference cost of ``profile`` on catalogue device ``device_id``
    running inference stack ``stack`` (default: the device's own)."""
    from tinylarge.hardware.catalogue import get_device
    from tinylarge.hardware.cost import inference_cost
    from tinylarge.hardware.fit import check_fit
    from tinylarge.hardware.stacks import with_stack

    device = get_device(device_id)
    if stack is not None:
        device = with_stack(device, stack)
    fit = check_fit(profile, device)
    cost = inference_cost(profile, device)
    report: dict[str, Any] = {
        "device": device_id,
        "stack": device.stack,
        "fits": bool(fit.fits),
        "latency_s": float(cost.latency_s),
        "energy_j": float(cost.energy_j),
        "latency_source": device.cost_source if profile.dtype == "int8" else device.runtime,
        "energy_source": device.energy_source,
        "training_source": (
            f"{device.fp32_macs_per_s:.3g} fp32 MAC/s, the catalogue's own calibration (the "
            "device's notes), not the stack's: MLPerf Tiny is int8 inference only"
        ),
    }
    if not fit.fits:
        report["reason"] = str(fit.reason)
    return report


def to_json(profile: ModelProfile) -> dict[str, Any]:
    """The profile as the JSON object ``tinylarge profile --json`` prints."""
    return {
        "model": profile.name,
        "input_shape": list(profile.input_shape),
        "dtype": profile.dtype,
        "macs": profile.macs,
        "params": profile.params,
        "weight_bytes": profile.weight_bytes,
        "flash_bytes": profile.flash_bytes,
        "peak_sram_bytes": profile.peak_sram_bytes,
        "arena_bytes": profile.extra.get("arena_bytes"),
        "tflm_arena_bytes": profile.extra.get("tflm_arena_bytes"),
        "train_memory_bytes": profile.train_memory_bytes,
        "flash_bytes_fp32": profile.extra.get("flash_bytes_fp32"),
        "flash_bytes_int8": profile.extra.get("flash_bytes_int8"),
        "macs_by_op": profile.macs_by_op(),
        "layers": [
            {
                "name": layer.name,
                "kind": layer.kind,
                "op": layer.op,
                "macs": layer.macs,
                "params": layer.params,
                "output_shape": list(layer.output_shape),
                "output_bytes": layer.output_bytes,
            }
            for layer in profile.layers
        ],
    }


def run(args: argparse.Namespace) -> int:
    from tinylarge.cli._output import print_json, print_table

    profile = load_profile(
        args.model, input_shape=args.input_shape, num_classes=args.num_classes, dtype=args.dtype
    )
    report = to_json(profile)
    if args.stack is not None and args.device is None:
        raise TinylargeError("--stack needs --device: the stack of which device?")
    if args.device is not None:
        report.update(device_report(profile, args.device, stack=args.stack))
    if args.json:
        print_json(report)
        return 0
    rows = [
        [
            _short(layer.name),
            layer.kind,
            layer.op,
            layer.macs,
            layer.params,
            "x".join(str(d) for d in layer.output_shape),
            layer.output_bytes,
        ]
        for layer in profile.layers
    ]
    shape = "x".join(str(d) for d in profile.input_shape)
    print_table(
        ["layer", "type", "op", "MACs", "params", "output", "output B"],
        rows,
        title=f"{profile.name} ({shape}, {profile.dtype})",
    )
    totals: list[list[Any]] = [
        ["MACs", profile.macs],
        ["params", profile.params],
        ["weight bytes", profile.weight_bytes],
        ["flash bytes", profile.flash_bytes],
        ["peak SRAM bytes", profile.peak_sram_bytes],
        ["arena bytes (greedy)", report["arena_bytes"]],
        *_tflm_rows(report.get("tflm_arena_bytes")),
        ["train memory bytes (batch 1)", profile.train_memory_bytes],
    ]
    if args.device is not None:
        totals += [
            [f"fits {args.device}", "yes" if report["fits"] else f"no: {report['reason']}"],
            ["stack", report["stack"] or "-"],
            ["latency s", report["latency_s"]],
            ["energy J", report["energy_j"]],
            ["latency from", report["latency_source"] or "-"],
            ["energy from", report["energy_source"]],
            ["training from", report["training_source"]],
        ]
    print_table(["total", "value"], totals)
    return 0


def _tflm_rows(arenas: dict[str, int] | None) -> list[list[Any]]:
    """Rows of the predicted TFLite Micro arena per build (none for float models)."""
    if not arenas:
        return []
    return [
        ["TFLite Micro arena, x86-64 (predicted)", arenas["x86-64"]],
        ["TFLite Micro arena, 32-bit Cortex-M (predicted)", arenas["cortex-m"]],
    ]


def _short(name: str, *, max_chars: int = 40) -> str:
    """A layer name for a table: the last of TFLite's ``;``-joined fused names, clipped."""
    last = name.rsplit(";", 1)[-1]
    return last if len(last) <= max_chars else "…" + last[-(max_chars - 1) :]
