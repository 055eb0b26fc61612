"""Profile a ``.tflite`` flatbuffer offline, with the ``tflite`` schema package.

Reads the main subgraph (subgraph 0) in its stored operator order, the order
TensorFlow Lite Micro executes it in. Per operator:

- MACs from tensor shapes: ``CONV_2D`` is output elements x (KH x KW x C_in)
  from the filter ``[C_out, KH, KW, C_in]``; ``DEPTHWISE_CONV_2D`` output
  elements x KH x KW; ``FULLY_CONNECTED`` output elements x input features;
  ``TRANSPOSE_CONV`` input elements x KH x KW x C_out; ``BATCH_MATMUL``
  output elements x the contracted dimension. Pooling, elementwise and
  data-movement operators count 0 MACs.
- parameters: elements of the constant float/int8 inputs (weights, biases) of
  each operator; int32 shape operands of ``RESHAPE`` and the like are not
  parameters. Constants shared by several operators count once.
- activation bytes from the tensor type (int8 1 B, fp32 4 B, ...).

Memory plan: a tensor lives from its producer to its last consumer, graph
inputs from step 0 and graph outputs to the end; ``RESHAPE``, ``SQUEEZE`` and
``EXPAND_DIMS`` alias their input (TFLM runs them in place when the input is
not needed again, and copying bytes to an equal-size buffer never lowers the
peak). ``flash_bytes`` is the file size; ``weight_bytes`` the bytes of all
constant buffers.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import tflite
from tflite.utils import BUILTIN_OPCODE2NAME

from tinylarge.errors import TinylargeError
from tinylarge.models.graph import DTYPE_BYTES, OpNode, assemble_profile, numel
from tinylarge.models.profile import ModelProfile, OpClass

#: Bytes per element of each TFLite TensorType code (schema.fbs order).
TENSOR_TYPE_BYTES: dict[int, float] = {
    0: 4,  # FLOAT32
    1: 2,  # FLOAT16
    2: 4,  # INT32
    3: 1,  # UINT8
    4: 8,  # INT64
    5: 1,  # STRING (variable, counted per byte)
    6: 1,  # BOOL
    7: 2,  # INT16
    8: 8,  # COMPLEX64
    9: 1,  # INT8
    10: 8,  # FLOAT64
    11: 16,  # COMPLEX128
    12: 8,  # UINT64
    15: 4,  # UINT32
    16: 2,  # UINT16
    17: 0.5,  # INT4
    18: 2,  # BFLOAT16
}
_QUANTIZED_TYPES = {3, 7, 9, 17}  # UINT8, INT16, INT8, INT4
_PARAM_TYPES = {0, 1, 3, 7, 9, 10, 17, 18, 2}  # float and integer weights/biases
_SHAPE_OPERAND_OPS = {
    "RESHAPE",
    "SQUEEZE",
    "EXPAND_DIMS",
    "PAD",
    "PADV2",
    "MIRROR_PAD",
    "TRANSPOSE",
    "STRIDED_SLICE",
    "SLICE",
    "MEAN",
    "SUM",
    "REDUCE_MAX",
    "REDUCE_MIN",
    "REDUCE_PROD",
    "TILE",
    "GATHER",
    "RESIZE_BILINEAR",
    "RESIZE_NEAREST_NEIGHBOR",
    "TRANSPOSE_CONV",
    "BROADCAST_TO",
    "SPLIT",
    "SPLIT_V",
    "ARG_MAX",
    "ARG_MIN",
}
_ALIAS_OPS = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS"}

_OP_CLASS: dict[str, OpClass] = {
    "CONV_2D": "conv",
    "CONV_3D": "conv",
    "TRANSPOSE_CONV": "conv",
    "DEPTHWISE_CONV_2D": "depthwise_conv",
    "FULLY_CONNECTED": "linear",
    "BATCH_MATMUL": "linear",
    "AVERAGE_POOL_2D": "pool",
    "MAX_POOL_2D": "pool",
    "L2_POOL_2D": "pool",
    "MEAN": "pool",
    "REDUCE_MAX": "pool",
}
_ELEMENTWISE = {
    "ADD",
    "SUB",
    "MUL",
    "DIV",
    "RELU",
    "RELU6",
    "RELU_N1_TO_1",
    "RELU_0_TO_1",
    "LEAKY_RELU",
    "PRELU",
    "LOGISTIC",
    "TANH",
    "HARD_SWISH",
    "GELU",
    "ELU",
    "EXP",
    "SOFTMAX",
    "LOG_SOFTMAX",
    "QUANTIZE",
    "DEQUANTIZE",
    "MAXIMUM",
    "MINIMUM",
    "SQUARED_DIFFERENCE",
    "ABS",
    "NEG",
    "SQRT",
    "RSQRT",
    "SQUARE",
    "ADD_N",
}

Shapes = Sequence[tuple[int, ...] | None]
MacRule = Callable[[Shapes, tuple[int, ...]], int]


def _conv_macs(inputs: Shapes, out: tuple[int, ...]) -> int:
    filt = inputs[1]
    return 0 if not filt else numel(out) * (numel(filt) // filt[0])


def _depthwise_macs(inputs: Shapes, out: tuple[int, ...]) -> int:
    filt = inputs[1]
    return 0 if not filt else numel(out) * (numel(filt) // filt[-1])


def _fully_connected_macs(inputs: Shapes, out: tuple[int, ...]) -> int:
    filt = inputs[1]
    return 0 if not filt else numel(out) * filt[-1]


def _transpose_conv_macs(inputs: Shapes, out: tuple[int, ...]) -> int:
    filt, data = inputs[1], inputs[2]
    return 0 if not filt or not data else numel(data) * (numel(filt) // filt[-1])


def _conv3d_macs(inputs: Shapes, out: tuple[int, ...]) -> int:
    filt = inputs[1]  # [KD, KH, KW, C_in, C_out]
    return 0 if not filt else numel(out) * (numel(filt) // filt[-1])


def _batch_matmul_macs(inputs: Shapes, out: tuple[int, ...]) -> int:
    lhs = inputs[0]
    if not lhs or len(out) < 2:
        return 0
    rows = out[-2]
    contracted = lhs[-1] if lhs[-2] == rows else lhs[-2]
    return numel(out) * contracted


#: MAC rules by TFLite builtin operator name; other operators count 0 MACs.
MAC_RULES: dict[str, MacRule] = {
    "CONV_2D": _conv_macs,
    "DEPTHWISE_CONV_2D": _depthwise_macs,
    "FULLY_CONNECTED": _fully_connected_macs,
    "TRANSPOSE_CONV": _transpose_conv_macs,
    "CONV_3D": _conv3d_macs,
    "BATCH_MATMUL": _batch_matmul_macs,
}


def op_class(op_name: str) -> OpClass:
    """Operator class of a TFLite builtin operator name."""
    if op_name in _OP_CLASS:
        return _OP_CLASS[op_name]
    return "elementwise" if op_name in _ELEMENTWISE else "other"


def _strip_batch(shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape[1:] if len(shape) >= 2 and shape[0] == 1 else shape


def _op_name(model: Any, opcode_index: int) -> str:
    code = model.OperatorCodes(opcode_index)
    builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
    if builtin == 32:  # CUSTOM
        custom = code.CustomCode()
        return f"CUSTOM:{custom.decode() if custom else '?'}"
    return str(BUILTIN_OPCODE2NAME.get(builtin, f"BUILTIN_{builtin}"))


def _open_graph(data: bytes, name: object) -> tuple[Any, Any]:
    """The flatbuffer model and its subgraph 0, or a one-line error naming ``name``."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise TinylargeError(f"{name}: not a .tflite flatbuffer (no TFL3 identifier)")
    try:
        model = tflite.Model.GetRootAs(data, 0)
        if model.SubgraphsLength() < 1:
            raise TinylargeError(f"{name}: the .tflite file has no subgraph")
        graph = model.Subgraphs(0)
        graph.TensorsLength()
    except (IndexError, ValueError, TypeError, AttributeError, struct.error) as exc:
        raise TinylargeError(f"{name}: not a readable .tflite flatbuffer ({exc})") from None
    return model, graph


