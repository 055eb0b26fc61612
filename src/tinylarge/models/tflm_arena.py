"""The tensor arena TensorFlow Lite Micro needs for a ``.tflite``: pure functions.

TFLM allocates everything from one arena (tensorflow/lite/micro/micro_allocator.cc,
https://github.com/tensorflow/tflite-micro). Persistent data grows down from
the *tail*, the memory plan of the activations and kernel scratch buffers sits
at the *head*; the arena must hold, at every moment of ``AllocateTensors``,
the tail so far plus the head so far. This module adds those up from the
model's graph and the struct layouts of the runtime, for two builds:

- ``x86-64``: the ``tflite-micro`` PyPI wheel measured here (64-bit pointers,
  reference kernels, ``USE_TFLM_COMPRESSION`` on, ``RecordingMicroAllocator``);
- ``cortex-m``: a 32-bit build (4-byte pointers and ``size_t``) with the same
  reference kernels. CMSIS-NN kernels would add their im2col/accumulator
  scratch buffers, which this model does not predict.

Parts, with their sources in tflite-micro:

- **head**: the ``GreedyMemoryPlanner`` plan (memory_planner/greedy_memory_planner.cc)
  over every non-constant, non-variable tensor, each size rounded up to 16
  bytes (``CreatePlan`` in micro_allocator.cc aligns to
  ``MicroArenaBufferAlignment()``); lifetimes from micro_allocation_info.cc
  ``MarkAllocationLifetimes``: graph inputs at scope 0, operator ``i`` at
  scope ``i + 1`` (its outputs created, its inputs last used there), graph
  outputs kept to the last scope. A reshape gets its own buffer (TFLM copies).
  The reference kernels request no scratch buffers.
- **tail**: ``TfLiteEvalTensor`` per tensor (data, dims pointers and a type:
  24 B / 12 B), ``NodeAndRegistration`` per operator (``TfLiteNode``'s six
  pointers and an int, plus the registration pointer: 64 B / 32 B), each
  operator's builtin options struct (builtin_op_data.h, e.g.
  ``TfLiteConvParams`` 28 B), each kernel's ``OpData`` from ``Init``
  (kernels/conv.h ``OpDataConv`` 80 B / 64 B, fully_connected.h 72 B / 56 B,
  ``SoftmaxParams`` 80 B / 56 B, pooling.h 32 B, add.h 60 B) and the
  per-channel multiplier and shift arrays its ``Prepare`` allocates
  (2 x 4 B per output channel), each rounded to 16 B; the interpreter's
  persistent ``TfLiteTensor`` for every graph input and output (64 B / 40 B)
  with its ``TfLiteAffineQuantization`` and zero-point array; and the
  allocator objects themselves (:data:`ALLOCATOR_OBJECTS_BYTES`).
- **planning peak**: while ``CommitStaticMemoryPlan`` runs, the head holds the
  scratch-request array (``kMaxScratchBuffersPerOp`` = 12 entries), the
  ``AllocationInfo`` array (one per tensor: 32 B / 24 B) and the planner's
  work space of 40 B per planned buffer (``per_buffer_size()``), before the
  interpreter's input/output tensors join the tail. For small models (AD)
  this, not the final plan, sets the arena.
- **prepare peak**: each kernel's ``Prepare`` holds temporary ``TfLiteTensor``
  structs of its inputs and output, with their quantization and zero-point
  arrays (per channel for filters), in the head.

The arena is the largest of the three moments, rounded up to 16 bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from tinylarge.models.graph import numel
from tinylarge.models.memory import Buffer
from tinylarge.models.tflite_reader import TENSOR_TYPE_BYTES, StoredGraph, StoredOperator
from tinylarge.registry import Registry

#: ``MicroArenaBufferAlignment()`` (micro_arena_constants.h).
ALIGNMENT_BYTES = 16
#: ``kMaxScratchBuffersPerOp`` (micro_allocator.cc).
MAX_SCRATCH_BUFFERS_PER_OP = 12
#: ``GreedyMemoryPlanner::per_buffer_size()``: requirements (4 ints), two sorted int
#: arrays, a list entry (3 ints) and the offset: 40 bytes on any build.
PLANNER_BYTES_PER_BUFFER = 16 + 4 + 4 + 12 + 4


def _round(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


@dataclass(frozen=True)
class Build:
    """A TFLM build: pointer and ``size_t`` width (bytes) and its allocator overhead.

    ``allocator_bytes``: the allocator objects at the tail (``SingleArenaBufferAllocator``,
    ``MicroAllocator``, ``GreedyMemoryPlanner``, ``MicroBuiltinDataAllocator``,
    ``SubgraphAllocations``, see ``MicroAllocator::GetDefaultTailUsage``).
    """

    name: str
    pointer_bytes: int
    allocator_bytes: int

    def struct(self, ints: int = 0, pointers: int = 0, *, doubles: int = 0) -> int:
        """Size of a struct of 4-byte fields, pointers and doubles (C alignment, no reordering)."""
        raw = 8 * doubles + 4 * ints + self.pointer_bytes * pointers
        align = max(8 if doubles else 4, self.pointer_bytes if pointers else 4)
        return _round(raw, align)

    @property
    def eval_tensor_bytes(self) -> int:
        """``TfLiteEvalTensor``: data and dims pointers, a type."""
        return self.struct(ints=1, pointers=2)

    @property
    def node_bytes(self) -> int:
        """``NodeAndRegistration``: ``TfLiteNode`` (6 pointers, an int), a registration pointer."""
        return self.struct(ints=1, pointers=6) + self.pointer_bytes

    @property
    def tensor_bytes(self) -> int:
        """``TfLiteTensor`` under ``TF_LITE_STATIC_MEMORY`` (common.h)."""
        p = self.pointer_bytes
        raw = (
            _round(4 + p, p) + 8 + 3 * p + 4 + 4 + 1
        )  # quantization, params, data, dims, bytes, ...
        return _round(raw, p)

    @property
    def affine_quantization_bytes(self) -> int:
        """``TfLiteAffineQuantization``: scale and zero-point pointers, the quantized dimension."""
        return self.struct(ints=1, pointers=2)

    @property
    def allocation_info_bytes(self) -> int:
        """``AllocationInfo`` (micro_allocation_info.h): size_t, pointer, 3 ints, a bool."""
        return _round(2 * self.pointer_bytes + 13, self.pointer_bytes)

    @property
    def scratch_request_bytes(self) -> int:
        """``internal::ScratchBufferRequest``: size_t bytes, node and subgraph index."""
        return _round(self.pointer_bytes + 8, self.pointer_bytes)


#: The two builds modelled. The allocator objects are not in the allocator's
#: recording: 496 B on x86-64 is what the tails of KWS, IC and VWW each leave
#: once every recorded and modelled part is taken out (the same 496 B in all
#: three; docs/models.md). These objects are pointers and ``size_t``
#: counters, so half of it on a 32-bit build (an estimate, not a measurement).
BUILDS: Mapping[str, Build] = {
    "x86-64": Build("x86-64", pointer_bytes=8, allocator_bytes=496),
    "cortex-m": Build("cortex-m", pointer_bytes=4, allocator_bytes=248),
}

#: ``TfLiteFullyConnectedParams`` is 16 B; each fully connected operator costs
#: 16 B more that the allocator's recording does not attribute (fitted on the
#: AD model's ten FC layers: its tail is 144 B above the model with 16 B).
_FC_UNATTRIBUTED_BYTES = 16


@dataclass(frozen=True)
class Kernel:
    """What one TFLM reference kernel keeps in the arena.

    Attributes:
        builtin_bytes: its builtin options struct (``MicroBuiltinDataAllocator``).
        op_data: bytes of the ``OpData`` its ``Init`` allocates, per build.
        per_channel_input: which input's output-channel count sizes the per-channel
            multiplier and shift arrays (``None``: none); ``-1`` in ``channel_axis`` is
            the last dimension.
        per_channel_only_if_quantized_per_channel: fully connected allocates them only
            for a per-channel filter.
    """

    builtin_bytes: int = 0
    op_data: Callable[[Build], int] = field(default=lambda b: 0)
    per_channel_input: int | None = None
    channel_axis: int = 0
    per_channel_only_if_quantized_per_channel: bool = False


def _conv_op_data(b: Build) -> int:
    # OpDataConv: padding (4 ints) + 5 int32, 2 pointers, 5 ints (compression indices on).
    return _round(_round(36, b.pointer_bytes) + 2 * b.pointer_bytes + 20, b.pointer_bytes)


def _fc_op_data(b: Build) -> int:
    # OpDataFullyConnected: 9 ints, 2 pointers, a bool, 2 ints (compression indices).
    return _round(_round(_round(36, b.pointer_bytes) + 2 * b.pointer_bytes + 1, 4) + 8, 8)


KERNELS: Registry[Kernel] = Registry("TFLM kernel")
KERNELS.add("CONV_2D", Kernel(28, _conv_op_data, per_channel_input=1, channel_axis=0))
KERNELS.add("DEPTHWISE_CONV_2D", Kernel(28, _conv_op_data, per_channel_input=1, channel_axis=-1))
KERNELS.add(
    "FULLY_CONNECTED",
    Kernel(
        16 + _FC_UNATTRIBUTED_BYTES,
        _fc_op_data,
        per_channel_input=1,
        per_channel_only_if_quantized_per_channel=True,
    ),
)
KERNELS.add("AVERAGE_POOL_2D", Kernel(40, lambda b: 32))
KERNELS.add("MAX_POOL_2D", Kernel(40, lambda b: 32))
KERNELS.add("ADD", Kernel(8, lambda b: 60))
KERNELS.add("RESHAPE", Kernel(36))
KERNELS.add("SOFTMAX", Kernel(4, lambda b: b.struct(ints=7, pointers=5, doubles=1)))
KERNELS.add("QUANTIZE", Kernel(0, lambda b: b.struct(ints=6, pointers=1)))
KERNELS.add("DEQUANTIZE", Kernel(0, lambda b: b.struct(ints=6, pointers=1)))


@dataclass(frozen=True)
class ArenaPrediction:
    """Predicted TFLM arena of one model on one build (all sizes in bytes).

    Attributes:
        build: ``x86-64`` or ``cortex-m``.
        arena_bytes: the smallest arena predicted to run the model.
        head_bytes: the memory plan of the activations (and scratch buffers).
        tail_bytes: persistent data after ``AllocateTensors``.
        planning_peak_bytes: tail + head while the planner runs.
        prepare_peak_bytes: tail + head during the largest kernel ``Prepare``.
        activation_peak_bytes: live activation bytes at the busiest step (no alignment).
        unmodelled_ops: operators without a kernel entry (counted with no op data).
    """

    build: str
    arena_bytes: int
    head_bytes: int
    tail_bytes: int
    planning_peak_bytes: int
    prepare_peak_bytes: int
    activation_peak_bytes: int
    unmodelled_ops: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(self).items()}


def greedy_offsets(buffers: Sequence[Buffer]) -> list[int]:
    """Offsets TFLM's ``GreedyMemoryPlanner`` gives ``buffers`` (in the order they were added).

    Buffers are visited largest first; among equal sizes the one added *last*
    comes first (``CalculateOffsetsIfNeeded`` fills the sort array from its end,
    then ``ReverseSortInPlace`` is a stable bubble sort). Each goes to the lowest
    offset where it fits between the buffers already placed that are alive at a
    common scope. :func:`tinylarge.models.memory.greedy_arena_plan` is the same
    first fit with its own tie order; this one follows TFLM's to the byte.
    """
    order = sorted(range(len(buffers)), key=lambda i: (-buffers[i].size_bytes, -i))
    offsets = [0] * len(buffers)
    placed: list[int] = []  # buffer ids sorted by offset (stable for equal offsets)
    for i in order:
        want = buffers[i]
        candidate = 0
        for j in placed:
            if not buffers[j].overlaps(want):
                continue
            if offsets[j] - candidate >= want.size_bytes:
                break
            candidate = max(candidate, offsets[j] + buffers[j].size_bytes)
        offsets[i] = candidate
        at = len(placed)
        while at > 0 and offsets[placed[at - 1]] > candidate:
            at -= 1
        placed.insert(at, i)
    return offsets


def tensor_bytes(graph: StoredGraph, t: int) -> int:
    """Bytes of tensor ``t``'s data (``TfLiteEvalTensorByteLength``)."""
    tensor = graph.tensors[t]
    return int(numel(tensor.shape) * TENSOR_TYPE_BYTES.get(tensor.type_code, 4) + 0.5)


