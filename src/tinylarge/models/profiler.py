"""Profile a PyTorch module: per-layer MACs, parameters, activations, flash and SRAM.

>>> from tinylarge.models.zoo import build_model
>>> from tinylarge.models.profiler import profile_model
>>> model = build_model("cnn-tiny", input_shape=(1, 28, 28), num_classes=10)
>>> profile_model(model, input_shape=(1, 28, 28), dtype="int8").macs
1031744

The module is traced with ``torch.fx`` (symbolic tracing, then shape
propagation on a zero input at batch 1), so functional operators between
modules (the ``+`` of a skip connection, ``flatten``, ``relu``) are seen and
residual graphs get a correct memory plan. A module that fx cannot trace
(data-dependent control flow) falls back to forward hooks on its leaf
modules; tensors produced by functional code between them appear as
``functional`` rows with 0 MACs.

Definitions (batch 1; the same as fvcore's and torchinfo's weight terms):

- Conv (any dim, grouped and depthwise): output elements x C_in / groups x
  kernel elements; bias adds are not counted. Depthwise (groups == C_in > 1)
  is its own operator class.
- ConvTranspose: input elements x C_out / groups x kernel elements.
- Linear / matmul: output elements x input features.
- BatchNorm, activations, dropout, ``+``/``*``: elementwise, 0 MACs (a
  deployed model folds BN into the conv before it and fuses activations;
  they run in place in the memory plan when their input is dead).
- pooling, flatten/reshape (views sharing their input's buffer): 0 MACs.

Bytes: activations take 4 B (fp32) or 1 B (int8) per element. Deployed
weights fold BN into the preceding conv/linear, which then always has a bias:
fp32 4 B per weight and bias; int8 1 B per weight, int32 biases and a
per-output-channel scale and zero point (12 B, as TFLite stores them). Flash
adds a format overhead fitted to the MLPerf Tiny float TFLite files:
1 KiB plus 192 B per tensor (plus 12 B of quantization parameters per
activation tensor at int8).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F  # noqa: N812
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from tinylarge.errors import TinylargeError
from tinylarge.models.graph import DTYPE_BYTES, OpNode, assemble_profile, numel
from tinylarge.models.profile import ModelProfile, OpClass

#: Flash format overhead: a fixed part and a part per tensor (bytes).
FLASH_BASE_BYTES = 1024
FLASH_BYTES_PER_TENSOR = 192
#: int8 quantization parameters per channel or tensor: fp32 scale + int64 zero point.
QUANT_PARAM_BYTES = 12

Shape = tuple[int, ...]


@dataclass(frozen=True)
class OpCost:
    """What a rule says about one call: class, MACs and memory behaviour."""

    op: OpClass
    macs: int = 0
    alias: bool = False
    inplace: bool = False


ModuleRule = Callable[[nn.Module, Sequence[Shape], Shape], OpCost]
FunctionRule = Callable[[Sequence[Any], Sequence[Shape], Shape], OpCost]


def _conv(module: nn.Module, ins: Sequence[Shape], out: Shape) -> OpCost:
    assert isinstance(module, nn.modules.conv._ConvNd)
    kernel = math.prod(module.kernel_size)
    if module.transposed:
        return OpCost("conv", numel(ins[0]) * module.out_channels // module.groups * kernel)
    per_output = module.in_channels // module.groups * kernel
    depthwise = module.groups > 1 and module.groups == module.in_channels
    return OpCost("depthwise_conv" if depthwise else "conv", numel(out) * per_output)


def _linear(module: nn.Module, ins: Sequence[Shape], out: Shape) -> OpCost:
    assert isinstance(module, nn.Linear)
    return OpCost("linear", numel(out) * module.in_features)


def _fixed(cost: OpCost) -> Callable[..., OpCost]:
    return lambda *_: cost


_POOL = OpCost("pool")
_VIEW = OpCost("other", alias=True)
_INPLACE = OpCost("elementwise", inplace=True)
_ELEMENTWISE = OpCost("elementwise")
_OTHER = OpCost("other")

#: Rules by module type (looked up along the MRO, so subclasses inherit them).
MODULE_RULES: dict[type[nn.Module], ModuleRule] = {
    nn.modules.conv._ConvNd: _conv,
    nn.Linear: _linear,
    nn.modules.batchnorm._BatchNorm: _fixed(_INPLACE),
    nn.modules.pooling._MaxPoolNd: _fixed(_POOL),
    nn.modules.pooling._AvgPoolNd: _fixed(_POOL),
    nn.modules.pooling._AdaptiveAvgPoolNd: _fixed(_POOL),
    nn.modules.pooling._AdaptiveMaxPoolNd: _fixed(_POOL),
    nn.Flatten: _fixed(_VIEW),
    nn.Unflatten: _fixed(_VIEW),
    nn.Identity: _fixed(_VIEW),
    nn.modules.dropout._DropoutNd: _fixed(_VIEW),
    nn.LayerNorm: _fixed(_ELEMENTWISE),
    nn.GroupNorm: _fixed(_ELEMENTWISE),
}
for _act in (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Softmax,
    nn.LogSoftmax,
):
    MODULE_RULES[_act] = _fixed(_INPLACE)


def _matmul(args: Sequence[Any], ins: Sequence[Shape], out: Shape) -> OpCost:
    return OpCost("linear", numel(out) * ins[0][-1]) if ins and ins[0] else _OTHER


def _functional_weight(args: Sequence[Any]) -> Shape:
    weight = args[1] if len(args) > 1 else None
    meta = weight.meta.get("tensor_meta") if isinstance(weight, fx.Node) else None
    return tuple(meta.shape) if meta is not None else ()


def _f_linear(args: Sequence[Any], ins: Sequence[Shape], out: Shape) -> OpCost:
    weight = _functional_weight(args)
    return OpCost("linear", numel(out) * weight[-1]) if weight else _OTHER


def _f_conv(args: Sequence[Any], ins: Sequence[Shape], out: Shape) -> OpCost:
    weight = _functional_weight(args)
    return OpCost("conv", numel(out) * numel(weight[1:])) if weight else _OTHER


#: Rules for call_function targets and call_method names.
FUNCTION_RULES: dict[Any, FunctionRule] = {
    torch.matmul: _matmul,
    operator.matmul: _matmul,
    torch.bmm: _matmul,
    "matmul": _matmul,
    F.linear: _f_linear,
    F.conv1d: _f_conv,
    F.conv2d: _f_conv,
}


def _add_rules(targets: Sequence[object], cost: OpCost) -> None:
    for target in targets:
        FUNCTION_RULES[target] = _fixed(cost)


_add_rules(
    [operator.add, operator.sub, operator.mul, torch.add, torch.mul, torch.sub], _ELEMENTWISE
)
_add_rules(["add", "sub", "mul", "add_", "mul_"], _ELEMENTWISE)
_add_rules(
    [torch.relu, F.relu, F.relu6, F.gelu, F.silu, torch.sigmoid, torch.tanh, F.softmax], _INPLACE
)
_add_rules(["relu", "relu_", "sigmoid", "tanh", "softmax"], _INPLACE)
_add_rules([torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze], _VIEW)
_add_rules(["flatten", "view", "reshape", "squeeze", "unsqueeze", "contiguous"], _VIEW)
_add_rules(
    [torch.mean, F.adaptive_avg_pool2d, F.avg_pool2d, F.max_pool2d, F.adaptive_avg_pool1d, "mean"],
    _POOL,
)


def module_rule(module: nn.Module) -> ModuleRule | None:
    """The rule for a module's type, inherited along its MRO; None if unknown."""
    for cls in type(module).__mro__:
        if cls in MODULE_RULES:
            return MODULE_RULES[cls]
    return None