def profile_tflite(path: Path) -> ModelProfile:
    """Profile a ``.tflite`` file (see the module docstring for definitions)."""
    data = path.read_bytes()
    model, graph = _open_graph(data, path)
    num_tensors = graph.TensorsLength()

    shapes: list[tuple[int, ...]] = []
    types: list[int] = []
    constant: list[bool] = []
    for t in range(num_tensors):
        tensor = graph.Tensors(t)
        shapes.append(() if tensor.ShapeIsNone() else tuple(int(d) for d in tensor.ShapeAsNumpy()))
        types.append(int(tensor.Type()))
        buf = model.Buffers(tensor.Buffer())
        constant.append(buf is not None and (buf.DataLength() > 0 or int(buf.Size()) > 0))

    def tensor_bytes(t: int) -> int:
        return int(numel(shapes[t]) * TENSOR_TYPE_BYTES.get(types[t], 4) + 0.5)

    graph_inputs = [int(t) for t in graph.InputsAsNumpy()]
    graph_outputs = [int(t) for t in graph.OutputsAsNumpy()]
    nodes: list[OpNode] = []
    counted_constants: set[int] = set()
    compute_output_types: list[int] = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        kind = _op_name(model, op.OpcodeIndex())
        ins = [] if op.InputsIsNone() else [int(t) for t in op.InputsAsNumpy()]
        outs = [] if op.OutputsIsNone() else [int(t) for t in op.OutputsAsNumpy()]
        in_shapes: list[tuple[int, ...] | None] = [shapes[t] if t >= 0 else None for t in ins]
        out_shape = shapes[outs[0]] if outs else ()
        rule = MAC_RULES.get(kind)
        macs = rule(in_shapes, out_shape) if rule else 0
        own_params = 0
        for position, t in enumerate(ins):
            if t < 0 or not constant[t] or t in counted_constants:
                continue
            if kind in _SHAPE_OPERAND_OPS and position > 0 and types[t] in (2, 4):
                continue  # int32/int64 shape, axis or padding operand
            if types[t] in _PARAM_TYPES:
                own_params += numel(shapes[t])
                counted_constants.add(t)
        cls = op_class(kind)
        if cls in ("conv", "depthwise_conv", "linear") and outs:
            compute_output_types.append(types[outs[0]])
        nodes.append(
            OpNode(
                name=graph.Tensors(outs[0]).Name().decode() if outs else f"op{i}",
                op=cls,
                kind=kind,
                macs=macs,
                params=own_params,
                inputs=tuple(str(t) for t in ins if t >= 0),
                outputs=tuple(str(t) for t in outs),
                output_shape=_strip_batch(out_shape),
                output_bytes=tensor_bytes(outs[0]) if outs else 0,
                alias=kind in _ALIAS_OPS,
            )
        )

    activations = [t for t in range(num_tensors) if not constant[t]]
    quantized = bool(compute_output_types) and all(
        t in _QUANTIZED_TYPES for t in compute_output_types
    )
    dtype: Literal["int8", "fp32"] = "int8" if quantized else "fp32"
    constant_buffers = {graph.Tensors(t).Buffer() for t in range(num_tensors) if constant[t]}
    weight_bytes = sum(model.Buffers(b).DataLength() for b in constant_buffers)
    first_input = graph_inputs[0] if graph_inputs else 0
    return assemble_profile(
        name=path.name,
        input_shape=_strip_batch(shapes[first_input]) if graph_inputs else (),
        dtype=dtype,
        nodes=nodes,
        activation_bytes={str(t): tensor_bytes(t) for t in activations},
        activation_elements={str(t): numel(shapes[t]) for t in activations},
        graph_inputs=[str(t) for t in graph_inputs],
        graph_outputs=[str(t) for t in graph_outputs],
        params=sum(n.params for n in nodes),
        weight_bytes=weight_bytes,
        flash_bytes=len(data),
        extra={
            "format": "tflite",
            f"flash_bytes_{dtype}": len(data),
            "activation_bytes_per_element": DTYPE_BYTES[dtype],
            "subgraphs": int(model.SubgraphsLength()),
            "tensor_types": sorted({_type_name(types[t]) for t in activations}),
        },
    )


