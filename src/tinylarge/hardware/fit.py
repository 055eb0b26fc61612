"""Does a model fit a device? Flash for the weights, SRAM for the activations.

Inference (the TFLite Micro deployment model): the model file lives in flash
and the tensor arena in SRAM, so the check is

    profile.flash_bytes     <= device.flash_bytes
    inference_sram_bytes(profile, device) <= device.sram_contiguous_bytes

The arena is one static buffer (TFLite Micro allocates all activations from a
single ``tensor_arena`` array), which is why the *largest contiguous* SRAM
range is the limit, not the total: an STM32H743 has 1 MiB of RAM in five banks
but a 512 KiB arena limit. For an int8 ``.tflite`` the SRAM needed is TFLite
Micro's whole arena as :mod:`tinylarge.models.tflm_arena` predicts it (the
activation plan plus the runtime's persistent structures, kernel data and the
planner's peak; ``profile.extra["tflm_arena_bytes"]``), for a 32-bit build on
``mcu`` devices and a 64-bit one elsewhere (:func:`inference_sram_bytes`).
Other profiles (PyTorch zoo models, float files) use ``peak_sram_bytes``,
the peak of live activations, with no reserve for a runtime's bookkeeping,
so for them the check is optimistic by that margin.

Training: the device must be able to train (``can_train``) and the training
memory (weights, gradients, optimizer state, saved activations; see
:attr:`~tinylarge.models.profile.ModelProfile.train_memory_bytes`) must fit
the total SRAM; the model must still fit flash. Training buffers are separate
allocations, so they may spread over several banks. A training method that needs more
(DP-SGD's per-sample gradients) names its buffers, and they are counted with the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tinylarge.hardware.catalogue import DeviceProfile
from tinylarge.models.profile import ModelProfile


@dataclass(frozen=True)
class FitReport:
    """Whether a model fits a device, and the numbers behind the answer.

    Attributes:
        fits: every check passed.
        reason: why not (all failed checks, ``"; "``-joined), ``None`` if it fits.
        flash_bytes: flash the model needs.
        flash_capacity_bytes: flash the device has.
        sram_bytes: SRAM the model needs (peak activations for inference,
            training memory for training; 0 when unknown).
        sram_capacity_bytes: SRAM it may use (largest contiguous range for
            inference, total for training).
    """

    fits: bool
    reason: str | None
    flash_bytes: int
    flash_capacity_bytes: int
    sram_bytes: int
    sram_capacity_bytes: int


def format_bytes(n: int) -> str:
    """Bytes for people, in binary units.

    >>> format_bytes(412 * 1024)
    '412 KiB'
    >>> format_bytes(3 * 1024**3)
    '3 GiB'
    """
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def inference_sram_bytes(profile: ModelProfile, device: DeviceProfile) -> tuple[int, str]:
    """SRAM (bytes) ``profile`` needs for inference on ``device``, and what that figure is.

    The predicted TFLite Micro arena when the profile has one (32-bit build on
    microcontrollers, 64-bit elsewhere), else the activation peak.
    """
    arenas = profile.extra.get("tflm_arena_bytes")
    if isinstance(arenas, dict) and arenas:
        build = "cortex-m" if device.tier == "mcu" else "x86-64"
        return int(arenas[build]), "TFLite Micro arena"
    return profile.peak_sram_bytes, "peak SRAM"


def check_fit(
    profile: ModelProfile,
    device: DeviceProfile,
    *,
    training: bool = False,
    train_extra: Sequence[tuple[str, int]] = (),
) -> FitReport:
    """Check ``profile`` against ``device`` for inference or on-device training.

    ``train_extra``: training buffers beyond plain training's, each ``(what, bytes)``; they
    are added to the training memory and named in the reason.

    >>> from tinylarge.hardware.catalogue import get_device
    >>> from tinylarge.models.profile import ModelProfile
    >>> big = ModelProfile("m", (96, 96, 3), "int8", (), 0, 0, 0, 100_000, 412 * 1024)
    >>> check_fit(big, get_device("stm32f746")).reason
    'peak SRAM 412 KiB > largest contiguous SRAM 320 KiB'
    """
    reasons: list[str] = []
    if profile.flash_bytes > device.flash_bytes:
        reasons.append(
            f"model {format_bytes(profile.flash_bytes)} > flash {format_bytes(device.flash_bytes)}"
        )
    if training:
        capacity = device.sram_bytes
        needed = profile.train_memory_bytes
        if not device.can_train:
            reasons.append(f"device {device.id} cannot train on-device")
        extra = sum(n for _, n in train_extra)
        if needed is None:
            reasons.append("training memory of the model is unknown")
        elif needed + extra > capacity:
            parts = "".join(f" + {what} {format_bytes(n)}" for what, n in train_extra)
            reasons.append(
                f"training memory {format_bytes(needed)}{parts} > SRAM {format_bytes(capacity)}"
            )
        sram_needed = (needed or 0) + extra
    else:
        capacity = device.sram_contiguous_bytes
        sram_needed, what = inference_sram_bytes(profile, device)
        if sram_needed > capacity:
            reasons.append(
                f"{what} {format_bytes(sram_needed)} > largest contiguous SRAM "
                f"{format_bytes(capacity)}"
            )
    return FitReport(
        fits=not reasons,
        reason="; ".join(reasons) if reasons else None,
        flash_bytes=profile.flash_bytes,
        flash_capacity_bytes=device.flash_bytes,
        sram_bytes=sram_needed,
        sram_capacity_bytes=capacity,
    )
