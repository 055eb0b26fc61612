"""The device catalogue: real devices, each figure with its source.

The catalogue is package data (``devices.yaml`` next to this module): for every
device its tier (``mcu``, ``sbc``, ``phone``, ``edge``, ``cloud``), memory,
clock, effective MAC/s on a *named* runtime, power, radios and whether it can
train. Every entry lists its sources; figures derived from benchmarks (MLPerf
Tiny, MLPerf Inference, vendor peak derated) carry a note saying how.

>>> from tinylarge.hardware.catalogue import get_device
>>> get_device("stm32l4r5").sram_bytes
655360
>>> get_device("stm32l4r5").tier
'mcu'

Effective MAC/s are the throughput of a regular convolution on the device's
runtime; :attr:`DeviceProfile.op_efficiency` scales it per operator class,
because runtimes such as TFLite Micro + CMSIS-NN run depthwise convolutions
several times slower per MAC. The Cortex-M figures are calibrated against the
MLPerf Tiny reference results (:mod:`tinylarge.hardware.calibration`); see
``docs/devices.md`` for every derivation.

The file is validated when loaded (positive numbers, contiguous SRAM not above
total SRAM, known tiers and operator classes, sources present); a bad entry
raises :class:`~tinylarge.errors.TinylargeError` naming the device and field.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from types import MappingProxyType
from typing import Any, Literal, get_args

import yaml

from tinylarge.errors import TinylargeError, UnknownNameError
from tinylarge.models.profile import OP_CLASSES, OpClass
from tinylarge.registry import Registry

Tier = Literal["mcu", "sbc", "phone", "edge", "cloud"]
#: Device tiers, from the smallest to the largest.
TIERS: tuple[Tier, ...] = get_args(Tier)

Dtype = Literal["int8", "fp32"]

#: Package-data file the catalogue is read from.
CATALOGUE_FILE = "devices.yaml"


@dataclass(frozen=True)
class DeviceProfile:
    """One real device as the cost model and the fit check see it.

    Attributes:
        id: short stable name (``"stm32l4r5"``), used in configs and the CLI.
        name: vendor part or board name.
        tier: one of :data:`TIERS`.
        sram_bytes: on-chip SRAM (MCUs) or DRAM / GPU memory (others) a runtime
            can use.
        sram_contiguous_bytes: largest contiguous range of that memory; an
            inference tensor arena must fit in it.
        flash_bytes: storage for the model (on-chip flash or MRAM, a board's
            external flash, or a system's disk).
        clock_hz: clock of the unit that runs the model (CPU, or GPU for GPUs).
        int8_macs_per_s: effective int8 multiply-accumulates per second of a
            regular convolution on ``runtime``.
        fp32_macs_per_s: the same at fp32.
        runtime: the inference runtime the rates were measured or derived for.
        active_power_w: power while computing, in watts.
        idle_power_w: power while waiting with memory retained, in watts.
        radios: link presets the device can use.
        can_train: whether on-device training is possible at all (the memory
            check then decides whether a given model fits).
        sources: URLs of datasheets, product pages and benchmark results.
        notes: how derived figures were obtained and which are estimates.
        op_efficiency: throughput multiplier per operator class, relative to
            the conv rate (1.0 for ``conv``).
        op_overhead_s: fixed time per executed operator (dispatch, kernel
            setup or launch), in seconds.
        core: Cortex-M core class (``m0plus``, ``m4f``, ``m7``, ``m33``, ``m85``) of a
            device whose int8 inference is priced by an inference stack
            (:mod:`tinylarge.hardware.stacks`); ``None`` for the others.
        stack: the inference stack the int8 rates are for (``None`` without a core).
        int8_op_efficiency: per-operator-class multipliers of int8 inference on the
            stack (``None``: ``op_efficiency``, which fp32 and training always use).
        int8_op_overhead_s: per-operator time of int8 inference on the stack.
        cost_source: where the int8 rates come from (fitted rows, or transferred).
        energy_source: how energy per inference is obtained (fitted power, or active
            power x latency).
        catalogue_power_w: the catalogue's own active power (``active_power_w`` may be
            replaced by a stack's fitted power).
        core_factor: this part's own cycle factor against a Cortex-M4F where it was
            measured directly (``None``: its core class's fitted factor).
    """

    id: str
    name: str
    tier: Tier
    sram_bytes: int
    sram_contiguous_bytes: int
    flash_bytes: int
    clock_hz: float
    int8_macs_per_s: float
    fp32_macs_per_s: float
    runtime: str
    active_power_w: float
    idle_power_w: float
    radios: tuple[str, ...]
    can_train: bool
    sources: tuple[str, ...]
    notes: str
    op_efficiency: Mapping[OpClass, float] = field(
        default_factory=lambda: MappingProxyType(dict.fromkeys(OP_CLASSES, 1.0))
    )
    op_overhead_s: float = 0.0
    core: str | None = None
    stack: str | None = None
    int8_op_efficiency: Mapping[OpClass, float] | None = None
    int8_op_overhead_s: float | None = None
    cost_source: str = ""
    energy_source: str = "active power x latency"
    catalogue_power_w: float | None = None
    core_factor: float | None = None

    def efficiency(self, dtype: Dtype) -> Mapping[OpClass, float]:
        """Per-operator-class multipliers at ``dtype`` (the stack's for int8)."""
        if dtype == "int8" and self.int8_op_efficiency is not None:
            return self.int8_op_efficiency
        return self.op_efficiency

    def overhead_s(self, dtype: Dtype) -> float:
        """Time per executed operator at ``dtype`` (the stack's for int8)."""
        if dtype == "int8" and self.int8_op_overhead_s is not None:
            return self.int8_op_overhead_s
        return self.op_overhead_s

    def macs_per_s(self, dtype: Dtype) -> float:
        """Effective conv MAC/s at ``dtype`` (``"int8"`` or ``"fp32"``)."""
        if dtype == "int8":
            return self.int8_macs_per_s
        if dtype == "fp32":
            return self.fp32_macs_per_s
        raise TinylargeError(f"unknown dtype {dtype!r}; known: fp32, int8")

    def to_dict(self) -> dict[str, Any]:
        """All fields as plain JSON-ready values."""
        return {
            "id": self.id,
            "name": self.name,
            "tier": self.tier,
            "sram_bytes": self.sram_bytes,
            "sram_contiguous_bytes": self.sram_contiguous_bytes,
            "flash_bytes": self.flash_bytes,
            "clock_hz": self.clock_hz,
            "int8_macs_per_s": self.int8_macs_per_s,
            "fp32_macs_per_s": self.fp32_macs_per_s,
            "runtime": self.runtime,
            "active_power_w": self.active_power_w,
            "idle_power_w": self.idle_power_w,
            "radios": list(self.radios),
            "can_train": self.can_train,
            "op_efficiency": dict(self.op_efficiency),
            "op_overhead_s": self.op_overhead_s,
            "core": self.core,
            "stack": self.stack,
            "int8_op_efficiency": (
                dict(self.int8_op_efficiency) if self.int8_op_efficiency is not None else None
            ),
            "int8_op_overhead_s": self.int8_op_overhead_s,
            "cost_source": self.cost_source,
            "energy_source": self.energy_source,
            "core_factor": self.core_factor,
            "sources": list(self.sources),
            "notes": self.notes,
        }


# ----------------------------------------------------------------- validation

_INT_FIELDS = ("sram_bytes", "sram_contiguous_bytes", "flash_bytes")
_POSITIVE_FIELDS = (
    "clock_hz",
    "int8_macs_per_s",
    "fp32_macs_per_s",
    "active_power_w",
    "idle_power_w",
)
#: A device with a ``stack`` takes its int8 rate from the stack (tinylarge.hardware.stacks).
_OPTIONAL = frozenset({"core", "stack", "core_factor"})
_REQUIRED = frozenset(
    {
        "id",
        "name",
        "tier",
        *_INT_FIELDS,
        *_POSITIVE_FIELDS,
        "runtime",
        "op_efficiency",
        "op_overhead_s",
        "radios",
        "can_train",
        "sources",
        "notes",
    }
)


def _bad(where: str, message: str) -> TinylargeError:
    return TinylargeError(f"{CATALOGUE_FILE}: {where}: {message}")


def _number(where: str, key: str, value: object, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(where, f"field {key!r} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        limit = ">= 0" if allow_zero else "> 0"
        raise _bad(where, f"field {key!r} must be a finite number {limit}, got {value!r}")
    return number


def _efficiency(where: str, value: object) -> dict[OpClass, float]:
    if not isinstance(value, Mapping):
        raise _bad(where, f"op efficiencies must be a mapping of {', '.join(OP_CLASSES)}")
    unknown = sorted(set(value) - {*OP_CLASSES, "note"})
    if unknown:
        raise _bad(where, f"unknown operator class {unknown[0]!r}; known: {', '.join(OP_CLASSES)}")
    missing = [op for op in OP_CLASSES if op not in value]
    if missing:
        raise _bad(where, f"op efficiency missing for {', '.join(missing)}")
    return {op: _number(where, op, value[op]) for op in OP_CLASSES}


def _strings(where: str, key: str, value: object, *, non_empty: bool) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _bad(where, f"field {key!r} must be a list of non-empty strings")
    if non_empty and not value:
        raise _bad(where, f"field {key!r} must not be empty")
    return tuple(value)


def _device(
    entry: object, index: int, profiles: Mapping[str, dict[OpClass, float]]
) -> DeviceProfile:
    if not isinstance(entry, Mapping):
        raise _bad(f"device #{index}", "each device must be a mapping")
    where = f"device {entry.get('id', f'#{index}')!r}"
    has_stack = "stack" in entry or "core" in entry
    if has_stack and not ("stack" in entry and "core" in entry):
        raise _bad(where, "give both 'core' and 'stack', or neither")
    if "core_factor" in entry and not has_stack:
        raise _bad(where, "core_factor needs a core and a stack")
    if has_stack and "int8_macs_per_s" in entry:
        raise _bad(where, "int8_macs_per_s comes from the stack; remove it")
    required = _REQUIRED - {"int8_macs_per_s"} if has_stack else _REQUIRED
    missing = sorted(required - set(entry))
    if missing:
        raise _bad(where, f"missing field(s) {', '.join(missing)}")
    extra = sorted(set(entry) - _REQUIRED - _OPTIONAL)
    if extra:
        raise _bad(where, f"unknown field(s) {', '.join(extra)}")
    for key in ("id", "name", "runtime", "notes"):
        if not isinstance(entry[key], str) or not entry[key].strip():
            raise _bad(where, f"field {key!r} must be a non-empty string")
    tier = entry["tier"]
    if tier not in TIERS:
        raise _bad(where, f"unknown tier {tier!r}; known: {', '.join(TIERS)}")
    ints: dict[str, int] = {}
    for key in _INT_FIELDS:
        value = entry[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise _bad(where, f"field {key!r} must be a positive integer of bytes, got {value!r}")
        ints[key] = value
    if ints["sram_contiguous_bytes"] > ints["sram_bytes"]:
        raise _bad(
            where,
            f"sram_contiguous_bytes {ints['sram_contiguous_bytes']} exceeds "
            f"sram_bytes {ints['sram_bytes']}",
        )
    floats = {
        key: _number(where, key, entry[key]) if key in entry else math.nan
        for key in _POSITIVE_FIELDS
    }
    overhead = _number(where, "op_overhead_s", entry["op_overhead_s"], allow_zero=True)
    eff = entry["op_efficiency"]
    if isinstance(eff, str):
        if eff not in profiles:
            raise UnknownNameError("efficiency profile", eff, profiles)
        efficiency = profiles[eff]
    else:
        efficiency = _efficiency(where, eff)
    if not isinstance(entry["can_train"], bool):
        raise _bad(where, "field 'can_train' must be true or false")
    sources = _strings(where, "sources", entry["sources"], non_empty=True)
    if not all(s.startswith(("https://", "http://")) for s in sources):
        raise _bad(where, "every source must be a URL")
    device = DeviceProfile(
        id=entry["id"],
        name=entry["name"],
        tier=tier,
        sram_bytes=ints["sram_bytes"],
        sram_contiguous_bytes=ints["sram_contiguous_bytes"],
        flash_bytes=ints["flash_bytes"],
        clock_hz=floats["clock_hz"],
        int8_macs_per_s=floats["int8_macs_per_s"],
        fp32_macs_per_s=floats["fp32_macs_per_s"],
        runtime=entry["runtime"],
        active_power_w=floats["active_power_w"],
        idle_power_w=floats["idle_power_w"],
        radios=_strings(where, "radios", entry["radios"], non_empty=False),
        can_train=entry["can_train"],
        sources=sources,
        notes=" ".join(entry["notes"].split()),
        op_efficiency=MappingProxyType(dict(efficiency)),
        op_overhead_s=overhead,
        catalogue_power_w=floats["active_power_w"],
    )
    if not has_stack:
        return device
    from tinylarge.hardware.stacks import with_stack

    try:
        factor = None
        if "core_factor" in entry:
            factor = _number(where, "core_factor", entry["core_factor"])
        device = replace(device, core=str(entry["core"]), core_factor=factor)
        return with_stack(device, str(entry["stack"]))
    except (TinylargeError, KeyError) as exc:
        raise _bad(where, f"core/stack: {exc}") from None


def parse_catalogue(data: object) -> list[DeviceProfile]:
    """Validate the parsed catalogue document and build its profiles.

    Args:
        data: the YAML document as Python objects: a mapping with
            ``efficiency_profiles`` (name -> per-operator-class multipliers) and
            ``devices`` (a list of entries; ``op_efficiency`` is a profile name
            or an inline mapping).

    Raises:
        TinylargeError: the first invalid entry, naming the device and field.
    """
    if not isinstance(data, Mapping) or not isinstance(data.get("devices"), list):
        raise _bad("top level", "expected a mapping with a 'devices' list")
    raw_profiles = data.get("efficiency_profiles", {})
    if not isinstance(raw_profiles, Mapping):
        raise _bad("efficiency_profiles", "expected a mapping of name -> efficiencies")
    profiles = {
        str(name): _efficiency(f"efficiency profile {name!r}", value)
        for name, value in raw_profiles.items()
    }
    devices = [_device(entry, i, profiles) for i, entry in enumerate(data["devices"])]
    seen: set[str] = set()
    for device in devices:
        if device.id in seen:
            raise _bad(f"device {device.id!r}", "duplicate id")
        seen.add(device.id)
    return devices


@functools.cache
def _registry() -> Registry[DeviceProfile]:
    text = resources.files("tinylarge.hardware").joinpath(CATALOGUE_FILE).read_text("utf-8")
    registry: Registry[DeviceProfile] = Registry("device")
    for device in parse_catalogue(yaml.safe_load(text)):
        registry.add(device.id, device)
    return registry


def get_device(device_id: str) -> DeviceProfile:
    """The catalogue entry ``device_id``.

    Raises:
        UnknownNameError: ``device_id`` is not in the catalogue (the message
            lists the known ids).
    """
    return _registry()[device_id]


def device_ids() -> list[str]:
    """Catalogue ids, sorted."""
    return _registry().names()


def all_devices() -> list[DeviceProfile]:
    """All catalogue entries, by tier (small to large) then id."""
    order = {tier: i for i, tier in enumerate(TIERS)}
    return sorted((d for _, d in _registry().items()), key=lambda d: (order[d.tier], d.id))
