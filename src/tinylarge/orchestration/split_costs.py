"""Costs of one cut: the figures the cut planner compares, and the schemes bill.

Pure functions over the profiles of the device and server parts of a model
at a cut (:mod:`tinylarge.models.split`): the device-side training memory and
flash (checked against the device), the device's training compute (about 3x
the forward MACs of its layers, :func:`tinylarge.hardware.cost.training_cost`),
the server's, the smashed-data and gradient messages of every batch and the
client-side model synchronisation over the link. The planner
(:mod:`tinylarge.orchestration.cut_planner`) evaluates them for every cut;
the sl and fsl schemes bill the same quantities through the ledger, so what
the plan predicts is what a run bills (without fading).

SplitFed: Thapa et al., AAAI 2022, https://arxiv.org/abs/2004.12088; split
learning: Gupta and Raskar 2018, https://arxiv.org/abs/1810.06060.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from tinylarge.errors import TinylargeError
from tinylarge.hardware.catalogue import DeviceProfile
from tinylarge.hardware.cost import ComputeCost, training_cost
from tinylarge.hardware.fit import check_fit
from tinylarge.models.profile import ModelProfile
from tinylarge.models.profiler import profile_model
from tinylarge.models.split import (
    Compression,
    CutPoint,
    cut_points,
    gradient_bytes,
    label_bytes,
    message_bytes,
    segments,
)
from tinylarge.network.link import Link
from tinylarge.sim.client import ModelSpec

Objective = Literal["latency", "energy"]
#: (direction, what) of a message stream: ("up", "activations"), ("down", "gradients"), ...
Stream = tuple[str, str]


@dataclass(frozen=True)
class SplitSetup:
    """What the cost of a cut depends on besides the device and its link.

    Attributes:
        spec: the whole model.
        batch_size: training batch size (also the smashed-data message size).
        epochs: local epochs per round.
        optimizer: profiler optimizer name (``sgd``, ``sgd-momentum``, ``adam``).
        compression: smashed-data compression (``fp32``, ``fp16``, ``int8``).
        u_shaped: labels and the last layers stay on the device.
        server: the server profile that trains the server side.
    """

    spec: ModelSpec
    batch_size: int
    epochs: int
    optimizer: str
    compression: Compression
    u_shaped: bool
    server: DeviceProfile


@dataclass(frozen=True)
class CutProfile:
    """The device-independent figures of one cut: the parts and their profiles."""

    cut: CutPoint
    cuts: tuple[int, ...]
    device: ModelProfile
    device_parts: tuple[ModelProfile, ...]
    server: ModelProfile
    device_state_bytes: int
    boundary_elements: tuple[int, ...]


@dataclass(frozen=True)
class CutEstimate:
    """One row of the plan: one cut on one device and link, per round of that device."""

    device: str
    link: str
    distance_m: float | None
    cut: int
    layer: str
    train_memory_bytes: int
    sram_bytes: int
    fits: bool
    reason: str | None
    outage: bool
    device_compute_s: float
    server_s: float
    airtime_s: float
    latency_s: float
    energy_j: float
    bytes_up: int
    bytes_down: int
    bytes: int
    bytes_per_batch: int
    leakage: float | None
    chosen: bool = False

    def objective(self, objective: Objective) -> float:
        return self.latency_s if objective == "latency" else self.energy_j


def _profile(module: Any, shape: tuple[int, ...], name: str, setup: SplitSetup) -> ModelProfile:
    return profile_model(
        module,
        input_shape=shape,
        name=name,
        dtype="fp32",
        train_batch_size=setup.batch_size,
        optimizer=setup.optimizer,
    )


def combine(name: str, parts: Sequence[ModelProfile]) -> ModelProfile:
    """Several parts held on one device at once: memory and flash add up."""
    first = parts[0]
    return ModelProfile(
        name=name,
        input_shape=first.input_shape,
        dtype=first.dtype,
        layers=tuple(layer for p in parts for layer in p.layers),
        macs=sum(p.macs for p in parts),
        params=sum(p.params for p in parts),
        weight_bytes=sum(p.weight_bytes for p in parts),
        flash_bytes=sum(p.flash_bytes for p in parts),
        peak_sram_bytes=max(p.peak_sram_bytes for p in parts),
        train_memory_bytes=sum(p.train_memory_bytes or 0 for p in parts),
        train_batch_size=first.train_batch_size,
    )


def cut_profiles(setup: SplitSetup) -> list[CutProfile]:
    """Profile the device and server parts at every cut (the tail cut too when U-shaped)."""
    spec = setup.spec
    model = spec.build()
    points = cut_points(model, input_shape=spec.input_shape, name=spec.name)
    tail: CutPoint | None = None
    if setup.u_shaped:
        if len(points) < 2:
            raise TinylargeError(
                f"the u-shaped variant needs two cut points in model {spec.name!r} (front and "
                "tail); use a deeper model (e.g. mlp with hidden: [64, 64]) or label-sharing"
            )
        tail, points = points[-1], points[:-1]
    out = []
    for point in points:
        cuts = (point.index,) if tail is None else (point.index, tail.index)
        parts = segments(model, cuts)
        if not any(p.numel() > 0 for p in parts[1].parameters()):
            continue  # nothing to train on the server between the front and the tail
        shapes = [spec.input_shape, point.output_shape] + ([tail.output_shape] if tail else [])
        profiles = [
            _profile(p, s, f"{spec.name}[{i}]", setup)
            for i, (p, s) in enumerate(zip(parts, shapes, strict=False))
        ]
        device_parts = (profiles[0], profiles[2]) if tail else (profiles[0],)
        device_modules = [parts[0], parts[2]] if tail else [parts[0]]
        state_bytes = sum(
            int(t.numel()) * t.element_size()
            for m in device_modules
            for t in m.state_dict().values()
        )
        out.append(
            CutProfile(
                cut=point,
                cuts=cuts,
                device=combine(f"{spec.name}[device]", device_parts),
                device_parts=device_parts,
                server=profiles[1],
                device_state_bytes=state_bytes,
                boundary_elements=(point.elements, *((tail.elements,) if tail else ())),
            )
        )
    return out


def batch_sizes(samples: int, *, batch_size: int, epochs: int) -> list[int]:
    """Sizes of the training batches of one round: ``epochs`` passes over ``samples``."""
    full, rest = divmod(samples, batch_size)
    return ([batch_size] * full + ([rest] if rest else [])) * epochs


def batch_messages(
    cp: CutProfile, batch: int, *, compression: Compression, num_classes: int
) -> dict[Stream, int]:
    """Bytes of each message stream for one batch: smashed data one way, gradients back.

    Boundary 0 (device -> server) sends activations up (with the labels unless
    U-shaped) and receives gradients; boundary 1 of the U-shaped variant sends
    the server's activations down and the head's gradients up.
    """
    out: dict[Stream, int] = {}
    for i, elements in enumerate(cp.boundary_elements):
        act = message_bytes(elements * batch, compression=compression)
        up = i % 2 == 0
        if up and len(cp.boundary_elements) == 1:
            act += batch * label_bytes(num_classes)
        act_stream: Stream = ("up" if up else "down", "activations")
        grad_stream: Stream = ("down" if up else "up", "gradients")
        out[act_stream] = out.get(act_stream, 0) + act
        out[grad_stream] = out.get(grad_stream, 0) + gradient_bytes(elements * batch)
    return out


def device_cost(cp: CutProfile, device: DeviceProfile, *, samples: int) -> ComputeCost:
    """Training the device-side parts on ``samples`` examples (forward + backward)."""
    costs = [training_cost(p, device, samples=samples) for p in cp.device_parts]
    return ComputeCost(
        macs=sum(c.macs for c in costs),
        latency_s=math.fsum(c.latency_s for c in costs),
        energy_j=math.fsum(c.energy_j for c in costs),
    )


def estimate(
    cp: CutProfile,
    setup: SplitSetup,
    *,
    device: DeviceProfile,
    link: Link,
    link_name: str,
    samples: int,
    num_classes: int,
    message_share: float = 1.0,
    sync_share: float = 1.0,
    leakage: float | None = None,
) -> CutEstimate:
    """Round latency, device energy and bytes of one device at one cut (no fading)."""
    fit = check_fit(cp.device, device, training=True)
    batches = batch_sizes(samples, batch_size=setup.batch_size, epochs=setup.epochs)
    per_batch = [
        batch_messages(cp, b, compression=setup.compression, num_classes=num_classes)
        for b in batches
    ]
    compute = device_cost(cp, device, samples=samples * setup.epochs)
    server = training_cost(cp.server, setup.server, samples=samples * setup.epochs)
    times, energies = [compute.latency_s, server.latency_s], [compute.energy_j]
    airtimes: list[float] = []
    sent = {"up": 0, "down": 0}
    outage = False
    first = per_batch[0] if per_batch else {}
    streams = [("down", sync_share, [cp.device_state_bytes])]
    streams.append(("up", sync_share, [cp.device_state_bytes]))
    streams += [(d, message_share, [m[(d, w)] for m in per_batch]) for d, w in first]
    for direction, share, size in streams:
        for n in size:
            res = link.transfer(n, share=share, direction=direction)  # type: ignore[arg-type]
            outage = outage or res.outage
            airtimes.append(res.time_s)
            energies.append(res.energy_j)
            sent[direction] += n
    return CutEstimate(
        device=device.id,
        link=link_name,
        distance_m=link.distance_m,
        cut=cp.cut.index,
        layer=cp.cut.layer,
        train_memory_bytes=cp.device.train_memory_bytes or 0,
        sram_bytes=device.sram_bytes,
        fits=fit.fits,
        reason=fit.reason,
        outage=outage,
        device_compute_s=compute.latency_s,
        server_s=server.latency_s,
        airtime_s=math.fsum(airtimes),
        latency_s=math.fsum(times + airtimes),
        energy_j=math.fsum(energies),
        bytes_up=sent["up"],
        bytes_down=sent["down"],
        bytes=sent["up"] + sent["down"],
        bytes_per_batch=sum(first.values()),
        leakage=leakage,
    )


def choose(estimates: Sequence[CutEstimate], objective: Objective) -> CutEstimate | None:
    """The fitting cut with the lowest objective (ties: the earlier cut); None if none fits.

    A cut whose link is in outage (SNR below the preset's threshold) is never chosen.
    """
    fitting = [e for e in estimates if e.fits and not e.outage]
    if not fitting:
        return None
    return min(fitting, key=lambda e: (e.objective(objective), e.cut))


def as_row(e: CutEstimate) -> dict[str, Any]:
    return asdict(e)
