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
        sram_bytes / sram_capacity_bytes / sram_over_bytes: peak activation
            SRAM against the largest contiguous SRAM, and the shortfall.
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
            f"SRAM: peak {fit.sram_bytes:,} B, largest contiguous {fit.sram_capacity_bytes:,} B "
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