def planned_buffers(graph: StoredGraph) -> list[Buffer]:
    """Tensors TFLM plans in the head, with TFLM's lifetimes (scopes) and 16-byte sizes.

    Every tensor without constant data is planned (variable tensors, which TFLM
    keeps in the tail, do not occur in the models this reads).
    """
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for t in graph.inputs:
        first.setdefault(t, 0)
        last[t] = 0
    for i, op in enumerate(graph.operators):
        scope = i + 1
        for t in op.outputs:
            first.setdefault(t, scope)
        for t in (*op.inputs, *op.outputs):
            if t >= 0:
                last[t] = scope
    end = len(graph.operators)
    for t in graph.outputs:
        first.setdefault(t, end)
        last[t] = end
    return [
        Buffer(str(t), _round(tensor_bytes(graph, t), ALIGNMENT_BYTES), first[t], last[t])
        for t in sorted(first)
        if graph.tensors[t].data is None
    ]


def _needs_allocating(graph: StoredGraph) -> int:
    return sum(1 for t in graph.tensors if t.data is None)


def _op_persistent(op: StoredOperator, graph: StoredGraph, build: Build) -> tuple[int, int]:
    """(builtin options bytes, kernel allocations in the tail) of one operator."""
    if op.kind not in KERNELS:
        return 0, 0
    kernel = KERNELS[op.kind]
    tail = _round(kernel.op_data(build), ALIGNMENT_BYTES) if kernel.op_data(build) else 0
    index = kernel.per_channel_input
    if index is not None and len(op.inputs) > index and op.inputs[index] >= 0:
        filt = graph.tensors[op.inputs[index]]
        if filt.shape and (
            not kernel.per_channel_only_if_quantized_per_channel or len(filt.scales) > 1
        ):
            channels = filt.shape[kernel.channel_axis]
            tail += 2 * _round(4 * channels, ALIGNMENT_BYTES)
    return kernel.builtin_bytes, tail


