"""Does a deployed model fit each device, by how much not, and what would one inference cost?

For every device of the catalogue (or a chosen few) one row: the model's flash
and peak SRAM against the device's flash and largest contiguous SRAM (the
TFLite Micro tensor arena must be one buffer, see
:mod:`tinylarge.hardware.fit`), the shortfall in bytes when it does not fit,
and the latency and energy of one inference from the calibrated cost model
(:func:`tinylarge.hardware.cost.inference_cost`). A model that does not fit is
reported with its reason — flash or SRAM and by how many bytes — never
silently accepted.

The profile of an int8 artifact comes from the file itself
(:func:`tinylarge.models.files.profile_file`): flash is the file size, peak
SRAM the memory plan of its int8 activations. In a QDQ ONNX file the
QuantizeLinear/DequantizeLinear pairs around each operator fold into the
integer kernels on a device (as in a TFLite int8 file), so
:func:`deployed_profile` drops them before costing latency and energy.

``tinylarge fit`` and ``tinylarge export`` print these rows; a scheme admits
devices with them (:meth:`DeviceFit.verdict` is the fit as
:meth:`tinylarge.sim.context.Context.admit` takes it, the shortfall its reason).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tinylarge.hardware.catalogue import DeviceProfile, all_devices, get_device
from tinylarge.hardware.cost import inference_cost
from tinylarge.hardware.fit import FitReport, check_fit
from tinylarge.models.profile import ModelProfile

_QDQ = frozenset({"QuantizeLinear", "DequantizeLinear"})


@dataclass(frozen=True)
class DeviceFit:
    """One model on one device.

    Attributes:
        device: device id; ``tier`` its tier.
        fits: flash and SRAM both suffice.
        reason: ``None`` if it fits, else what is short and by how many bytes.
        flash_bytes / flash_capacity_bytes / flash_over_bytes: what the model
            needs, what the device has, the shortfall (0 if it fits).
        sram_bytes / sram_capacity_bytes / sram_over_bytes: SRAM for inference
            (TFLite Micro's predicted arena for an int8 ``.tflite``, else the
            activation peak; :func:`tinylarge.hardware.fit.inference_sram_bytes`)
            against the largest contiguous SRAM, and the shortfall.
        latency_s / energy_j: one inference (batch 1) at the model's dtype.
    """

    device: str
    tier: str
    fits: bool
    reason: str | None
    flash_bytes: int
    flash_capacity_bytes: int
    flash_over_bytes: int
    sram_bytes: int
    sram_capacity_bytes: int
    sram_over_bytes: int
    latency_s: float
    energy_j: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def verdict(self) -> FitReport:
        """The fit as the :class:`~tinylarge.hardware.fit.FitReport` a scheme hands to
        :meth:`tinylarge.sim.context.Context.admit`, with this shortfall as its reason."""
        return FitReport(
            fits=self.fits,
            reason=self.reason,
            flash_bytes=self.flash_bytes,
            flash_capacity_bytes=self.flash_capacity_bytes,
            sram_bytes=self.sram_bytes,
            sram_capacity_bytes=self.sram_capacity_bytes,
        )


def deployed_profile(profile: ModelProfile) -> ModelProfile:
    """``profile`` without QDQ (Quantize/DequantizeLinear) operators, which fold on a device."""
    layers = tuple(layer for layer in profile.layers if layer.kind not in _QDQ)
    if len(layers) == len(profile.layers):
        return profile
    return dataclasses.replace(profile, layers=layers)


def shortfall_reason(*, flash_over_bytes: int, sram_over_bytes: int, fit: Any) -> str | None:
    """``"flash: needs X B, has Y B (over by Z B); SRAM: ..."``, or ``None`` if nothing is short."""
    parts = []
    if flash_over_bytes > 0:
        parts.append(
            f"flash: needs {fit.flash_bytes:,} B, has {fit.flash_capacity_bytes:,} B "
            f"(over by {flash_over_bytes:,} B)"
        )
    if sram_over_bytes > 0:
        parts.append(
            f"SRAM: needs {fit.sram_bytes:,} B, largest contiguous {fit.sram_capacity_bytes:,} B "
            f"(over by {sram_over_bytes:,} B)"
        )
    return "; ".join(parts) or None


def device_fit(
    profile: ModelProfile,
    device: DeviceProfile,
    *,
    dtype: Literal["int8", "fp32"] | None = None,
) -> DeviceFit:
    """Fit and cost of one inference of ``profile`` on ``device`` (``dtype``: default its own)."""
    fit = check_fit(profile, device)
    flash_over = max(0, fit.flash_bytes - fit.flash_capacity_bytes)
    sram_over = max(0, fit.sram_bytes - fit.sram_capacity_bytes)
    cost = inference_cost(deployed_profile(profile), device, dtype=dtype)
    return DeviceFit(
        device=device.id,
        tier=device.tier,
        fits=fit.fits,
        reason=shortfall_reason(flash_over_bytes=flash_over, sram_over_bytes=sram_over, fit=fit),
        flash_bytes=fit.flash_bytes,
        flash_capacity_bytes=fit.flash_capacity_bytes,
        flash_over_bytes=flash_over,
        sram_bytes=fit.sram_bytes,
        sram_capacity_bytes=fit.sram_capacity_bytes,
        sram_over_bytes=sram_over,
        latency_s=cost.latency_s,
        energy_j=cost.energy_j,
    )


def fit_report(
    profile: ModelProfile,
    *,
    devices: Sequence[str] | None = None,
    dtype: Literal["int8", "fp32"] | None = None,
) -> list[DeviceFit]:
    """One :class:`DeviceFit` per device id in ``devices`` (default: the whole catalogue)."""
    chosen = all_devices() if devices is None else [get_device(d) for d in devices]
    return [device_fit(profile, d, dtype=dtype) for d in chosen]


def fit_per_profile(fits: Sequence[tuple[str, DeviceFit]]) -> dict[str, dict[str, Any]]:
    """Per device profile, its :class:`DeviceFit` as a dict (the first device of each profile).

    ``fits`` pairs each device (by profile id) with its fit. Which devices were
    excluded, and why, is the engine's (``fits`` and ``excluded`` in summary.json,
    from :meth:`tinylarge.sim.context.Context.admit`).
    """
    per_profile: dict[str, dict[str, Any]] = {}
    for profile_id, fit in fits:
        per_profile.setdefault(profile_id, fit.to_dict())
    return per_profile


#: Thumb-2 code bytes of each kernel of ``tl_kernels.c`` and the helpers it pulls in,
#: measured from arm-none-eabi-gcc 12.2 ``-Os -ffunction-sections`` objects for
#: Cortex-M4 (M7 and M33 differ by at most 4 bytes); tests/compress/test_csource.py
#: rebuilds the kernels and checks this table against the object files.
C_KERNEL_CODE_BYTES: dict[str, tuple[int, tuple[str, ...]]] = {
    "tl_conv2d": (386, ("requantize",)),
    "tl_depthwise_conv2d": (342, ("requantize",)),
    "tl_fully_connected": (174, ("requantize",)),
    "tl_average_pool": (6, ("pool",)),
    "tl_max_pool": (6, ("pool",)),
    "tl_add": (116, ("requantize",)),
    "tl_softmax": (396, ("requantize", "exp")),
}
#: Shared helpers: MultiplyByQuantizedMultiplier and its two gemmlowp primitives; the
#: pooling loop; the softmax's fixed-point exp with its constants.
C_HELPER_CODE_BYTES = {"requantize": 122, "pool": 352, "exp": 164}
#: The firmware around the model: vector table, reset handler, semihosting harness,
#: newlib-nano's memcpy and memset.
C_RUNTIME_CODE_BYTES = 862
#: ``<prefix>_invoke``: its own code plus each kernel call (argument set-up).
C_INVOKE_CODE_BYTES, C_CALL_CODE_BYTES = 84, 40


@dataclass(frozen=True)
class FirmwareFootprint:
    """Predicted flash and RAM of the c-source firmware of a model (bytes).

    ``flash_bytes`` = ``const_bytes`` (weights, biases, multipliers, shifts and
    parameter structs, exact from the lowered model) + ``code_bytes`` (the
    kernels it calls, :data:`C_KERNEL_CODE_BYTES`, plus the runtime and the
    invoke function). ``ram_bytes`` = ``arena_bytes`` (the planned arena, exact)
    + ``stack_bytes`` (reserved by the linker script).
    """

    flash_bytes: int
    ram_bytes: int
    const_bytes: int
    code_bytes: int
    arena_bytes: int
    stack_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def c_source_footprint(model: Any) -> FirmwareFootprint:
    """Flash and RAM of the firmware built from a lowered c-source model.

    ``model`` is a :class:`tinylarge.compress.csource.lower.CModel`.
    """
    from tinylarge.compress.firmware import STACK_BYTES

    helpers: set[str] = set()
    code = C_RUNTIME_CODE_BYTES + C_INVOKE_CODE_BYTES + C_CALL_CODE_BYTES * len(model.calls)
    for kernel in model.kernels:
        own, needs = C_KERNEL_CODE_BYTES[kernel]
        code += own
        helpers.update(needs)
    code += sum(C_HELPER_CODE_BYTES[h] for h in helpers)
    return FirmwareFootprint(
        flash_bytes=model.const_bytes + code,
        ram_bytes=model.arena_bytes + STACK_BYTES,
        const_bytes=model.const_bytes,
        code_bytes=code,
        arena_bytes=model.arena_bytes,
        stack_bytes=STACK_BYTES,
    )