def _type_name(code: int) -> str:
    for name, value in vars(tflite.TensorType).items():
        if value == code and not name.startswith("_"):
            return str(name).lower()
    return f"type{code}"


@dataclass(frozen=True)
class StoredTensor:
    """One tensor of a ``.tflite`` subgraph as stored.

    Attributes:
        index: position in the subgraph's tensor table.
        name: tensor name.
        shape: dimensions (batch first, channels last).
        type_code: TFLite ``TensorType`` code (``type_name`` its name: ``int8``, ``float32``).
        data: bytes of its constant buffer (little endian), ``None`` for activations.
        scales / zero_points: quantization parameters (float32 values as stored),
            one per channel along ``quantized_dimension`` for per-channel tensors.
    """

    index: int
    name: str
    shape: tuple[int, ...]
    type_code: int
    data: bytes | None
    scales: tuple[float, ...]
    zero_points: tuple[int, ...]
    quantized_dimension: int

    @property
    def type_name(self) -> str:
        return _type_name(self.type_code)


@dataclass(frozen=True)
class StoredOperator:
    """One operator: its builtin name, tensor indices (-1: optional input absent), options.

    ``options`` is the ``tflite`` schema object of its builtin options
    (``Conv2DOptions``, ``Pool2DOptions``, ...), or ``None``.
    """

    kind: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: Any