def _temp_tensor_bytes(graph: StoredGraph, t: int, build: Build) -> int:
    """A temporary ``TfLiteTensor`` with its quantization (``AllocateTempTfLiteTensor``)."""
    channels = len(graph.tensors[t].scales)
    size = build.tensor_bytes
    if channels > 0:
        size += build.affine_quantization_bytes + _round(4 + 4 * channels, 4)
    return size


def predict_arena(graph: StoredGraph, *, build: str = "x86-64") -> ArenaPrediction:
    """Predicted smallest TFLM arena of ``graph`` on ``build`` (see the module docstring)."""
    b = BUILDS[build]
    buffers = planned_buffers(graph)
    offsets = greedy_offsets(buffers)
    head = max((o + x.size_bytes for o, x in zip(offsets, buffers, strict=True)), default=0)
    n_tensors = len(graph.tensors)
    base = (
        b.allocator_bytes
        + _round(n_tensors * b.eval_tensor_bytes, ALIGNMENT_BYTES)
        + _round(len(graph.operators) * b.node_bytes, ALIGNMENT_BYTES)
    )
    builtin = 0
    kernel_tail: list[int] = []
    for op in graph.operators:
        options, persistent = _op_persistent(op, graph, b)
        builtin += options
        kernel_tail.append(persistent)
    builtin = _round(builtin, ALIGNMENT_BYTES)
    scratch = b.scratch_request_bytes * MAX_SCRATCH_BUFFERS_PER_OP
    prepare_peak = 0
    done = base + builtin
    for op, persistent in zip(graph.operators, kernel_tail, strict=True):
        temps = sum(_temp_tensor_bytes(graph, t, b) for t in (*op.inputs, *op.outputs) if t >= 0)
        done += persistent
        prepare_peak = max(prepare_peak, done + scratch + temps)
    tail_at_plan = done
    planning = (
        tail_at_plan
        + _round(scratch, ALIGNMENT_BYTES)
        + _round(b.pointer_bytes, ALIGNMENT_BYTES)  # subgraph offsets: one subgraph
        + _round(n_tensors * b.allocation_info_bytes, ALIGNMENT_BYTES)
        + PLANNER_BYTES_PER_BUFFER * _needs_allocating(graph)
    )
    io = 0
    for tensors in (graph.inputs, graph.outputs):
        io += _round(b.pointer_bytes * len(tensors), ALIGNMENT_BYTES)
        for t in tensors:
            io += b.tensor_bytes + b.affine_quantization_bytes
            io += _round(4 + 4 * max(len(graph.tensors[t].scales), 1), 4)
    tail = tail_at_plan + io
    arena = _round(max(tail + head, planning, prepare_peak), ALIGNMENT_BYTES)
    live = max(
        (
            sum(x.size_bytes for x in buffers if x.first_step <= s <= x.last_step)
            for s in range(len(graph.operators) + 1)
        ),
        default=0,
    )
    return ArenaPrediction(
        build=build,
        arena_bytes=arena,
        head_bytes=head,
        tail_bytes=tail,
        planning_peak_bytes=planning,
        prepare_peak_bytes=prepare_peak,
        activation_peak_bytes=live,
        unmodelled_ops=tuple(sorted({op.kind for op in graph.operators if op.kind not in KERNELS})),
    )


def predict_arenas(graph: StoredGraph) -> dict[str, ArenaPrediction]:
    """:func:`predict_arena` for every build in :data:`BUILDS`."""
    return {name: predict_arena(graph, build=name) for name in BUILDS}
