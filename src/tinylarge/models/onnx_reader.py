"""Profile an ``.onnx`` file offline with ``onnx`` and its shape inference.

Shapes come from ``onnx.shape_inference.infer_shapes`` (a symbolic batch
dimension counts as 1). Nodes whose inputs are all constants (initializers,
``Constant``, the ``DequantizeLinear`` of a QDQ weight, ``Identity`` of a
weight) are constant-folded: they are not layers and their outputs are not
activations. Per layer:

- ``Conv``/``ConvInteger``/``QLinearConv``: output elements x weight elements
  / C_out (C_in / group x kernel); depthwise when group == C_in > 1.
- ``ConvTranspose``: input elements x weight elements / C_in.
- ``Gemm``: output elements x K; ``MatMul``/``MatMulInteger``/
  ``QLinearMatMul``: output elements x the last dimension of A.
- pooling, elementwise and data-movement operators: 0 MACs.
- parameters: elements of the float or integer constants used as weights and
  biases (found through a ``DequantizeLinear`` in QDQ models); scales and
  zero points are not parameters.

The model is ``int8`` when it has ``QLinear*``, ``*Integer`` or
``QuantizeLinear`` nodes; in a QDQ model activations then count 1 B per
element and ``QuantizeLinear``/``DequantizeLinear`` on activations are views
(a runtime fuses them into their neighbours). ``Flatten``, ``Reshape``,
``Squeeze``, ``Unsqueeze`` and ``Identity`` alias their input; activations and
``BatchNormalization`` run in place. ``flash_bytes`` is the file size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import onnx
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from onnx import helper, numpy_helper, shape_inference

from tinylarge.errors import TinylargeError
from tinylarge.models.graph import OpNode, assemble_profile, numel
from tinylarge.models.profile import ModelProfile, OpClass

_WEIGHT_INPUT: dict[str, tuple[int, ...]] = {  # op -> positions of weight/bias inputs
    "Conv": (1, 2),
    "ConvTranspose": (1, 2),
    "ConvInteger": (1,),
    "QLinearConv": (3, 8),
    "Gemm": (1, 2),
    "MatMul": (1,),
    "MatMulInteger": (1,),
    "QLinearMatMul": (3,),
    "BatchNormalization": (1, 2),
    "PRelu": (1,),
}
_POOL = {
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "ReduceMean",
    "ReduceMax",
    "QLinearAveragePool",
    "QLinearGlobalAveragePool",
}
_VIEW = {"Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Dropout"}
_INPLACE = {
    "Relu",
    "LeakyRelu",
    "PRelu",
    "Clip",
    "Sigmoid",
    "Tanh",
    "HardSwish",
    "HardSigmoid",
    "Gelu",
    "Elu",
    "Softmax",
    "LogSoftmax",
    "BatchNormalization",
}
_ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "QLinearAdd", "QLinearMul", "Sqrt", "Exp", "Pow"}
_QUANT_MARKERS = {"QuantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}
_QDQ = {"QuantizeLinear", "DequantizeLinear"}


def _op_class(node: Any, in_shapes: Sequence[tuple[int, ...] | None]) -> OpClass:
    op = node.op_type
    if op in ("Conv", "ConvInteger", "QLinearConv", "ConvTranspose"):
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        data = in_shapes[0]
        channels = data[1] if data and len(data) > 1 else 0
        return "depthwise_conv" if group > 1 and group == channels else "conv"
    if op in ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul"):
        return "linear"
    if op in _POOL:
        return "pool"
    if op in _INPLACE or op in _ELEMENTWISE or op in _QDQ:
        return "elementwise"
    return "other"


def _macs(node: Any, shapes: Sequence[tuple[int, ...] | None], out: tuple[int, ...]) -> int:
    op = node.op_type
    weight_pos = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3, "ConvTranspose": 1}
    if op in weight_pos:
        weight = shapes[weight_pos[op]] if len(shapes) > weight_pos[op] else None
        if not weight:
            return 0
        if op == "ConvTranspose":
            data = shapes[0]
            return numel(data) * (numel(weight) // weight[0]) if data else 0
        return numel(out) * (numel(weight) // weight[0])
    if op == "Gemm":
        a = shapes[0]
        trans_a = next((x.i for x in node.attribute if x.name == "transA"), 0)
        return numel(out) * (a[0] if trans_a else a[-1]) if a else 0
    if op in ("MatMul", "MatMulInteger", "QLinearMatMul"):
        a = shapes[0]
        return numel(out) * a[-1] if a else 0
    return 0


def _dims(value_info: Any) -> tuple[int, ...] | None:
    tensor_type = value_info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else 1 for d in tensor_type.shape.dim)


def _strip_batch(shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape[1:] if len(shape) >= 2 else shape


def profile_onnx(path: Path) -> ModelProfile:
    """Profile an ``.onnx`` file (see the module docstring for definitions)."""
    try:
        model = shape_inference.infer_shapes(onnx.load(str(path)))
    except (DecodeError, shape_inference.InferenceError, OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TinylargeError(f"{path}: not a readable ONNX model ({reason})") from None
    graph = model.graph
    shapes: dict[str, tuple[int, ...] | None] = {}
    elem_types: dict[str, int] = {}
    for vi in (*graph.input, *graph.value_info, *graph.output):
        shapes[vi.name] = _dims(vi)
        elem_types[vi.name] = vi.type.tensor_type.elem_type
    constants: dict[str, tuple[int, ...]] = {}
    for init in graph.initializer:
        constants[init.name] = tuple(init.dims)
        elem_types[init.name] = init.data_type
    quantized = any(n.op_type in _QUANT_MARKERS for n in graph.node)
    dtype: Literal["int8", "fp32"] = "int8" if quantized else "fp32"
    qdq = quantized and any(n.op_type == "QuantizeLinear" for n in graph.node)
    origin: dict[str, str] = {}  # folded constant -> the initializer it came from

    def itemsize(name: str) -> int:
        if qdq:
            return 1
        code = elem_types.get(name, onnx.TensorProto.FLOAT)
        return int(helper.tensor_dtype_to_np_dtype(code).itemsize)

    graph_inputs = [i.name for i in graph.input if i.name not in constants]
    nodes: list[OpNode] = []
    counted: set[str] = set()
    activation_bytes: dict[str, int] = {}
    activation_elements: dict[str, int] = {}
    for name in graph_inputs:
        dims = shapes.get(name) or ()
        activation_elements[name] = numel(dims)
        activation_bytes[name] = numel(dims) * itemsize(name)
    for index, node in enumerate(graph.node):
        inputs = [i for i in node.input if i]
        if node.op_type == "Constant" or all(i in constants for i in inputs):
            for out in node.output:
                value = next((a.t for a in node.attribute if a.name == "value"), None)
                constants[out] = tuple(value.dims) if value is not None else shapes.get(out) or ()
                origin[out] = origin.get(inputs[0], inputs[0]) if inputs else out
                if value is not None:
                    elem_types[out] = value.data_type
            continue
        in_shapes = [constants.get(i, shapes.get(i)) for i in node.input]
        out_name = node.output[0]
        out_shape = shapes.get(out_name) or ()
        params = 0
        for position in _WEIGHT_INPUT.get(node.op_type, ()):
            if position < len(node.input) and node.input[position] in constants:
                source = origin.get(node.input[position], node.input[position])
                if source not in counted:
                    counted.add(source)
                    params += numel(constants[node.input[position]])
        for out in node.output:
            dims = shapes.get(out) or ()
            activation_elements[out] = numel(dims)
            activation_bytes[out] = numel(dims) * itemsize(out)
        nodes.append(
            OpNode(
                name=node.name or f"{node.op_type}_{index}",
                op=_op_class(node, in_shapes),
                kind=node.op_type,
                macs=_macs(node, in_shapes, out_shape),
                params=params,
                inputs=tuple(i for i in inputs if i not in constants),
                outputs=tuple(node.output),
                output_shape=_strip_batch(out_shape),
                output_bytes=activation_bytes[out_name],
                alias=node.op_type in _VIEW or (qdq and node.op_type in _QDQ),
                inplace=node.op_type in _INPLACE,
            )
        )
    weight_bytes = sum(len(numpy_helper.to_array(init).tobytes()) for init in graph.initializer)
    size = path.stat().st_size
    first = graph_inputs[0] if graph_inputs else ""
    return assemble_profile(
        name=path.name,
        input_shape=_strip_batch(shapes.get(first) or ()),
        dtype=dtype,
        nodes=nodes,
        activation_bytes=activation_bytes,
        activation_elements=activation_elements,
        graph_inputs=graph_inputs,
        graph_outputs=[o.name for o in graph.output],
        params=sum(n.params for n in nodes),
        weight_bytes=weight_bytes,
        flash_bytes=size,
        extra={"format": "onnx", f"flash_bytes_{dtype}": size, "opset": _opset(model)},
    )


def _opset(model: Any) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
