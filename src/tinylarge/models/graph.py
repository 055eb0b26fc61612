"""A profiled dataflow graph and its assembly into a :class:`ModelProfile`.

Every profiler (PyTorch, TFLite, ONNX) reduces its model to the same form:
operators in execution order (:class:`OpNode`), each naming the tensors it
reads and writes, plus the bytes of every activation tensor. This module turns
that into the memory plan and the profile, so the three profilers share one
definition of peak SRAM, arena size and training memory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tinylarge.models.memory import (
    Step,
    greedy_arena_plan,
    lifetimes,
    peak_bytes,
    training_memory_bytes,
)
from tinylarge.models.profile import LayerProfile, ModelProfile, OpClass

#: Bytes per element of activations at each profile dtype.
DTYPE_BYTES: dict[str, int] = {"fp32": 4, "int8": 1}

#: Alignment of arena offsets in bytes, as in TensorFlow Lite Micro.
ARENA_ALIGNMENT_BYTES = 16


@dataclass(frozen=True)
class OpNode:
    """One operator of a graph, already costed.

    Attributes:
        name: operator or output-tensor name.
        op: operator class for the cost model.
        kind: operator type in the source model.
        macs: forward MACs at batch 1.
        params: parameters owned by this operator.
        inputs: activation and constant tensors read (constants are ignored
            by the memory plan when absent from the size table).
        outputs: tensors written.
        output_shape: shape of the first output without the batch dimension.
        output_bytes: bytes of the first output.
        alias: the output is a view of the first input (reshape, flatten).
        inplace: elementwise operator that may overwrite its first input
            (activation or batch norm fused into the previous operator).
    """

    name: str
    op: OpClass
    kind: str
    macs: int
    params: int
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    output_shape: tuple[int, ...]
    output_bytes: int
    alias: bool = False
    inplace: bool = False


def numel(shape: Sequence[int]) -> int:
    """Number of elements of a shape (1 for a scalar)."""
    return math.prod(int(d) for d in shape)


def assemble_profile(
    *,
    name: str,
    input_shape: tuple[int, ...],
    dtype: Literal["int8", "fp32"],
    nodes: Sequence[OpNode],
    activation_bytes: Mapping[str, int],
    activation_elements: Mapping[str, int],
    graph_inputs: Sequence[str],
    graph_outputs: Sequence[str],
    params: int,
    weight_bytes: int,
    flash_bytes: int,
    train_batch_size: int = 1,
    optimizer: str = "momentum",
    extra: Mapping[str, Any] | None = None,
) -> ModelProfile:
    """Memory-plan a costed graph and return its profile.

    ``activation_bytes`` holds the bytes of every activation tensor at the
    profile dtype (constants excluded); ``activation_elements`` their element
    counts, used for training memory at fp32 (every operator output that is
    not a view is saved for the backward pass).
    """
    steps = [
        Step(inputs=n.inputs, outputs=n.outputs, alias=n.alias, inplace=n.inplace) for n in nodes
    ]
    buffers = lifetimes(
        steps=steps,
        sizes_bytes=activation_bytes,
        graph_inputs=graph_inputs,
        graph_outputs=graph_outputs,
    )
    plan = greedy_arena_plan(buffers, alignment_bytes=ARENA_ALIGNMENT_BYTES)
    saved = sum(activation_elements.get(out, 0) for n in nodes if not n.alias for out in n.outputs)
    input_elements = sum(activation_elements.get(t, 0) for t in graph_inputs)
    layers = tuple(
        LayerProfile(
            name=n.name,
            op=n.op,
            macs=n.macs,
            params=n.params,
            output_shape=n.output_shape,
            output_bytes=n.output_bytes,
            kind=n.kind,
        )
        for n in nodes
    )
    all_extra: dict[str, Any] = {
        "arena_bytes": plan.arena_bytes,
        "train_optimizer": optimizer,
    }
    all_extra.update(extra or {})
    return ModelProfile(
        name=name,
        input_shape=input_shape,
        dtype=dtype,
        layers=layers,
        macs=sum(n.macs for n in nodes),
        params=params,
        weight_bytes=weight_bytes,
        flash_bytes=flash_bytes,
        peak_sram_bytes=peak_bytes(buffers),
        train_memory_bytes=training_memory_bytes(
            params=params,
            saved_activation_elements=saved,
            input_elements=input_elements,
            batch_size=train_batch_size,
            optimizer=optimizer,
        ),
        train_batch_size=train_batch_size,
        extra=all_extra,
    )
