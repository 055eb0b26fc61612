"""Lower a fully-int8 ``.tflite`` graph to calls of the C kernels, with one arena plan.

:func:`lower` reads the file with :func:`tinylarge.models.tflite_reader.read_tflite`,
checks every operator against :data:`SUPPORTED` (anything else, or any float
tensor, is a :class:`~tinylarge.errors.TinylargeError` naming the operator),
computes each kernel's fixed-point parameters as TensorFlow Lite Micro does at
``Prepare`` (:mod:`tinylarge.compress.csource.quant`) and places every
activation in one arena with the project's memory planner
(:func:`tinylarge.models.memory.schedule_arena_plan`, TFLM's greedy order).
``RESHAPE``, ``SQUEEZE`` and ``EXPAND_DIMS`` alias their input and cost no code.
The result, :class:`CModel`, is what :mod:`~tinylarge.compress.csource.emit`
prints and what the fit report sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinylarge.compress.csource import quant
from tinylarge.errors import TinylargeError
from tinylarge.models.graph import numel
from tinylarge.models.memory import Step, schedule_arena_plan
from tinylarge.models.tflite_reader import StoredGraph, StoredOperator, StoredTensor, read_tflite

INT8, INT32 = 9, 2
#: Arena offsets are rounded up to this many bytes (TFLM aligns to 16).
ARENA_ALIGNMENT_BYTES = 16
_ALIASES = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS")
#: Struct field order of tl_kernels.h, per parameter struct.
FIELDS: dict[str, tuple[str, ...]] = {
    "tl_conv_params": (
        "in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "k_h", "k_w", "stride_h",
        "stride_w", "dil_h", "dil_w", "pad_h", "pad_w", "filter_depth", "depth_multiplier",
        "input_offset", "output_offset", "act_min", "act_max",
    ),
    "tl_pool_params": (
        "in_h", "in_w", "channels", "out_h", "out_w", "k_h", "k_w", "stride_h", "stride_w",
        "pad_h", "pad_w", "act_min", "act_max",
    ),
    "tl_fc_params": (
        "batches", "in_depth", "out_depth", "input_offset", "output_offset", "act_min",
        "act_max", "per_channel",
    ),
    "tl_add_params": (
        "size", "input1_offset", "input2_offset", "output_offset", "input1_multiplier",
        "input2_multiplier", "output_multiplier", "input1_shift", "input2_shift",
        "output_shift", "left_shift", "act_min", "act_max",
    ),
    "tl_softmax_params": ("rows", "depth", "input_multiplier", "input_left_shift", "diff_min"),
}  # fmt: skip
#: Leading int16_t fields of each parameter struct (the rest are int32_t).
INT16_FIELDS = {"tl_conv_params": 16, "tl_pool_params": 11}


def struct_bytes(struct: str) -> int:
    """``sizeof`` a parameter struct of tl_kernels.h (int16 fields, then 4-aligned int32)."""
    n16 = INT16_FIELDS.get(struct, 0)
    return -(-2 * n16 // 4) * 4 + 4 * (len(FIELDS[struct]) - n16)


@dataclass(frozen=True)
class ConstArray:
    """A constant array of the generated C: its C name, element type and values."""

    name: str
    ctype: str  # "int8_t" or "int32_t"
    values: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.values.size) * (1 if self.ctype == "int8_t" else 4)


@dataclass(frozen=True)
class Call:
    """One kernel call: the C function, its parameter struct and its arguments."""

    kind: str  # the TFLite operator
    function: str  # the tl_kernels.h function
    struct: str  # parameter struct type, e.g. tl_conv_params
    params: dict[str, int]
    inputs: tuple[int, ...]  # activation tensors read, in argument order
    consts: tuple[ConstArray | None, ...]  # weights, bias, multipliers, shifts (None: NULL)
    output: int


@dataclass(frozen=True)
class CModel:
    """A lowered model: kernel calls in order, arena offsets, and the I/O quantization."""

    calls: tuple[Call, ...]
    offsets: dict[int, int]  # activation tensor -> arena offset
    arena_bytes: int
    input: StoredTensor
    output: StoredTensor
    operators: tuple[str, ...] = field(default=())  # every TFLite operator, aliases included

    @property
    def const_bytes(self) -> int:
        """Bytes of constant data on a 32-bit target: arrays and parameter structs."""
        arrays = {c.name: c.nbytes for call in self.calls for c in call.consts if c is not None}
        structs = sum(struct_bytes(call.struct) for call in self.calls)
        return sum(arrays.values()) + structs

    @property
    def kernels(self) -> tuple[str, ...]:
        """The distinct kernel functions the model calls, sorted."""
        return tuple(sorted({call.function for call in self.calls}))


class _Lowering:
    def __init__(self, graph: StoredGraph, source: str) -> None:
        self.graph = graph
        self.source = source
        self.count = 0

    def tensor(self, index: int) -> StoredTensor:
        return self.graph.tensors[index]

    def activation(self, op: StoredOperator, index: int, role: str) -> StoredTensor:
        t = self.tensor(index)
        if t.data is not None:
            raise TinylargeError(
                f"{self.source}: operator {op.kind} has a constant {role}; "
                "the c-source export supports constant weights and biases only"
            )
        self.int8(op, t, role)
        return t

    def int8(self, op: StoredOperator, t: StoredTensor, role: str) -> None:
        if t.type_code != INT8 or not t.scales:
            raise TinylargeError(
                f"{self.source}: operator {op.kind} has a {t.type_name} {role} "
                f"(tensor {t.name!r}): a hybrid or float model; the c-source export "
                "needs a fully-int8 model (int8 activations and weights, int32 biases)"
            )

    def const(self, op: StoredOperator, index: int, role: str, type_code: int) -> ConstArray:
        t = self.tensor(index)
        if t.data is None or t.type_code != type_code:
            want = "int8" if type_code == INT8 else "int32"
            raise TinylargeError(
                f"{self.source}: operator {op.kind} has a {t.type_name} "
                f"{'non-constant ' if t.data is None else ''}{role} (tensor {t.name!r}); "
                f"the c-source export needs constant {want} {role}s (a hybrid or float model?)"
            )
        dtype = np.int8 if type_code == INT8 else np.dtype("<i4")
        return self.array(role[0], "int8_t" if type_code == INT8 else "int32_t",
                          np.frombuffer(t.data, dtype=dtype))  # fmt: skip

    def array(self, prefix: str, ctype: str, values: np.ndarray | list[int]) -> ConstArray:
        self.count += 1
        return ConstArray(f"tl_{prefix}{self.count}", ctype, np.asarray(values).ravel())

    def activation_of(self, op: StoredOperator) -> int:
        code = int(op.options.FusedActivationFunction()) if op.options is not None else 0
        if code not in quant.FUSED_ACTIVATIONS:
            raise TinylargeError(
                f"{self.source}: operator {op.kind} fuses activation {code}, which the "
                f"c-source export does not support (supported: "
                f"{', '.join(quant.FUSED_ACTIVATIONS.values())})"
            )
        return code

    def io(self, x: StoredTensor, y: StoredTensor, act: int) -> dict[str, int]:
        lo, hi = quant.activation_range(act, y.scales[0], y.zero_points[0])
        return {
            "input_offset": -x.zero_points[0],
            "output_offset": y.zero_points[0],
            "act_min": lo,
            "act_max": hi,
        }

    def bias(self, op: StoredOperator) -> ConstArray | None:
        if len(op.inputs) < 3 or op.inputs[2] < 0:
            return None
        return self.const(op, op.inputs[2], "bias", INT32)


def _padding(padding: int, size: int, k: int, stride: int, dilation: int, out: int) -> int:
    effective = (k - 1) * dilation + 1
    if padding == 1:  # VALID
        return 0
    return max(0, ((out - 1) * stride + effective - size) // 2)


def _conv(low: _Lowering, op: StoredOperator) -> Call:
    x = low.activation(op, op.inputs[0], "input")
    y = low.activation(op, op.outputs[0], "output")
    w_t = low.tensor(op.inputs[1])
    w = low.const(op, op.inputs[1], "weight", INT8)
    depthwise = op.kind == "DEPTHWISE_CONV_2D"
    _, in_h, in_w, in_c = _nhwc(low, op, x)
    _, out_h, out_w, out_c = _nhwc(low, op, y)
    _, k_h, k_w, f_depth = w_t.shape
    o = op.options
    stride_h, stride_w = int(o.StrideH()), int(o.StrideW())
    dil_h, dil_w = int(o.DilationHFactor()), int(o.DilationWFactor())
    pad = int(o.Padding())
    mult, shift = quant.conv_multipliers(x.scales[0], w_t.scales, y.scales[0], channels=out_c)
    params = {
        "in_h": in_h, "in_w": in_w, "in_c": in_c, "out_h": out_h, "out_w": out_w,
        "out_c": out_c, "k_h": k_h, "k_w": k_w, "stride_h": stride_h, "stride_w": stride_w,
        "dil_h": dil_h, "dil_w": dil_w,
        "pad_h": _padding(pad, in_h, k_h, stride_h, dil_h, out_h),
        "pad_w": _padding(pad, in_w, k_w, stride_w, dil_w, out_w),
        "filter_depth": 0 if depthwise else f_depth,
        "depth_multiplier": out_c // in_c if depthwise else 0,
        **low.io(x, y, low.activation_of(op)),
    }  # fmt: skip
    if depthwise and out_c % in_c:
        raise TinylargeError(f"{low.source}: DEPTHWISE_CONV_2D with {out_c} outputs from {in_c}")
    if not depthwise and (in_c % f_depth or out_c % (in_c // f_depth)):
        raise TinylargeError(
            f"{low.source}: CONV_2D with filter depth {f_depth}, {in_c} inputs and "
            f"{out_c} outputs is not a grouped convolution"
        )
    consts = (w, low.bias(op), low.array("m", "int32_t", mult), low.array("s", "int32_t", shift))
    function = "tl_depthwise_conv2d" if depthwise else "tl_conv2d"
    return Call(op.kind, function, "tl_conv_params", params, (x.index,), consts, y.index)


def _nhwc(low: _Lowering, op: StoredOperator, t: StoredTensor) -> tuple[int, int, int, int]:
    if len(t.shape) != 4 or t.shape[0] != 1:
        raise TinylargeError(
            f"{low.source}: operator {op.kind} on a tensor shaped {list(t.shape)}; "
            "the c-source export runs 2-D operators on batch-1 NHWC tensors"
        )
    return t.shape[0], t.shape[1], t.shape[2], t.shape[3]


def _fully_connected(low: _Lowering, op: StoredOperator) -> Call:
    x = low.activation(op, op.inputs[0], "input")
    y = low.activation(op, op.outputs[0], "output")
    w_t = low.tensor(op.inputs[1])
    w = low.const(op, op.inputs[1], "weight", INT8)
    if int(op.options.WeightsFormat()) != 0:
        raise TinylargeError(f"{low.source}: FULLY_CONNECTED with shuffled weights")
    out_depth, in_depth = w_t.shape[0], w_t.shape[-1]
    mult, shift = quant.conv_multipliers(
        x.scales[0], w_t.scales, y.scales[0], channels=out_depth, fully_connected=True
    )
    params = {
        "batches": numel(x.shape) // in_depth,
        "in_depth": in_depth,
        "out_depth": out_depth,
        **low.io(x, y, low.activation_of(op)),
        "per_channel": int(len(mult) > 1),
    }
    consts = (w, low.bias(op), low.array("m", "int32_t", mult), low.array("s", "int32_t", shift))
    return Call(op.kind, "tl_fully_connected", "tl_fc_params", params, (x.index,), consts, y.index)


def _pool(low: _Lowering, op: StoredOperator) -> Call:
    x = low.activation(op, op.inputs[0], "input")
    y = low.activation(op, op.outputs[0], "output")
    _, in_h, in_w, c = _nhwc(low, op, x)
    _, out_h, out_w, _ = _nhwc(low, op, y)
    o = op.options
    k_h, k_w = int(o.FilterHeight()), int(o.FilterWidth())
    s_h, s_w = int(o.StrideH()), int(o.StrideW())
    pad = int(o.Padding())
    lo, hi = quant.activation_range(low.activation_of(op), y.scales[0], y.zero_points[0])
    params = {
        "in_h": in_h, "in_w": in_w, "channels": c, "out_h": out_h, "out_w": out_w,
        "k_h": k_h, "k_w": k_w, "stride_h": s_h, "stride_w": s_w,
        "pad_h": _padding(pad, in_h, k_h, s_h, 1, out_h),
        "pad_w": _padding(pad, in_w, k_w, s_w, 1, out_w),
        "act_min": lo, "act_max": hi,
    }  # fmt: skip
    function = "tl_average_pool" if op.kind == "AVERAGE_POOL_2D" else "tl_max_pool"
    return Call(op.kind, function, "tl_pool_params", params, (x.index,), (), y.index)


def _add(low: _Lowering, op: StoredOperator) -> Call:
    a = low.activation(op, op.inputs[0], "input")
    b = low.activation(op, op.inputs[1], "input")
    y = low.activation(op, op.outputs[0], "output")
    if a.shape != b.shape or a.shape != y.shape:
        raise TinylargeError(
            f"{low.source}: operator ADD broadcasts {list(a.shape)} and {list(b.shape)}; "
            "the c-source export adds equal shapes only"
        )
    lo, hi = quant.activation_range(low.activation_of(op), y.scales[0], y.zero_points[0])
    params = {
        "size": numel(y.shape),
        "input1_offset": -a.zero_points[0],
        "input2_offset": -b.zero_points[0],
        "output_offset": y.zero_points[0],
        **quant.add_multipliers(a.scales[0], b.scales[0], y.scales[0]),
        "act_min": lo,
        "act_max": hi,
    }
    return Call(op.kind, "tl_add", "tl_add_params", params, (a.index, b.index), (), y.index)


def _softmax(low: _Lowering, op: StoredOperator) -> Call:
    x = low.activation(op, op.inputs[0], "input")
    y = low.activation(op, op.outputs[0], "output")
    if y.zero_points[0] != -128 or np.float32(y.scales[0]) != np.float32(1 / 256):
        raise TinylargeError(
            f"{low.source}: operator SOFTMAX with output scale {y.scales[0]} and zero point "
            f"{y.zero_points[0]}; TFLite's int8 softmax needs 1/256 and -128"
        )
    depth = x.shape[-1]
    params = {
        "rows": numel(x.shape) // depth,
        "depth": depth,
        **quant.softmax_params(float(np.float32(op.options.Beta())), x.scales[0]),
    }
    return Call(op.kind, "tl_softmax", "tl_softmax_params", params, (x.index,), (), y.index)


#: The operators the c-source export runs, by TFLite builtin name (aliases have no rule).
SUPPORTED: dict[str, Callable[[_Lowering, StoredOperator], Call] | None] = {
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _conv,
    "FULLY_CONNECTED": _fully_connected,
    "AVERAGE_POOL_2D": _pool,
    "MAX_POOL_2D": _pool,
    "ADD": _add,
    "SOFTMAX": _softmax,
    **dict.fromkeys(_ALIASES),
}


def lower(path: Path) -> CModel:
    """Lower the ``.tflite`` file at ``path`` (see the module docstring)."""
    graph = read_tflite(path)
    return lower_graph(graph, source=path.name)


def lower_graph(graph: StoredGraph, *, source: str) -> CModel:
    """Lower a read graph; ``source`` names it in errors."""
    low = _Lowering(graph, source)
    for op in graph.operators:
        if op.kind not in SUPPORTED:
            raise TinylargeError(
                f"{source}: operator {op.kind} is not supported by the c-source export "
                f"(supported: {', '.join(sorted(SUPPORTED))})"
            )
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise TinylargeError(
            f"{source}: {len(graph.inputs)} inputs and {len(graph.outputs)} outputs; "
            "the c-source export takes one input and one output"
        )
    calls: list[Call] = []
    steps: list[Step] = []
    for op in graph.operators:
        rule = SUPPORTED[op.kind]
        if rule is None:  # alias: same bytes, new shape
            low.activation(op, op.inputs[0], "input")
            low.activation(op, op.outputs[0], "output")
            steps.append(Step(inputs=(str(op.inputs[0]),), outputs=(str(op.outputs[0]),),
                              alias=True))  # fmt: skip
            continue
        call = rule(low, op)
        calls.append(call)
        steps.append(Step(inputs=tuple(str(t) for t in call.inputs), outputs=(str(call.output),)))
    inp, out = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    for t in (inp, out):
        if t.type_code != INT8 or not t.scales:
            raise TinylargeError(
                f"{source}: the model's {'input' if t is inp else 'output'} is {t.type_name}; "
                "the c-source export needs a fully-int8 model (int8 input and output)"
            )
    sizes = {
        str(t.index): numel(t.shape)
        for t in graph.tensors
        if t.data is None and t.type_code == INT8 and t.shape
    }
    plan = schedule_arena_plan(
        steps=steps,
        sizes_bytes=sizes,
        graph_inputs=[str(inp.index)],
        graph_outputs=[str(out.index)],
        alignment_bytes=ARENA_ALIGNMENT_BYTES,
    )
    return CModel(
        calls=tuple(calls),
        offsets={int(k): v for k, v in plan.offsets.items()},
        arena_bytes=plan.arena_bytes,
        input=inp,
        output=out,
        operators=tuple(op.kind for op in graph.operators),
    )
