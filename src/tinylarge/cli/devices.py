"""`tinylarge devices`: the device catalogue.

    tinylarge devices [--tier TIER] [--json]

Prints one row per device (id, tier, memory, clock, effective MAC/s, runtime or,
for a Cortex-M device, its default inference stack, power, radios, whether it can
train); ``--json`` prints every field of every
entry, sources and derivation notes included.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tinylarge.hardware.catalogue import DeviceProfile

COLUMNS = (
    "id",
    "tier",
    "SRAM",
    "flash",
    "clock",
    "int8 MAC/s",
    "fp32 MAC/s",
    "runtime (int8 stack)",
    "active W",
    "idle W",
    "radios",
    "train",
)


ORDER = 50
#: The catalogue's tiers, smallest first, for the help text without loading the catalogue
#: (tests/hardware/test_cli_devices.py checks they are :data:`~tinylarge.hardware.catalogue.TIERS`).
TIER_NAMES = ("mcu", "sbc", "phone", "edge", "cloud")


def register(sub: Any) -> None:
    """Add the `devices` command to the subparsers `sub`."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "devices",
        help="list the device catalogue",
        description="List the device catalogue with effective MAC/s, memory and power.",
    )
    parser.add_argument("--tier", help=f"only this tier: {', '.join(TIER_NAMES)}")
    parser.add_argument("--json", action="store_true", help="machine output, all fields")
    parser.set_defaults(func=run)


def _clock(hz: float) -> str:
    return f"{hz / 1e9:.3g} GHz" if hz >= 1e9 else f"{hz / 1e6:.4g} MHz"


def _row(d: DeviceProfile) -> list[Any]:
    from tinylarge.hardware.fit import format_bytes

    return [
        d.id,
        d.tier,
        format_bytes(d.sram_bytes),
        format_bytes(d.flash_bytes),
        _clock(d.clock_hz),
        d.int8_macs_per_s,
        d.fp32_macs_per_s,
        d.stack or d.runtime.split(" (")[0],  # the full note is in --json
        d.active_power_w,
        d.idle_power_w,
        ", ".join(d.radios) or "-",
        d.can_train,
    ]


def select(tier: str | None) -> list[DeviceProfile]:
    """Catalogue entries, optionally of one tier.

    Raises:
        UnknownNameError: ``tier`` is not a known tier.
    """
    from tinylarge.errors import UnknownNameError
    from tinylarge.hardware.catalogue import TIERS, all_devices

    if tier is not None and tier not in TIERS:
        raise UnknownNameError("tier", tier, TIERS)
    return [d for d in all_devices() if tier is None or d.tier == tier]


def run(args: argparse.Namespace) -> int:
    from tinylarge.cli._output import print_json, print_table

    devices = select(args.tier)
    if args.json:
        print_json([d.to_dict() for d in devices])
    else:
        print_table(COLUMNS, [_row(d) for d in devices], title="tinylarge device catalogue")
    return 0
