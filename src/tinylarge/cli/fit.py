"""``tinylarge fit MODEL|RUN_DIR``: does it fit every catalogue device, and what does it cost?

MODEL is a zoo name (profiled at ``--dtype``, int8 by default), a ``.onnx`` or
``.tflite`` file, or a completed ``kd`` run directory (its int8 artifact). One
row per device: flash and SRAM against capacity (for an int8 ``.tflite``,
TFLite Micro's predicted arena: 32-bit build on microcontrollers, 64-bit
elsewhere; otherwise the activation peak), fits or the reason (flash
or SRAM, over by how many bytes), latency and energy of one inference. For a
zoo model, the layers a microcontroller int8 runtime cannot run are listed
(:mod:`tinylarge.compress.validate`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tinylarge.cli.profile import load_profile, num_classes, parse_shape

ORDER = 75


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "fit",
        help="fit, shortfall, latency and energy of a model on every catalogue device",
        description="Check a zoo model, a .onnx/.tflite file or a kd run's artifact against "
        "every catalogue device (or --devices): flash, peak SRAM, fits or by how many bytes "
        "not, latency and energy per inference.",
    )
    p.add_argument("model", metavar="MODEL|RUN_DIR", help="zoo model, model file or run dir")
    p.add_argument("--input-shape", default=None, help="zoo models: e.g. 1,28,28")
    p.add_argument("--num-classes", type=num_classes, default=10, help="zoo models: classes")
    p.add_argument("--dtype", choices=("fp32", "int8"), default="int8", help="zoo models")
    p.add_argument("--devices", default=None, help="comma-separated device ids (default: all)")
    p.add_argument(
        "--stack",
        default=None,
        help="inference stack for int8 latency (e.g. x-cube-ai@9.0); without --devices, the "
        "devices that can run it",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tinylarge.cli._output import print_json, print_table
    from tinylarge.compress.fit_report import device_fit
    from tinylarge.compress.validate import validate
    from tinylarge.hardware.catalogue import all_devices, get_device
    from tinylarge.hardware.stacks import allowed_stacks, get_stack, with_stack
    from tinylarge.models.zoo import MODELS, build_model

    target = Path(args.model)
    issues: list[dict[str, Any]] = []
    if target.is_dir():
        from tinylarge.cli.export import artifact_of

        source = artifact_of(target)
        profile = load_profile(str(source), input_shape=None, num_classes=0, dtype="int8")
    else:
        source = target
        profile = load_profile(
            args.model, input_shape=args.input_shape, num_classes=args.num_classes, dtype=args.dtype
        )
        if args.model in MODELS:
            shape = tuple(profile.input_shape)
            if args.input_shape is not None:
                shape = parse_shape(args.input_shape)
            module = build_model(args.model, input_shape=shape, num_classes=args.num_classes)
            issues = [vars(i) for i in validate(module, input_shape=shape)]
    named = [d.strip() for d in args.devices.split(",")] if args.devices else None
    chosen = all_devices() if named is None else [get_device(d) for d in named]
    if args.stack is not None:
        get_stack(args.stack)  # an unknown name fails before any device is dropped
        if named is None:
            chosen = [d for d in chosen if args.stack in allowed_stacks(d.id, d.core)]
        chosen = [with_stack(d, args.stack) for d in chosen]
    rows = [device_fit(profile, d) for d in chosen]
    report = {
        "model": str(source),
        "dtype": profile.dtype,
        "flash_bytes": profile.flash_bytes,
        "peak_sram_bytes": profile.peak_sram_bytes,
        "tflm_arena_bytes": profile.extra.get("tflm_arena_bytes"),
        "macs": profile.macs,
        "int8_issues": issues,
        "devices": [{**r.to_dict(), "stack": d.stack} for r, d in zip(rows, chosen, strict=True)],
    }
    if args.json:
        print_json(report)
        return 0
    print_table(
        ["device", "tier", "stack", "fits", "flash B", "flash cap B", "SRAM need B",
         "SRAM cap B", "latency ms", "energy mJ", "reason"],
        [
            [r.device, r.tier, d.stack or "-", r.fits, r.flash_bytes, r.flash_capacity_bytes,
             r.sram_bytes, r.sram_capacity_bytes, 1e3 * r.latency_s, 1e3 * r.energy_j,
             r.reason or ""]
            for r, d in zip(rows, chosen, strict=True)
        ],
        title=f"{source} ({profile.dtype}, {profile.macs:,} MACs, {_sram_basis(profile)})",
    )  # fmt: skip
    if issues:
        print_table(
            ["layer", "type", "why", "fix"],
            [[i["layer"], i["kind"], i["reason"], i["fix"] or "none"] for i in issues],
            title="layers an MCU int8 runtime cannot run",
        )
    return 0


def _sram_basis(profile: Any) -> str:
    """What the SRAM column counts: the activation peak, and the TFLM arenas if predicted."""
    peak = f"activation peak {profile.peak_sram_bytes:,} B"
    arenas = profile.extra.get("tflm_arena_bytes")
    if not arenas:
        return peak
    return (
        f"{peak}; TFLite Micro arena {arenas['cortex-m']:,} B (32-bit), "
        f"{arenas['x86-64']:,} B (x86-64)"
    )
