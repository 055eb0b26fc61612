"""What one cut costs: the figures the cut planner compares and the work a run bills.

Pure functions over the profiles of the device and server parts of a model at
a cut (:func:`tinylarge.models.cuts.cut_points`, :func:`~tinylarge.models.cuts.segments`):
the device side's training memory and flash (checked against the device with
:func:`tinylarge.hardware.fit.check_fit`), the device's and the server's
training work (:class:`~tinylarge.hardware.cost.Train` descriptors,
:meth:`CutProfile.device_work` and :meth:`CutProfile.server_work`, about 3x the
forward MACs of their layers), the smashed-data and gradient messages of every
batch, and the client-side model each way. A run bills exactly these
descriptors and messages through the round clock; :func:`estimate` prices the
same ones (:func:`~tinylarge.hardware.cost.total_cost`, the link on the nominal
channel), so what the plan predicts is what a run without fading bills.

SplitFed: Thapa et al., AAAI 2022, https://arxiv.org/abs/2004.12088; split
learning: Gupta and Raskar 2018, https://arxiv.org/abs/1810.06060.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from torch import nn

from tinylarge.errors import TinylargeError
from tinylarge.hardware.catalogue import DeviceProfile
from tinylarge.hardware.cost import Elementwise, Train, total_cost
from tinylarge.hardware.fit import check_fit
from tinylarge.models.cuts import CutPoint, cut_points, segments
from tinylarge.models.profile import ModelProfile
from tinylarge.models.profiler import profile_model
from tinylarge.models.split import Compression, gradient_bytes, label_bytes, message_bytes
from tinylarge.models.zoo import ModelSpec
from tinylarge.network.link import Link
from tinylarge.security.nopeek import SmashedGuard
from tinylarge.sim.rounds import Stream

Objective = Literal["latency", "energy"]


@dataclass(frozen=True)
class SplitSetup:
    """What the cost of a cut depends on besides the device and its link.

    Attributes:
        spec: the whole model.
        batch_size: training batch size (also the smashed-data message size).
        epochs: local epochs per round.
        optimizer: the training optimizer (``sgd``, ``momentum``, ``adam``).
        compression: smashed-data compression (``fp32``, ``fp16``, ``int8``).
        u_shaped: labels and the last layers stay on the device.
        server: the server profile that trains the server side.
        guard: the devices' defense of their smashed data (NoPeek, cut noise), if any.
    """

    spec: ModelSpec
    batch_size: int
    epochs: int
    optimizer: str
    compression: Compression
    u_shaped: bool
    server: DeviceProfile
    guard: SmashedGuard | None = None


@dataclass(frozen=True)
class Sharing:
    """Which of a device's transfers share its cell with the round's other devices."""

    download: bool = False
    messages: bool = False
    upload: bool = False


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

    def device_work(self, samples: int) -> list[Train]:
        """Training the device-side parts on ``samples`` examples (what a run bills)."""
        return [Train(p, samples) for p in self.device_parts]

    def server_work(self, samples: int) -> Train:
        """Training the server side on ``samples`` examples (what a run bills)."""
        return Train(self.server, samples)


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


def _profile(module: nn.Module, shape: tuple[int, ...], name: str, s: SplitSetup) -> ModelProfile:
    return profile_model(
        module,
        input_shape=shape,
        name=name,
        dtype="fp32",
        train_batch_size=s.batch_size,
        optimizer=s.optimizer,
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


def guard_work(cp: CutProfile, setup: SplitSetup, samples: int) -> Elementwise:
    """The device's extra work for its smashed-data defense over one round of ``samples``
    local examples (:meth:`tinylarge.security.nopeek.SmashedGuard.work`; none without one)."""
    if setup.guard is None:
        return Elementwise(0)
    return setup.guard.work(
        batch_sizes(samples, batch_size=setup.batch_size, epochs=setup.epochs),
        input_elements=math.prod(setup.spec.input_shape),
        smashed_elements=cp.boundary_elements[0],
    )


def batch_messages(
    cp: CutProfile, batch: int, *, compression: Compression, num_classes: int
) -> dict[Stream, int]:
    """Bytes of each message stream for one batch: smashed data one way, gradients back.

    The same sizes :func:`tinylarge.schemes._split_task.run_parts` measures in a run.
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


def estimate(
    cp: CutProfile,
    setup: SplitSetup,
    *,
    device: DeviceProfile,
    link: Link,
    link_name: str,
    samples: int,
    num_classes: int,
    shares: tuple[float, float, float] = (1.0, 1.0, 1.0),
    leakage: float | None = None,
) -> CutEstimate:
    """Round latency, device energy and bytes of one device at one cut (no fading).

    ``shares``: the device's share of its cell for the client-model download, the
    per-batch messages and the client-model upload.
    """
    fit = check_fit(cp.device, device, training=True)
    batches = batch_sizes(samples, batch_size=setup.batch_size, epochs=setup.epochs)
    per_batch = [
        batch_messages(cp, b, compression=setup.compression, num_classes=num_classes)
        for b in batches
    ]
    trained = samples * setup.epochs
    compute = total_cost([*cp.device_work(trained), guard_work(cp, setup, samples)], device)
    server = total_cost(cp.server_work(trained), setup.server)
    times, energies = [compute.latency_s, server.latency_s], [compute.energy_j]
    airtimes: list[float] = []
    sent = {"up": 0, "down": 0}
    outage = False
    first = per_batch[0] if per_batch else {}
    down_share, message_share, up_share = shares
    streams = [("down", down_share, [cp.device_state_bytes])]
    streams.append(("up", up_share, [cp.device_state_bytes]))
    streams += [(d, message_share, [m[(d, w)] for m in per_batch]) for d, w in first]
    for direction, share, sizes in streams:
        for n in sizes:
            res = link.transfer(n, share=share, direction="up" if direction == "up" else "down")
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

    A cut whose link is in outage is chosen only when every fitting cut's is (the
    link does not depend on the cut): then by its computation alone, the link's
    cost being unknown (device plus server seconds, or device compute joules, which
    is all an estimate in outage holds).
    """
    fitting = [e for e in estimates if e.fits]
    if not fitting:
        return None

    def rank(e: CutEstimate) -> tuple[bool, float, int]:
        if e.outage:
            cost = e.device_compute_s + e.server_s if objective == "latency" else e.energy_j
            return True, cost, e.cut
        return False, e.objective(objective), e.cut

    return min(fitting, key=rank)


def as_row(e: CutEstimate) -> dict[str, Any]:
    return asdict(e)