class _Tally:
    """Parameters and deployed weight bytes, each parameter counted once."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.params = 0
        self.bytes = {"fp32": 0, "int8": 0}
        self.tensors = 0

    def add(self, module: nn.Module, cost: OpCost, *, folded: bool) -> int:
        fresh = [p for p in module.parameters() if id(p) not in self.seen]
        self.seen.update(id(p) for p in fresh)
        count = sum(p.numel() for p in fresh)
        self.params += count
        if not fresh:
            return count
        weight = getattr(module, "weight", None)
        if cost.op in ("conv", "depthwise_conv", "linear") and isinstance(weight, torch.Tensor):
            channels = int(getattr(module, "out_channels", getattr(module, "out_features", 1)))
            self.bytes["fp32"] += (weight.numel() + channels) * 4
            self.bytes["int8"] += weight.numel() + channels * (4 + QUANT_PARAM_BYTES)
            self.tensors += 2
        elif not folded:
            self.bytes["fp32"] += count * 4
            self.bytes["int8"] += count * (4 if cost.op == "elementwise" else 1)
            self.tensors += len(fresh)
        return count


def _shape_of(node: Any) -> Shape | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    if meta is None or not hasattr(meta, "shape"):
        return None
    return tuple(int(d) for d in meta.shape)


def _trace_fx(module: nn.Module, example: torch.Tensor) -> fx.GraphModule:
    graph_module = fx.symbolic_trace(module)
    ShapeProp(graph_module).propagate(example)
    return graph_module


def profile_model(
    module: nn.Module,
    *,
    input_shape: Sequence[int],
    name: str = "model",
    dtype: Literal["fp32", "int8"] = "fp32",
    train_batch_size: int = 1,
    optimizer: str = "momentum",
) -> ModelProfile:
    """Profile ``module`` on inputs of ``input_shape`` (no batch dimension).

    Args:
        module: the model; it is run once, in eval mode, on zeros, without grad.
        input_shape: input shape without the batch dimension.
        name: name recorded in the profile.
        dtype: ``"fp32"`` or ``"int8"``: bytes of activations and weights.
        train_batch_size: batch size of ``train_memory_bytes``.
        optimizer: ``"sgd"``, ``"momentum"`` or ``"adam"`` (state of 0,
            1 or 2 copies of the weights in ``train_memory_bytes``).
    """
    if dtype not in DTYPE_BYTES:
        raise TinylargeError(f"dtype must be one of fp32, int8; got {dtype!r}")
    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d < 1 for d in shape):
        raise TinylargeError(f"input_shape must be positive integers, got {tuple(input_shape)}")
    example = torch.zeros((1, *shape))
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            try:
                graph_module = _trace_fx(module, example)
            except (fx.proxy.TraceError, TypeError, NotImplementedError, AttributeError):
                graph_module = None
            except RuntimeError as exc:
                raise TinylargeError(f"model {name!r} cannot take input {shape}: {exc}") from None
            if graph_module is not None:
                nodes, tally, outputs = _fx_nodes(graph_module, dtype)
                traced = "fx"
            else:
                nodes, tally, outputs = _hook_nodes(module, example, dtype)
                traced = "hooks"
    finally:
        module.train(was_training)
    per_element = DTYPE_BYTES[dtype]
    elements = {"input": numel(shape)}
    for node in nodes:
        elements[node.outputs[0]] = node.output_bytes // per_element
    num_tensors = 1 + sum(not n.inplace for n in nodes) + tally.tensors
    flash = {
        d: tally.bytes[d]
        + FLASH_BASE_BYTES
        + FLASH_BYTES_PER_TENSOR * num_tensors
        + (QUANT_PARAM_BYTES * (1 + len(nodes)) if d == "int8" else 0)
        for d in DTYPE_BYTES
    }
    return assemble_profile(
        name=name,
        input_shape=shape,
        dtype=dtype,
        nodes=nodes,
        activation_bytes={k: v * per_element for k, v in elements.items()},
        activation_elements=elements,
        graph_inputs=["input"],
        graph_outputs=outputs,
        params=tally.params,
        weight_bytes=tally.bytes[dtype],
        flash_bytes=flash[dtype],
        train_batch_size=train_batch_size,
        optimizer=optimizer,
        extra={
            "format": "torch",
            "traced": traced,
            "flash_bytes_fp32": flash["fp32"],
            "flash_bytes_int8": flash["int8"],
            "weight_bytes_fp32": tally.bytes["fp32"],
            "weight_bytes_int8": tally.bytes["int8"],
        },
    )


def _fx_nodes(gm: fx.GraphModule, dtype: str) -> tuple[list[OpNode], _Tally, list[str]]:
    per_element = DTYPE_BYTES[dtype]
    tally = _Tally()
    nodes: list[OpNode] = []
    names: dict[str, str] = {}  # fx node name -> activation tensor name
    producer_op: dict[str, OpClass] = {}
    outputs: list[str] = []
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            names[node.name] = "input"
            continue
        if node.op == "output":
            outputs = [names[n.name] for n in node.all_input_nodes if n.name in names]
            continue
        out_shape = _shape_of(node)
        if node.op == "get_attr" or out_shape is None:
            continue
        ins = [n for n in node.all_input_nodes if n.name in names]
        in_shapes = [s[1:] for s in (_shape_of(n) for n in ins) if s is not None]
        out = out_shape[1:]
        params = 0
        kind: str
        if node.op == "call_module":
            sub = gm.get_submodule(node.target)
            kind = type(sub).__name__
            rule = module_rule(sub)
            cost = rule(sub, in_shapes, out) if rule else _OTHER
            folded = (
                isinstance(sub, nn.modules.batchnorm._BatchNorm)
                and bool(ins)
                and (producer_op.get(names[ins[0].name]) in ("conv", "depthwise_conv", "linear"))
            )
            params = tally.add(sub, cost, folded=folded)
        else:
            target = node.target
            kind = target if isinstance(target, str) else getattr(target, "__name__", str(target))
            frule = FUNCTION_RULES.get(target)
            cost = frule(node.args, in_shapes, out) if frule else _OTHER
        tensor = node.name
        names[node.name] = tensor
        producer_op[tensor] = cost.op
        nodes.append(
            OpNode(
                name=str(node.target) if node.op == "call_module" else node.name,
                op=cost.op,
                kind=kind,
                macs=cost.macs,
                params=params,
                inputs=tuple(names[n.name] for n in ins),
                outputs=(tensor,),
                output_shape=out,
                output_bytes=numel(out) * per_element,
                alias=cost.alias,
                inplace=cost.inplace,
            )
        )
    return nodes, tally, outputs


def _hook_nodes(
    module: nn.Module, example: torch.Tensor, dtype: str
) -> tuple[list[OpNode], _Tally, list[str]]:
    """Fallback for untraceable modules: forward hooks on leaf modules."""
    per_element = DTYPE_BYTES[dtype]
    tally = _Tally()
    nodes: list[OpNode] = []
    known: dict[int, str] = {id(example): "input"}
    keep: list[torch.Tensor] = [example]
    producer_op: dict[str, OpClass] = {}

    def tensor_name(t: torch.Tensor) -> str:
        if id(t) not in known:
            name = f"functional_{len(nodes)}"
            known[id(t)] = name
            keep.append(t)
            shape = tuple(int(d) for d in t.shape[1:])
            nodes.append(
                OpNode(
                    name,
                    "other",
                    "functional",
                    0,
                    0,
                    (),
                    (name,),
                    shape,
                    numel(shape) * per_element,
                )
            )
        return known[id(t)]

    def hook(sub: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if not isinstance(output, torch.Tensor):
            return
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        inputs = [tensor_name(t) for t in tensors]
        out = tuple(int(d) for d in output.shape[1:])
        rule = module_rule(sub)
        cost = rule(sub, [tuple(t.shape[1:]) for t in tensors], out) if rule else _OTHER
        folded = (
            isinstance(sub, nn.modules.batchnorm._BatchNorm)
            and bool(inputs)
            and (producer_op.get(inputs[0]) in ("conv", "depthwise_conv", "linear"))
        )
        name = f"{type(sub).__name__.lower()}_{len(nodes)}"
        known[id(output)] = name
        keep.append(output)
        producer_op[name] = cost.op
        nodes.append(
            OpNode(
                name=name,
                op=cost.op,
                kind=type(sub).__name__,
                macs=cost.macs,
                params=tally.add(sub, cost, folded=folded),
                inputs=tuple(inputs),
                outputs=(name,),
                output_shape=out,
                output_bytes=numel(out) * per_element,
                alias=cost.alias,
                inplace=cost.inplace,
            )
        )

    leaves = [m for m in module.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        result = module(example)
    except RuntimeError as exc:
        raise TinylargeError(f"model cannot take input {tuple(example.shape[1:])}: {exc}") from None
    finally:
        for handle in handles:
            handle.remove()
    outputs = [tensor_name(result)] if isinstance(result, torch.Tensor) else []
    return nodes, tally, outputs
