"""Split inference: choose which operators of a model run on the device (Neurosurgeon, DADS).

The device runs a *partition* of the model's operators (closed under
predecessors: an operator runs on the device only if everything it reads was
computed there), sends the tensors the server needs, the server runs the rest
and returns the result. For every partition the cost is

    device compute + uplink(bytes of the tensors crossing the cut)
    + server compute + downlink(result bytes)

with the two ends included: all on the device (no transfer at all) and all on
the server (the input crosses). The planner minimises end-to-end latency or
device energy under the device's current link (Kang et al., "Neurosurgeon:
Collaborative Intelligence Between the Cloud and Mobile Edge", ASPLOS 2017,
https://doi.org/10.1145/3037697.3037698).

A deployed model fuses a convolution or a linear layer with its BatchNorm and
activation, so a partition may only separate an operator from the operators
that read it where the operator ends such a group
(:func:`tinylarge.models.cuts.ends_group`: after an activation or a pooling
layer; never after a conv, a linear layer, a BatchNorm, a pure view such as
``Flatten``, or ResNet's residual addition, which is fused with the ReLU that
follows it). For a chain the partitions are the execution-order prefixes that
end after such an operator, and the two ends.

Models that are not chains (a ResNet's skip connections) have more partitions
than execution-order prefixes: the device may run a block's first conv group
(conv, BatchNorm, ReLU) and send it with the block's input, which the server's
shortcut still reads. Following DADS (Hu et al., INFOCOM 2019,
https://doi.org/10.1109/INFOCOM.2019.8737614) the best offloading partition is
a minimum s-t cut of the operator graph (:mod:`tinylarge.inference.mincut`):
device cost on one side, server cost on the other, each crossing tensor's
transfer cost counted once however many server operators read it. It is exact
when the uplink cost is affine in bytes (every link preset except LoRa, whose
frames make it a step function). The plan evaluates that cut, every allowed
execution-order prefix and the all-on-device end exactly, and keeps the best
one whose device part fits the device: flash for its fp32 weights (4 B per
parameter plus the profiler's format overhead) and SRAM for the peak of its
live activations (the memory plan of :mod:`tinylarge.models.memory` over the
device operators, with the crossing tensors kept until sent).

The graph comes from ``torch.fx`` (the profiler's trace; operator costs from
its :class:`~tinylarge.models.profile.LayerProfile` rows). :class:`SplitRunner`
executes the two parts separately so a run really sends the crossing tensors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from tinylarge.errors import TinylargeError
from tinylarge.hardware.catalogue import DeviceProfile
from tinylarge.hardware.cost import ComputeCost, inference_cost
from tinylarge.inference.mincut import min_cut
from tinylarge.models.cuts import ends_group
from tinylarge.models.memory import Step, lifetimes, peak_bytes
from tinylarge.models.profile import LayerProfile, ModelProfile
from tinylarge.models.profiler import (
    FLASH_BASE_BYTES,
    FLASH_BYTES_PER_TENSOR,
    FUNCTION_RULES,
    module_rule,
    profile_model,
)
from tinylarge.network.link import Link, TransferResult

Objective = Literal["latency", "energy"]
OBJECTIVES: tuple[Objective, ...] = ("latency", "energy")
#: Producer index of the model input.
INPUT = -1
FP32_BYTES = 4


@dataclass(frozen=True)
class GraphOp:
    """One operator: its profile row, the fx node it came from, what it reads.

    ``ends_group``: whether the operators reading its output may run on the other
    side of a partition (:func:`tinylarge.models.cuts.ends_group`); an operator that
    does not end its group runs on the same side as every operator reading it.
    """

    node: str
    layer: LayerProfile
    inputs: tuple[int, ...]
    alias: bool = False
    inplace: bool = False
    ends_group: bool = True


@dataclass(frozen=True)
class ModelGraph:
    """A model's operators in execution order with their data dependencies (fp32)."""

    profile: ModelProfile
    ops: tuple[GraphOp, ...]
    output: int
    input_bytes: int

    @property
    def result_bytes(self) -> int:
        return self.ops[self.output].layer.output_bytes

    def tensor_bytes(self, producer: int) -> int:
        return self.input_bytes if producer == INPUT else self.ops[producer].layer.output_bytes

    def consumers(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {INPUT: []}
        for i, op in enumerate(self.ops):
            out.setdefault(i, [])
            for p in op.inputs:
                out.setdefault(p, []).append(i)
        return out


def _traced(module: nn.Module, input_shape: tuple[int, ...]) -> fx.GraphModule:
    gm = fx.symbolic_trace(module)
    with torch.no_grad():
        ShapeProp(gm).propagate(torch.zeros((1, *input_shape)))
    return gm


def model_graph(module: nn.Module, *, input_shape: Sequence[int], name: str) -> ModelGraph:
    """Profile ``module`` (fp32, batch 1) and recover its dataflow graph with torch.fx.

    A module fx cannot trace is treated as a chain of its profiled layers.
    """
    shape = tuple(int(d) for d in input_shape)
    profile = profile_model(module, input_shape=shape, name=name, dtype="fp32")
    in_bytes = FP32_BYTES * math.prod(shape)
    if profile.extra.get("traced") != "fx":
        ops = tuple(
            GraphOp(
                node=layer.name,
                layer=layer,
                inputs=(i - 1,) if i else (INPUT,),
                ends_group=_module_ends_group(module, layer.name),
            )
            for i, layer in enumerate(profile.layers)
        )
        return ModelGraph(profile=profile, ops=ops, output=len(ops) - 1, input_bytes=in_bytes)
    was_training = module.training
    module.eval()
    try:
        gm = _traced(module, shape)
    finally:
        module.train(was_training)
    index: dict[str, int] = {}
    ops_list: list[GraphOp] = []
    output = -1
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            index[node.name] = INPUT
            continue
        if node.op == "output":
            outs = [index[n.name] for n in node.all_input_nodes if n.name in index]
            output = outs[0] if outs else -1
            continue
        meta = node.meta.get("tensor_meta")
        if node.op == "get_attr" or meta is None or not hasattr(meta, "shape"):
            continue
        layer = profile.layers[len(ops_list)]
        expected = str(node.target) if node.op == "call_module" else node.name
        if layer.name != expected:
            raise RuntimeError(f"fx node {node.name} does not match profile row {layer.name}")
        inputs = tuple(
            dict.fromkeys(index[n.name] for n in node.all_input_nodes if n.name in index)
        )
        alias, inplace = _memory_flags(gm, node)
        index[node.name] = len(ops_list)
        ends = node.op == "call_module" and ends_group(gm.get_submodule(str(node.target)))
        ops_list.append(
            GraphOp(
                node=node.name,
                layer=layer,
                inputs=inputs,
                alias=alias,
                inplace=inplace,
                ends_group=ends,
            )
        )
    if output < 0:
        raise TinylargeError(f"model {name!r} has no operator producing its output")
    return ModelGraph(profile=profile, ops=tuple(ops_list), output=output, input_bytes=in_bytes)


def _module_ends_group(module: nn.Module, name: str) -> bool:
    """Whether the submodule called ``name`` ends a group (False when there is none: a
    functional operator is fused with what follows it)."""
    try:
        return ends_group(module.get_submodule(name))
    except AttributeError:
        return False


def _memory_flags(gm: fx.GraphModule, node: fx.Node) -> tuple[bool, bool]:
    """(alias, inplace) of a node, by the profiler's rules."""
    ins = [n.meta.get("tensor_meta") for n in node.all_input_nodes]
    in_shapes = [tuple(m.shape)[1:] for m in ins if m is not None and hasattr(m, "shape")]
    out = tuple(node.meta["tensor_meta"].shape)[1:]
    if node.op == "call_module":
        sub = gm.get_submodule(str(node.target))
        rule = module_rule(sub)
        cost = rule(sub, in_shapes, out) if rule else None
    else:
        frule = FUNCTION_RULES.get(node.target)
        cost = frule(node.args, in_shapes, out) if frule else None
    return (cost.alias, cost.inplace) if cost is not None else (False, False)


def op_profiles(graph: ModelGraph) -> tuple[ModelProfile, ...]:
    """Each operator as a one-layer profile (fp32): what runs when a node runs it."""
    return tuple(
        replace(graph.profile, layers=(op.layer,), macs=op.layer.macs, dtype="fp32")
        for op in graph.ops
    )


def op_costs(graph: ModelGraph, device: DeviceProfile) -> tuple[ComputeCost, ...]:
    """Cost of each operator on ``device`` at fp32 (they add up to ``inference_cost``)."""
    return tuple(inference_cost(p, device, dtype="fp32") for p in op_profiles(graph))


def crossing(graph: ModelGraph, device_ops: frozenset[int]) -> tuple[int, ...]:
    """Producers (INPUT or device operators) whose tensor a server operator reads."""
    out: list[int] = []
    for producer, readers in graph.consumers().items():
        if (producer == INPUT or producer in device_ops) and any(
            r not in device_ops for r in readers
        ):
            out.append(producer)
    return tuple(sorted(out))


def is_closed(graph: ModelGraph, device_ops: frozenset[int]) -> bool:
    """Whether every device operator reads only the input or device operators."""
    return all(p == INPUT or p in device_ops for i in device_ops for p in graph.ops[i].inputs)


def keeps_groups(graph: ModelGraph, device_ops: frozenset[int]) -> bool:
    """Whether no device operator that does not end its group is read on the server."""
    return not any(
        p in device_ops
        for i in range(len(graph.ops))
        if i not in device_ops
        for p in graph.ops[i].inputs
        if p != INPUT and not graph.ops[p].ends_group
    )


def is_partition(graph: ModelGraph, device_ops: frozenset[int]) -> bool:
    """Whether ``device_ops`` may run on the device: closed under predecessors, and
    separating no operator from its group (see the module docstring)."""
    return is_closed(graph, device_ops) and keeps_groups(graph, device_ops)


def device_memory(graph: ModelGraph, device_ops: frozenset[int]) -> tuple[int, int]:
    """(flash bytes, peak SRAM bytes) of the device part at fp32 ((0, 0) when empty)."""
    if not device_ops:
        return 0, 0
    order = sorted(device_ops)
    names = {INPUT: "input", **{i: graph.ops[i].node for i in order}}
    steps = [
        Step(
            inputs=tuple(names[p] for p in graph.ops[i].inputs),
            outputs=(names[i],),
            alias=graph.ops[i].alias,
            inplace=graph.ops[i].inplace,
        )
        for i in order
    ]
    sizes = {names[p]: graph.tensor_bytes(p) for p in names}
    sent = crossing(graph, device_ops) if len(device_ops) < len(graph.ops) else (graph.output,)
    buffers = lifetimes(
        steps=steps,
        sizes_bytes=sizes,
        graph_inputs=["input"],
        graph_outputs=[names[p] for p in sent],
    )
    params = sum(graph.ops[i].layer.params for i in order)
    flash = FP32_BYTES * params + FLASH_BASE_BYTES + FLASH_BYTES_PER_TENSOR * len(order)
    return flash, peak_bytes(buffers)


@dataclass(frozen=True)
class PartitionCost:
    """Cost of one partition for one request (batch 1), and whether it is feasible."""

    device_ops: frozenset[int]
    device: ComputeCost
    server: ComputeCost
    up_bytes: int
    up: TransferResult | None
    down_bytes: int
    down: TransferResult | None
    flash_bytes: int
    sram_bytes: int
    fits: bool

    @property
    def outage(self) -> bool:
        return any(t is not None and t.outage for t in (self.up, self.down))

    @property
    def feasible(self) -> bool:
        return self.fits and not self.outage

    @property
    def latency_s(self) -> float:
        if self.outage:
            return math.inf
        legs = [t.time_s for t in (self.up, self.down) if t is not None]
        return self.device.latency_s + self.server.latency_s + math.fsum(legs)

    @property
    def device_energy_j(self) -> float:
        if self.outage:
            return math.inf
        legs = [t.energy_j for t in (self.up, self.down) if t is not None]
        return self.device.energy_j + math.fsum(legs)

    def objective(self, objective: str) -> float:
        return self.latency_s if objective == "latency" else self.device_energy_j


def _sum(costs: Sequence[ComputeCost], which: Sequence[int]) -> ComputeCost:
    return ComputeCost(
        macs=sum(costs[i].macs for i in which),
        latency_s=math.fsum(costs[i].latency_s for i in which),
        energy_j=math.fsum(costs[i].energy_j for i in which),
    )


def evaluate(
    graph: ModelGraph,
    device_ops: frozenset[int],
    *,
    device: DeviceProfile,
    device_costs: Sequence[ComputeCost],
    server_costs: Sequence[ComputeCost],
    link: Link,
) -> PartitionCost:
    """Exact cost of running ``device_ops`` on the device and the rest on the server."""
    if not is_closed(graph, device_ops):
        raise ValueError("a device operator reads a tensor computed on the server")
    if not keeps_groups(graph, device_ops):
        raise ValueError("a partition separates an operator from its group (models.cuts)")
    everything = len(device_ops) == len(graph.ops)
    server_ops = [i for i in range(len(graph.ops)) if i not in device_ops]
    up_bytes = 0 if everything else sum(graph.tensor_bytes(p) for p in crossing(graph, device_ops))
    down_bytes = 0 if everything else graph.result_bytes
    flash, sram = device_memory(graph, device_ops)
    return PartitionCost(
        device_ops=device_ops,
        device=_sum(device_costs, sorted(device_ops)),
        server=_sum(server_costs, server_ops),
        up_bytes=up_bytes,
        up=None if everything else link.transfer(up_bytes, direction="up"),
        down_bytes=down_bytes,
        down=None if everything else link.transfer(down_bytes, direction="down"),
        flash_bytes=flash,
        sram_bytes=sram,
        fits=flash <= device.flash_bytes and sram <= device.sram_contiguous_bytes,
    )


def per_byte(link: Link, *, objective: str, scale_bytes: int) -> float:
    """Uplink seconds (latency) or device joules (energy) per extra byte, near ``scale_bytes``."""
    n = max(scale_bytes, 1)
    a = link.transfer(n, direction="up")
    b = link.transfer(2 * n, direction="up")
    if a.outage or b.outage:
        return math.inf
    return ((b.time_s - a.time_s) if objective == "latency" else (b.energy_j - a.energy_j)) / n


def mincut_partition(
    graph: ModelGraph,
    *,
    device_cost: Sequence[float],
    server_cost: Sequence[float],
    byte_cost: float,
) -> frozenset[int]:
    """The offloading partition minimising sum(device) + sum(server) + byte_cost * crossing bytes.

    Nodes: 0 source (device side), 1 sink (server side), 2 the input, 3 + i
    operator i, then one auxiliary node per tensor read by several operators
    so that its transfer is paid once. The output operator is pinned to the
    server (all-on-device is evaluated separately: it transfers nothing). An
    operator that does not end its group is tied to each operator reading it by
    infinite edges both ways (with the producer edge already there), so no cut
    separates a group.
    """
    n_ops = len(graph.ops)
    node = {INPUT: 2, **{i: 3 + i for i in range(n_ops)}}
    edges: list[tuple[int, int, float]] = [(0, 2, math.inf), (3 + graph.output, 1, math.inf)]
    for i, op in enumerate(graph.ops):
        edges += [(0, 3 + i, server_cost[i]), (3 + i, 1, device_cost[i])]
        edges += [(3 + i, 3 + p, math.inf) for p in op.inputs if p != INPUT]
        edges += [
            (3 + p, 3 + i, math.inf)
            for p in op.inputs
            if p != INPUT and not graph.ops[p].ends_group
        ]
    next_id = 3 + n_ops
    for producer, readers in graph.consumers().items():
        if not readers:
            continue
        capacity = byte_cost * graph.tensor_bytes(producer)
        if len(readers) == 1:
            edges.append((node[producer], node[readers[0]], capacity))
            continue
        edges.append((node[producer], next_id, capacity))
        edges += [(next_id, node[r], math.inf) for r in readers]
        next_id += 1
    _, side = min_cut(next_id, edges, 0, 1)
    return frozenset(i for i in range(n_ops) if 3 + i in side)


@dataclass(frozen=True)
class PartitionPlan:
    """Every allowed execution-order point, the min-cut partition, and the choice."""

    graph: ModelGraph
    objective: str
    points: tuple[PartitionCost, ...]
    mincut: PartitionCost | None
    best: PartitionCost | None

    def point_of(self, cost: PartitionCost) -> int | None:
        """k when ``cost`` runs exactly the first k operators on the device, else None."""
        ops = cost.device_ops
        return len(ops) if ops == frozenset(range(len(ops))) else None


def _key(cost: PartitionCost, objective: str) -> tuple[float, float, int]:
    other = "energy" if objective == "latency" else "latency"
    return (cost.objective(objective), cost.objective(other), len(cost.device_ops))


def plan_partition(
    graph: ModelGraph,
    *,
    device: DeviceProfile,
    server: DeviceProfile,
    link: Link,
    objective: str,
) -> PartitionPlan:
    """Evaluate every execution-order point that keeps the groups whole (both ends always)
    and the min-cut partition; choose the best feasible.

    Ties go to the other objective, then to fewer device operators. ``best``
    is ``None`` when nothing is feasible (no device part fits and the link is
    in outage).
    """
    if objective not in OBJECTIVES:
        raise TinylargeError(f"unknown objective {objective!r}; known: {', '.join(OBJECTIVES)}")
    dev = op_costs(graph, device)
    srv = op_costs(graph, server)

    def cost_of(ops: frozenset[int]) -> PartitionCost:
        return evaluate(graph, ops, device=device, device_costs=dev, server_costs=srv, link=link)

    prefixes = (frozenset(range(k)) for k in range(len(graph.ops) + 1))
    points = tuple(cost_of(ops) for ops in prefixes if is_partition(graph, ops))
    slope = per_byte(link, objective=objective, scale_bytes=graph.input_bytes)
    cut: PartitionCost | None = None
    if math.isfinite(slope):
        pick = "latency_s" if objective == "latency" else "energy_j"
        cut_ops = mincut_partition(
            graph,
            device_cost=[getattr(c, pick) for c in dev],
            server_cost=[c.latency_s if objective == "latency" else 0.0 for c in srv],
            byte_cost=slope,
        )
        cut = cost_of(cut_ops)
    feasible = [c for c in (*points, *([cut] if cut else [])) if c.feasible]
    best = min(feasible, key=lambda c: _key(c, objective)) if feasible else None
    return PartitionPlan(graph=graph, objective=objective, points=points, mincut=cut, best=best)


def describe(graph: ModelGraph, device_ops: frozenset[int]) -> str:
    """A partition for people: ``server-only``, ``device-only``, ``after <layer>`` or a set."""
    if not device_ops:
        return "server-only (send input)"
    if len(device_ops) == len(graph.ops):
        return "device-only"
    k = len(device_ops)
    if device_ops == frozenset(range(k)):
        layer = graph.ops[k - 1].layer
        return f"after {layer.name} ({layer.kind})"
    return "device runs " + ",".join(graph.ops[i].layer.name for i in sorted(device_ops))


@dataclass(frozen=True)
class SplitNames:
    """A partition in fx node names: what the device runs, what it sends, the output node."""

    device_nodes: frozenset[str]
    sent: tuple[str, ...]
    output: str


def split_names(graph: ModelGraph, device_ops: frozenset[int]) -> SplitNames:
    """The fx names of a partition (``"input"`` stands for the model input)."""
    everything = len(device_ops) == len(graph.ops)
    sent = (graph.output,) if everything else crossing(graph, device_ops)
    return SplitNames(
        device_nodes=frozenset(graph.ops[i].node for i in device_ops),
        sent=tuple("input" if p == INPUT else graph.ops[p].node for p in sent),
        output=graph.ops[graph.output].node,
    )


class SplitRunner:
    """Run the device part and the server part of a partition separately (torch.fx)."""

    def __init__(self, module: nn.Module, names: SplitNames) -> None:
        self.gm = fx.symbolic_trace(module)
        self.names = names
        calls = {n.name for n in self.gm.graph.nodes if n.op.startswith("call_")}
        self.server_nodes = calls - names.device_nodes

    def _run(self, env: dict[str, Any], which: set[str] | frozenset[str]) -> dict[str, Any]:
        interp = fx.Interpreter(self.gm)
        by_name = {n.name: n for n in self.gm.graph.nodes}
        placeholder = next(n for n in self.gm.graph.nodes if n.op == "placeholder")
        interp.env = {by_name[k] if k != "input" else placeholder: v for k, v in env.items()}
        out: dict[str, Any] = dict(env)
        for n in self.gm.graph.nodes:
            if n.op in ("placeholder", "output") or n in interp.env:
                continue
            if n.op == "get_attr" or n.name in which:
                interp.env[n] = interp.run_node(n)
                out[n.name] = interp.env[n]
        return out

    @torch.no_grad()
    def device_part(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The tensors the device sends (the result itself when it runs everything)."""
        env = self._run({"input": x}, self.names.device_nodes)
        return {k: env[k] for k in self.names.sent}

    @torch.no_grad()
    def server_part(self, sent: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model output from the tensors the device sent."""
        if self.names.output in sent:
            return sent[self.names.output]
        env = self._run(dict(sent), self.server_nodes)
        result: torch.Tensor = env[self.names.output]
        return result
