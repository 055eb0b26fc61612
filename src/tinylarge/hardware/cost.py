"""Compute cost model: seconds and joules of a model on a device.

A roofline-free, calibrated throughput model. Each layer of a
:class:`~tinylarge.models.profile.ModelProfile` takes

    work_l / (rate(dtype) * op_efficiency[op_l])  +  op_overhead_s

seconds, where ``rate`` is the device's effective conv MAC/s at the dtype,
``op_efficiency`` the per-operator-class multiplier of its runtime and
``op_overhead_s`` a fixed per-operator dispatch time; for int8 on a Cortex-M device
all three are its inference stack's (:mod:`tinylarge.hardware.stacks`, fitted to every
published MLPerf Tiny result), for fp32 and training the catalogue's own. ``work_l`` is the
layer's MACs; layers without MACs (pooling, element-wise, reshapes, softmax)
are billed one MAC-equivalent per output element, so data movement is not
free. Energy is latency times the device's active power.

The fp32 / training efficiencies of Cortex-M devices (``cmsis-nn``) come from the 2020
MLPerf Tiny reference fit (docs/devices.md): CMSIS-NN reaches about a quarter of its
conv throughput per MAC on depthwise convolutions, and about 1.5x on fully-connected
layers (no im2col).

Training is billed as ``(1 + backward_factor)`` forward passes at the fp32
rate: the backward pass costs about two forward passes (one for the gradient
w.r.t. activations, one w.r.t. weights), the usual 3x rule
(Kaplan et al. 2020, https://arxiv.org/abs/2001.08361, Sec. 2.1).

All functions are pure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from tinylarge.errors import TinylargeError
from tinylarge.hardware.catalogue import DeviceProfile, Dtype
from tinylarge.models.profile import OP_CLASSES, LayerProfile, ModelProfile, OpClass


@dataclass(frozen=True)
class ComputeCost:
    """Cost of one computation on one device.

    Attributes:
        macs: multiply-accumulates performed (all samples, forward and backward).
        latency_s: seconds the device is busy.
        energy_j: joules the device spends (``latency_s * active_power_w``).
    """

    macs: int
    latency_s: float
    energy_j: float


def layer_work(layer: LayerProfile) -> int:
    """MAC-equivalents one layer costs: its MACs, else its output elements.

    >>> from tinylarge.models.profile import LayerProfile
    >>> layer_work(LayerProfile("add", "elementwise", 0, 0, (8, 8, 16), 1024))
    1024
    """
    if layer.macs > 0:
        return layer.macs
    return math.prod(layer.output_shape) if layer.output_shape else 1


def _check_dtype(dtype: str) -> Dtype:
    if dtype == "int8":
        return "int8"
    if dtype == "fp32":
        return "fp32"
    raise TinylargeError(f"unknown dtype {dtype!r}; known: fp32, int8")


def _check_op(op: str) -> OpClass:
    for known in OP_CLASSES:
        if op == known:
            return known
    raise TinylargeError(f"unknown operator class {op!r}; known: {', '.join(sorted(OP_CLASSES))}")


def _layers_seconds(
    layers: tuple[LayerProfile, ...], device: DeviceProfile, *, dtype: Dtype, samples: int
) -> float:
    """Seconds to run ``layers`` once on ``samples`` inputs in one dispatch."""
    rate = device.macs_per_s(dtype)
    efficiency = device.efficiency(dtype)
    compute = sum(layer_work(layer) * samples / (rate * efficiency[layer.op]) for layer in layers)
    return compute + len(layers) * device.overhead_s(dtype)


def inference_cost(
    profile: ModelProfile,
    device: DeviceProfile,
    *,
    dtype: Literal["int8", "fp32"] | None = None,
    batch: int = 1,
) -> ComputeCost:
    """Cost of one forward pass of ``batch`` inputs.

    Args:
        profile: the model, per layer.
        device: where it runs.
        dtype: ``"int8"`` or ``"fp32"``; ``None`` uses ``profile.dtype``.
        batch: inputs processed in one call; the per-operator overhead is paid
            once per call, the MACs ``batch`` times.

    >>> from tinylarge.hardware.catalogue import get_device
    >>> from tinylarge.models.profile import LayerProfile, ModelProfile
    >>> fc = LayerProfile("fc", "linear", 1000, 1000, (1,), 1)
    >>> model = ModelProfile("m", (1000,), "int8", (fc,), 1000, 1000, 1000, 1000, 1000)
    >>> inference_cost(model, get_device("stm32l4r5"), batch=2).macs
    2000
    """
    if batch < 1:
        raise TinylargeError(f"batch must be >= 1, got {batch}")
    chosen = _check_dtype(dtype if dtype is not None else profile.dtype)
    latency = _layers_seconds(profile.layers, device, dtype=chosen, samples=batch)
    return ComputeCost(
        macs=profile.macs * batch,
        latency_s=latency,
        energy_j=latency * device.active_power_w,
    )


def training_cost(
    profile: ModelProfile,
    device: DeviceProfile,
    *,
    samples: int,
    backward_factor: float = 2.0,
) -> ComputeCost:
    """Cost of training on ``samples`` examples (one pass over them) at fp32.

    Every example costs one forward and ``backward_factor`` forward-equivalents
    of backward pass, so about 3x the forward MACs. Examples are processed in
    steps of ``profile.train_batch_size``; each step pays the per-operator
    overhead once per forward-equivalent.

    Args:
        profile: the model being trained.
        device: where it trains.
        samples: training examples processed (epochs x local examples).
        backward_factor: backward cost in forward passes (2.0 for full
            backpropagation; lower when early layers are frozen).
    """
    if samples < 0:
        raise TinylargeError(f"samples must be >= 0, got {samples}")
    if not (backward_factor >= 0 and math.isfinite(backward_factor)):
        raise TinylargeError(f"backward_factor must be a finite number >= 0, got {backward_factor}")
    if samples == 0:
        return ComputeCost(macs=0, latency_s=0.0, energy_j=0.0)
    passes = 1.0 + backward_factor
    steps = math.ceil(samples / max(profile.train_batch_size, 1))
    rate = device.macs_per_s("fp32")
    compute = sum(
        layer_work(layer) / (rate * device.op_efficiency[layer.op]) for layer in profile.layers
    )
    latency = passes * (compute * samples + steps * len(profile.layers) * device.op_overhead_s)
    return ComputeCost(
        macs=round(passes * profile.macs * samples),
        latency_s=latency,
        energy_j=latency * device.active_power_w,
    )


def macs_cost(
    macs: int,
    device: DeviceProfile,
    *,
    dtype: Literal["int8", "fp32"],
    op: OpClass = "conv",
) -> ComputeCost:
    """Cost of ``macs`` multiply-accumulates of operator class ``op``.

    For work known only as a MAC count (server-side aggregation, a large
    model's forward pass summarised elsewhere). No per-operator overhead.
    """
    if macs < 0:
        raise TinylargeError(f"macs must be >= 0, got {macs}")
    chosen = _check_dtype(dtype)
    op_class = _check_op(op)
    latency = macs / (device.macs_per_s(chosen) * device.efficiency(chosen)[op_class])
    return ComputeCost(macs=macs, latency_s=latency, energy_j=latency * device.active_power_w)


# -- what ran, for the context to price ---------------------------------------------------------
@dataclass(frozen=True)
class Train:
    """Training ``profile`` on ``samples`` examples (see :func:`training_cost`)."""

    profile: ModelProfile
    samples: int
    backward_factor: float = 2.0


@dataclass(frozen=True)
class Infer:
    """``calls`` forward passes of ``batch`` inputs each (see :func:`inference_cost`).

    ``dtype`` ``None`` runs at the profile's own dtype.
    """

    profile: ModelProfile
    batch: int = 1
    calls: int = 1
    dtype: Literal["int8", "fp32"] | None = None


@dataclass(frozen=True)
class Elementwise:
    """``values`` element-wise fp32 operations (averaging updates, summing logits)."""

    values: int


@dataclass(frozen=True)
class Cycles:
    """``cycles`` of scalar CPU work (cryptography: :mod:`tinylarge.hardware.crypto`) at
    ``clock_hz``, the clock of the core that runs it."""

    cycles: float
    clock_hz: float
    what: str = "crypto"


#: One piece of work a scheme reports; the context prices it on the node that ran it.
Work = Train | Infer | Elementwise | Cycles


def work_cost(work: Work, device: DeviceProfile) -> ComputeCost:
    """Seconds, joules and MACs of one piece of ``work`` on ``device``."""
    if isinstance(work, Train):
        return training_cost(
            work.profile, device, samples=work.samples, backward_factor=work.backward_factor
        )
    if isinstance(work, Infer):
        if work.calls < 0:
            raise TinylargeError(f"calls must be >= 0, got {work.calls}")
        one = inference_cost(work.profile, device, dtype=work.dtype, batch=work.batch)
        if work.calls == 1:
            return one
        return ComputeCost(
            one.macs * work.calls, one.latency_s * work.calls, one.energy_j * work.calls
        )
    if isinstance(work, Cycles):
        if work.cycles < 0 or work.clock_hz <= 0:
            raise TinylargeError(f"cycles must be >= 0 at a positive clock, got {work}")
        latency = work.cycles / work.clock_hz
        return ComputeCost(macs=0, latency_s=latency, energy_j=latency * device.active_power_w)
    return macs_cost(work.values, device, dtype="fp32", op="elementwise")


def total_cost(works: Work | Sequence[Work], device: DeviceProfile) -> ComputeCost:
    """The summed cost of one piece of work or several on ``device``."""
    if not isinstance(works, Sequence):
        return work_cost(works, device)
    costs = [work_cost(w, device) for w in works]
    if len(costs) == 1:
        return costs[0]
    return ComputeCost(
        macs=sum(c.macs for c in costs),
        latency_s=math.fsum(c.latency_s for c in costs),
        energy_j=math.fsum(c.energy_j for c in costs),
    )
