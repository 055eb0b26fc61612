"""Memory planning for inference and training: pure functions over buffer lifetimes.

Inference on a microcontroller keeps every activation in one SRAM arena. An
activation tensor is a :class:`Buffer` that lives from the step of the
operator that produces it to the step of its last consumer (graph inputs from
step 0, graph outputs to the last step). The *peak* is the maximum over steps
of the bytes alive at that step; it is a lower bound on any arena. The greedy
offset planner places buffers in an arena the way TensorFlow Lite Micro's
``GreedyMemoryPlanner`` does (largest first, each at the lowest offset that
does not collide with a buffer alive at the same time), so its arena is at
least the peak and usually equal to it.

Training memory (:func:`training_memory_bytes`) is the textbook sum: weights,
gradients, optimizer state, the activations saved for the backward pass and
the input batch, all at fp32.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tinylarge.errors import TinylargeError
from tinylarge.registry import Registry

#: Optimizer state in copies of the weights (SGD none, momentum one buffer, Adam two moments).
OPTIMIZER_STATE_COPIES: Registry[int] = Registry("optimizer")
OPTIMIZER_STATE_COPIES.add("sgd", 0)
OPTIMIZER_STATE_COPIES.add("momentum", 1)
OPTIMIZER_STATE_COPIES.add("adam", 2)


@dataclass(frozen=True)
class Buffer:
    """One activation buffer and its lifetime (both steps inclusive).

    Attributes:
        name: tensor name.
        size_bytes: bytes of the buffer.
        first_step: index of the operator that produces it (0 for graph inputs).
        last_step: index of its last consumer (the last step for graph outputs).
    """

    name: str
    size_bytes: int
    first_step: int
    last_step: int

    def overlaps(self, other: Buffer) -> bool:
        """Whether the two buffers are alive at a common step."""
        return self.first_step <= other.last_step and other.first_step <= self.last_step


@dataclass(frozen=True)
class Step:
    """One operator in execution order: the tensors it reads and writes.

    ``alias=True`` marks a view (reshape, flatten, squeeze): its first output
    shares the buffer of its first input instead of taking new bytes.
    ``inplace=True`` marks an elementwise operator that may overwrite its first
    input (an activation or batch norm fused into the operator before it): the
    output shares the input's buffer when nothing reads the input afterwards.
    """

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    alias: bool = False
    inplace: bool = False


@dataclass(frozen=True)
class ArenaPlan:
    """Offsets of every buffer in one arena.

    Attributes:
        arena_bytes: size of the arena (end of the highest buffer).
        peak_bytes: peak of live bytes, the lower bound of ``arena_bytes``.
        offsets: byte offset of every buffer, by name.
    """

    arena_bytes: int
    peak_bytes: int
    offsets: Mapping[str, int]


def live_bytes_per_step(buffers: Iterable[Buffer]) -> tuple[int, ...]:
    """Bytes alive at each step ``0 .. max(last_step)``."""
    items = list(buffers)
    if not items:
        return ()
    num_steps = max(b.last_step for b in items) + 1
    delta = [0] * (num_steps + 1)
    for b in items:
        if b.first_step < 0 or b.last_step < b.first_step:
            raise ValueError(f"buffer {b.name!r} has an invalid lifetime")
        delta[b.first_step] += b.size_bytes
        delta[b.last_step + 1] -= b.size_bytes
    out: list[int] = []
    running = 0
    for step in range(num_steps):
        running += delta[step]
        out.append(running)
    return tuple(out)


def peak_bytes(buffers: Iterable[Buffer]) -> int:
    """Maximum over steps of the bytes of live buffers (0 for no buffers).

    >>> peak_bytes([Buffer("x", 100, 0, 1), Buffer("y", 50, 1, 2), Buffer("z", 10, 2, 2)])
    150
    """
    return max(live_bytes_per_step(buffers), default=0)


def _align(value: int, alignment_bytes: int) -> int:
    return -(-value // alignment_bytes) * alignment_bytes


def greedy_arena_plan(buffers: Sequence[Buffer], *, alignment_bytes: int = 1) -> ArenaPlan:
    """Place buffers in one arena, largest first, each at the lowest free offset.

    Follows TensorFlow Lite Micro's greedy memory planner
    (tensorflow/lite/micro/memory_planner/greedy_memory_planner.cc): buffers
    sorted by size (descending, ties by first step); each goes into the first
    gap, in offset order, among the already placed buffers whose lifetime
    overlaps its own. Offsets are rounded up to ``alignment_bytes`` (TFLM
    uses 16).
    """
    if alignment_bytes < 1:
        raise ValueError("alignment_bytes must be >= 1")
    order = sorted(buffers, key=lambda b: (-b.size_bytes, b.first_step, b.name))
    placed: list[tuple[int, Buffer]] = []
    offsets: dict[str, int] = {}
    for buf in order:
        clashes = sorted(
            ((off, other) for off, other in placed if other.overlaps(buf)), key=lambda p: p[0]
        )
        candidate = 0
        for off, other in clashes:
            if candidate + buf.size_bytes <= off:
                break
            candidate = max(candidate, _align(off + other.size_bytes, alignment_bytes))
        offsets[buf.name] = candidate
        placed.append((candidate, buf))
    arena = max((off + b.size_bytes for off, b in placed), default=0)
    return ArenaPlan(arena_bytes=arena, peak_bytes=peak_bytes(order), offsets=offsets)


def lifetimes(
    *,
    steps: Sequence[Step],
    sizes_bytes: Mapping[str, int],
    graph_inputs: Sequence[str],
    graph_outputs: Sequence[str],
) -> list[Buffer]:
    """Buffers and lifetimes of the activation tensors of a schedule.

    Tensors missing from ``sizes_bytes`` (constants: weights, biases, shapes)
    live in flash and are ignored. A tensor produced and never read lives for
    its producing step only. An aliasing step's output shares its input's
    buffer, which then lives until the last consumer of either; an in-place
    step's output does the same when the input is not read afterwards.
    """
    return _lifetimes(
        steps=steps, sizes_bytes=sizes_bytes, graph_inputs=graph_inputs, graph_outputs=graph_outputs
    )[0]


def schedule_arena_plan(
    *,
    steps: Sequence[Step],
    sizes_bytes: Mapping[str, int],
    graph_inputs: Sequence[str],
    graph_outputs: Sequence[str],
    alignment_bytes: int = 1,
) -> ArenaPlan:
    """Greedy arena plan of a schedule with an offset for every activation tensor.

    The buffers are :func:`lifetimes`'s and their offsets
    :func:`greedy_arena_plan`'s; a tensor that shares its input's buffer (an
    alias or in-place step) gets that buffer's offset, so generated code can
    address every tensor of the schedule in one arena.
    """
    buffers, root = _lifetimes(
        steps=steps, sizes_bytes=sizes_bytes, graph_inputs=graph_inputs, graph_outputs=graph_outputs
    )
    plan = greedy_arena_plan(buffers, alignment_bytes=alignment_bytes)
    offsets = dict(plan.offsets)
    for name in sizes_bytes:
        key = name
        while key in root:
            key = root[key]
        if name not in offsets and key in plan.offsets:
            offsets[name] = plan.offsets[key]
    return ArenaPlan(arena_bytes=plan.arena_bytes, peak_bytes=plan.peak_bytes, offsets=offsets)


def _lifetimes(
    *,
    steps: Sequence[Step],
    sizes_bytes: Mapping[str, int],
    graph_inputs: Sequence[str],
    graph_outputs: Sequence[str],
) -> tuple[list[Buffer], dict[str, str]]:
    root: dict[str, str] = {}

    def find(name: str) -> str:
        while name in root:
            name = root[name]
        return name

    last_read: dict[str, int] = {}
    for index, step in enumerate(steps):
        for name in step.inputs:
            last_read[name] = index
    outputs_set = set(graph_outputs)

    def free_after(source: str, index: int) -> bool:
        key = find(source)
        group = [n for n in sizes_bytes if find(n) == key]
        return all(last_read.get(n, -1) <= index and n not in outputs_set for n in group)

    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for name in graph_inputs:
        if name in sizes_bytes:
            first[name] = 0
            last[name] = 0
    for index, step in enumerate(steps):
        for name in step.inputs:
            if name in sizes_bytes:
                key = find(name)
                first.setdefault(key, 0)
                last[key] = max(last.get(key, index), index)
        for position, name in enumerate(step.outputs):
            if name not in sizes_bytes:
                continue
            source = step.inputs[0] if step.inputs else None
            shares = (
                position == 0
                and source is not None
                and source in sizes_bytes
                and sizes_bytes[source] == sizes_bytes[name]
                and (step.alias or (step.inplace and free_after(source, index)))
            )
            if shares and source is not None:
                root[name] = find(source)
                continue
            first.setdefault(name, index)
            last[name] = max(last.get(name, index), index)
    end = max(len(steps) - 1, 0)
    for name in graph_outputs:
        if name in sizes_bytes:
            last[find(name)] = end
    buffers = [
        Buffer(
            name=name, size_bytes=sizes_bytes[name], first_step=first[name], last_step=last[name]
        )
        for name in first
    ]
    return buffers, root


def training_memory_bytes(
    *,
    params: int,
    saved_activation_elements: int,
    input_elements: int,
    batch_size: int,
    optimizer: str,
) -> int:
    """Bytes to train at fp32: weights + gradients + optimizer state + activations + input.

    Args:
        params: trainable parameters.
        saved_activation_elements: activation elements kept for the backward
            pass at batch 1 (the outputs of every operator is the usual bound).
        input_elements: elements of one input sample.
        batch_size: training batch size.
        optimizer: ``"sgd"`` (no state), ``"momentum"`` (SGD with momentum: one copy of the
            weights) or ``"adam"`` (two copies).
    """
    if batch_size < 1:
        raise TinylargeError(f"train_batch_size must be >= 1, got {batch_size}")
    copies = OPTIMIZER_STATE_COPIES[optimizer]
    fp32 = 4
    weights_and_state = params * fp32 * (2 + copies)
    per_sample = (saved_activation_elements + input_elements) * fp32
    return weights_and_state + per_sample * batch_size
