"""Inference stacks: the software that runs an int8 model on a microcontroller.

The same Cortex-M4F at 120 MHz runs keyword spotting in 182 ms with the 2020 reference
build of TFLite Micro and in 43 ms with X-CUBE-AI 9.0 (MLPerf Tiny): a device's int8
latency depends on its stack as much as on its core. A stack is named (``stacks.yaml``:
``tflm-reference``, ``x-cube-ai@9.0``, ``plumerai@2023.05``, ...; ``x-cube-ai``,
``plumerai`` and ``hale`` name the latest published version) and has fitted cycles per
MAC per operator class (``stack_rates.yaml``, written by ``bench/calibration.py
--write`` from :mod:`tinylarge.hardware.stack_fit`).

A catalogue device with a Cortex-M ``core`` has a default ``stack``; a config's device
group (``{profile: stm32h7a3, stack: x-cube-ai@9.0}``) and the CLI (``--stack``) may
choose another. :func:`with_stack` prices int8 inference of a device with a stack:

    int8_macs_per_s     = clock_hz / (cycles_per_mac[stack, conv] * core_factor[core])
    int8_op_efficiency  = cycles_per_mac[stack, conv] / cycles_per_mac[stack, op]
    int8_op_overhead_s  = 1000 cycles * core_factor[core] / clock_hz

and active power is the median power of the published energy runs of that board with that
stack where they exist (else the catalogue's figure: energy is then active power x
latency, and the profile says so). fp32 inference and training keep the catalogue's own
rates (the MLPerf Tiny results are int8 inference only).
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import resources
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import yaml

from tinylarge.errors import TinylargeError
from tinylarge.models.profile import OP_CLASSES, OpClass

if TYPE_CHECKING:
    from tinylarge.hardware.catalogue import DeviceProfile

STACKS_FILE = "stacks.yaml"
RATES_FILE = "stack_rates.yaml"


@dataclass(frozen=True)
class Stack:
    """One named inference stack (``stacks.yaml``)."""

    name: str
    label: str
    cores: tuple[str, ...]
    parts: tuple[str, ...]
    source: str

    def available_on(self, device_id: str, core: str | None) -> bool:
        """Whether the stack runs on a device with this id and core class."""
        if core is None or core not in self.cores:
            return False
        return not self.parts or any(device_id.startswith(p) for p in self.parts)


@dataclass(frozen=True)
class Rates:
    """Fitted figures (``stack_rates.yaml``)."""

    #: stack -> term (conv, depthwise_conv, linear) -> cycles per MAC on a Cortex-M4F
    cycles: Mapping[str, Mapping[str, float]]
    #: core class -> cycle multiplier (m4f 1.0)
    core_factor: Mapping[str, float]
    #: cycles per executed operator on a Cortex-M4F (fixed, not fitted)
    overhead_cycles: float
    #: device -> stack -> median power of its published energy runs, in watts
    power_w: Mapping[str, Mapping[str, float]]
    #: device -> stack -> published rows the fit used
    rows: Mapping[str, Mapping[str, int]]


def _bad(message: str) -> TinylargeError:
    return TinylargeError(f"{STACKS_FILE}: {message}")


@functools.cache
def _definitions() -> tuple[dict[str, Stack], dict[str, str]]:
    text = resources.files("tinylarge.hardware").joinpath(STACKS_FILE).read_text("utf-8")
    data = yaml.safe_load(text)
    all_cores = tuple(data["cores"])
    stacks = {}
    for name, entry in data["stacks"].items():
        cores = tuple(entry.get("cores", all_cores))
        unknown = sorted(set(cores) - set(all_cores))
        if unknown:
            raise _bad(f"stack {name!r}: unknown core class {unknown[0]!r}")
        stacks[name] = Stack(
            name=name,
            label=entry["label"],
            cores=cores,
            parts=tuple(entry.get("parts", ())),
            source=entry["source"],
        )
    aliases = {str(k): str(v) for k, v in data.get("aliases", {}).items()}
    for alias, target in aliases.items():
        if target not in stacks:
            raise _bad(f"alias {alias!r} names unknown stack {target!r}")
    return stacks, aliases


@functools.cache
def rates() -> Rates:
    """The fitted figures shipped with the package."""
    text = resources.files("tinylarge.hardware").joinpath(RATES_FILE).read_text("utf-8")
    data = yaml.safe_load(text)
    return Rates(
        cycles={s: dict(v) for s, v in data["cycles_per_mac"].items()},
        core_factor=dict(data["core_factor"]),
        overhead_cycles=float(data["overhead_cycles"]),
        power_w={d: dict(v) for d, v in data["power_w"].items()},
        rows={d: dict(v) for d, v in data["rows"].items()},
    )


def stack_names() -> list[str]:
    """Every stack name and alias, sorted."""
    stacks, aliases = _definitions()
    return sorted([*stacks, *aliases])


def get_stack(name: str) -> Stack:
    """The stack ``name`` (an alias resolves to its version).

    Raises:
        TinylargeError: unknown name; the message lists the known stacks.
    """
    stacks, aliases = _definitions()
    resolved = aliases.get(name, name)
    if resolved not in stacks:
        raise TinylargeError(f"unknown stack {name!r}; known: {', '.join(stack_names())}")
    return stacks[resolved]


def allowed_stacks(device_id: str, core: str | None) -> list[str]:
    """Stacks (versions, then aliases) that run on the device, sorted."""
    stacks, aliases = _definitions()
    ok = sorted(n for n, s in stacks.items() if s.available_on(device_id, core))
    return sorted([*ok, *(a for a, t in aliases.items() if t in ok)])


def check_stack(device_id: str, core: str | None, name: str) -> Stack:
    """The stack ``name`` if it runs on the device, else one line naming those that do.

    Raises:
        TinylargeError: unknown stack, or not available for the device's core or part.
    """
    stack = get_stack(name)
    if not stack.available_on(device_id, core):
        allowed = allowed_stacks(device_id, core)
        what = f"core {core}" if core else "no Cortex-M core class (its runtime is fixed)"
        raise TinylargeError(
            f"stack {name!r} is not available for {device_id} ({what}); allowed: "
            + (", ".join(allowed) if allowed else "none")
        )
    return stack


@dataclass(frozen=True)
class StackPricing:
    """What :func:`with_stack` sets on a device."""

    int8_macs_per_s: float
    int8_op_efficiency: Mapping[OpClass, float]
    int8_op_overhead_s: float
    cost_source: str
    active_power_w: float | None
    energy_source: str


def stack_pricing(
    device_id: str,
    core: str,
    clock_hz: float,
    stack_name: str,
    *,
    catalogue_power_w: float,
    core_factor: float | None = None,
) -> StackPricing:
    """Int8 rates, power and where they come from for a device running ``stack_name``
    (``core_factor``: the part's own measured cycle factor, else its core class's)."""
    stack = check_stack(device_id, core, stack_name)
    fitted = rates()
    cpm = fitted.cycles[stack.name]
    k = fitted.core_factor[core] if core_factor is None else core_factor
    scaled_by = (
        f"its core class ({core}) and clock"
        if core_factor is None
        else f"its own measured cycle factor ({core_factor:g} x a Cortex-M4F, catalogue notes) "
        "and clock"
    )
    eff: dict[OpClass, float] = {}
    for op in OP_CLASSES:
        term = op if op in ("conv", "linear") else "depthwise_conv"
        eff[op] = cpm["conv"] / cpm[term]
    rows_here = fitted.rows.get(device_id, {})
    boards = sorted(d for d, by in fitted.rows.items() if stack.name in by and d != device_id)
    if stack.name in rows_here:
        cost = (
            f"{stack.name} fitted to {rows_here[stack.name]} published MLPerf Tiny rows of "
            f"this device (with {len(boards)} other boards)"
        )
    elif rows_here:
        cost = (
            f"{stack.name} fitted on {', '.join(boards)}; transferred to this device by "
            f"{scaled_by} (its own published rows: "
            f"{', '.join(sorted(rows_here))})"
        )
    else:
        cost = (
            f"no published MLPerf Tiny row for this device: estimate transferred from "
            f"{scaled_by}, {stack.name} fitted on {', '.join(boards)}"
        )
    power = fitted.power_w.get(device_id, {}).get(stack.name)
    if power is not None:
        energy = (
            f"fitted: {power * 1e3:.1f} mW, median power of the published energy runs of this "
            f"device with {stack.name}"
        )
    else:
        energy = (
            f"active power x latency ({catalogue_power_w * 1e3:.3g} mW catalogue figure; no "
            f"published energy run of this device with {stack.name})"
        )
    return StackPricing(
        int8_macs_per_s=clock_hz / (cpm["conv"] * k),
        int8_op_efficiency=MappingProxyType(eff),
        int8_op_overhead_s=fitted.overhead_cycles * k / clock_hz,
        cost_source=cost,
        active_power_w=power,
        energy_source=energy,
    )


def with_stack(device: DeviceProfile, stack_name: str) -> DeviceProfile:
    """``device`` running ``stack_name`` (int8 rates, power and their sources replaced).

    Raises:
        TinylargeError: unknown stack, or one that does not run on the device.
    """
    if device.core is None:
        check_stack(device.id, None, stack_name)  # raises: the device has no stack model
    assert device.core is not None
    catalogue_power = (
        device.catalogue_power_w if device.catalogue_power_w is not None else device.active_power_w
    )
    p = stack_pricing(
        device.id,
        device.core,
        device.clock_hz,
        stack_name,
        catalogue_power_w=catalogue_power,
        core_factor=device.core_factor,
    )
    return replace(
        device,
        stack=get_stack(stack_name).name,
        int8_macs_per_s=p.int8_macs_per_s,
        int8_op_efficiency=p.int8_op_efficiency,
        int8_op_overhead_s=p.int8_op_overhead_s,
        cost_source=p.cost_source,
        active_power_w=p.active_power_w if p.active_power_w is not None else catalogue_power,
        energy_source=p.energy_source,
    )


def rates_document(
    cycles: Mapping[str, Mapping[str, float]],
    core_factor: Mapping[str, float],
    overhead_cycles: float,
    rows: list[Any],
) -> dict[str, Any]:
    """The content of ``stack_rates.yaml`` from a fit and the rows it used (published
    rows with ``device``, ``stack`` and ``power_w``)."""
    power: dict[str, dict[str, list[float]]] = {}
    count: dict[str, dict[str, int]] = {}
    for r in rows:
        count.setdefault(r.device, {}).setdefault(r.stack, 0)
        count[r.device][r.stack] += 1
        if r.power_w is not None:
            power.setdefault(r.device, {}).setdefault(r.stack, []).append(r.power_w)

    def sig(x: float) -> float:
        return float(f"{x:.4g}") if math.isfinite(x) else x

    return {
        "cycles_per_mac": {s: {t: sig(v) for t, v in c.items()} for s, c in sorted(cycles.items())},
        "core_factor": {c: sig(v) for c, v in core_factor.items()},
        "overhead_cycles": overhead_cycles,
        "power_w": {
            d: {s: sig(statistics.median(v)) for s, v in sorted(by.items())}
            for d, by in sorted(power.items())
        },
        "rows": {d: dict(sorted(by.items())) for d, by in sorted(count.items())},
    }