@dataclass(frozen=True)
class StoredGraph:
    """The main subgraph (subgraph 0) of a ``.tflite`` file in execution order."""

    tensors: tuple[StoredTensor, ...]
    operators: tuple[StoredOperator, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


_OPTIONS_NAMES = {
    int(v): k for k, v in vars(tflite.BuiltinOptions).items() if not k.startswith("_")
}


def _builtin_options(op: Any) -> Any:
    table = op.BuiltinOptions()
    name = _OPTIONS_NAMES.get(int(op.BuiltinOptionsType()))
    cls = getattr(tflite, name, None) if name else None
    if table is None or cls is None:
        return None
    options = cls()
    options.Init(table.Bytes, table.Pos)
    return options


def read_tflite(path: Path) -> StoredGraph:
    """The tensors (with constant data and quantization) and operators of a ``.tflite`` file."""
    data = path.read_bytes()
    model, graph = _open_graph(data, path)
    try:
        tensors = []
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            buf = model.Buffers(tensor.Buffer())
            raw: bytes | None = None
            if buf is not None and buf.DataLength() > 0:
                raw = buf.DataAsNumpy().tobytes()
            elif buf is not None and int(buf.Size()) > 0:  # stored after the flatbuffer
                raw = data[int(buf.Offset()) : int(buf.Offset()) + int(buf.Size())]
            q = tensor.Quantization()
            scales = (
                () if q is None or q.ScaleIsNone() else tuple(float(s) for s in q.ScaleAsNumpy())
            )
            zps = (
                ()
                if q is None or q.ZeroPointIsNone()
                else tuple(int(z) for z in q.ZeroPointAsNumpy())
            )
            tensors.append(
                StoredTensor(
                    index=t,
                    name=(tensor.Name() or b"").decode(errors="replace"),
                    shape=()
                    if tensor.ShapeIsNone()
                    else tuple(int(d) for d in tensor.ShapeAsNumpy()),
                    type_code=int(tensor.Type()),
                    data=raw,
                    scales=scales,
                    zero_points=zps,
                    quantized_dimension=0 if q is None else int(q.QuantizedDimension()),
                )
            )
        operators = []
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            operators.append(
                StoredOperator(
                    kind=_op_name(model, op.OpcodeIndex()),
                    inputs=() if op.InputsIsNone() else tuple(int(t) for t in op.InputsAsNumpy()),
                    outputs=()
                    if op.OutputsIsNone()
                    else tuple(int(t) for t in op.OutputsAsNumpy()),
                    options=_builtin_options(op),
                )
            )
        return StoredGraph(
            tensors=tuple(tensors),
            operators=tuple(operators),
            inputs=tuple(int(t) for t in graph.InputsAsNumpy()),
            outputs=tuple(int(t) for t in graph.OutputsAsNumpy()),
        )
    except (IndexError, ValueError, TypeError, AttributeError, struct.error) as exc:
        raise TinylargeError(f"{path}: not a readable .tflite flatbuffer ({exc})") from None
