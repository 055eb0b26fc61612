"""The foundation model's shape, its LoRA configuration and its analytic profile (no PyTorch).

all-MiniLM-L6-v2 is a 6-layer, 384-wide BERT encoder (see
:mod:`tinylarge.models.foundation` for the model itself). Costs are counted
analytically from the encoder's shape (:func:`foundation_profile`), because the
fx profiler cannot trace a Hugging Face model on integer token ids. Per
sequence of ``T`` tokens (hidden ``h``, FFN width ``i``, ``L`` layers):
``L * (4*T*h*h + 2*T*T*h + 2*T*h*i)`` MACs in the encoder (Q, K, V and output
projections, the two attention matmuls, the FFN), ``2*T*h*r`` per LoRA target and
layer, ``h*h`` for BERT's pooler (it runs, unused) and ``h*C`` for the head; bias
adds, layer norms, softmax and GELU are element-wise (0 MACs, billed per element by
the cost model), embedding look-ups are ``other``. The tests check these MACs
against ``torch.utils.flop_counter`` on the real model. LoRA training is billed
as one forward plus ``1 + trainable MACs / MACs`` forward-equivalents of backward:
the frozen weights need only the activation gradient, the adapters and the head
also their weight gradients. Training memory holds the frozen fp32 weights once,
the trainable ones with their gradients and optimizer state, and every
operator's output for the backward pass. Rank 0 is the frozen foundation model
with a trainable head only: no backward pass through the encoder (billed as
``trainable MACs / MACs`` of backward) and only inference activations in memory.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinylarge.errors import TinylargeError
from tinylarge.hardware.cost import Infer, Train
from tinylarge.models.graph import OpNode, assemble_profile
from tinylarge.models.memory import training_memory_bytes
from tinylarge.models.profile import ModelProfile, OpClass

_FP32 = 4
#: LoRA targets: attention projections of every layer (``output``: attention.output.dense).
LORA_TARGETS = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "output": "attention.output.dense",
}
_FP32 = 4


@dataclass(frozen=True)
class EncoderShape:
    """The shape of a BERT encoder (the fields of its ``config.json``)."""

    vocab_size: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    max_positions: int
    type_vocab: int


#: all-MiniLM-L6-v2 (the package's config.json; the tests compare them).
MINILM_L6 = EncoderShape(30522, 384, 6, 12, 1536, 512, 2)


@dataclass(frozen=True)
class FoundationSpec:
    """A LoRA-wrapped foundation classifier: what a device needs to rebuild it.

    Attributes:
        num_classes: classes of the head.
        max_length: tokens per text after truncation (``[CLS]`` and ``[SEP]`` included).
        rank: LoRA rank ``r``; 0 freezes the encoder (only the head trains).
        alpha: LoRA scaling numerator (updates are scaled by ``alpha / rank``).
        targets: LoRA targets, keys of :data:`LORA_TARGETS`.
        dropout: dropout on the LoRA input.
        shape: the encoder's shape.
    """

    num_classes: int
    max_length: int = 32
    rank: int = 8
    alpha: int = 16
    targets: tuple[str, ...] = ("query", "value")
    dropout: float = 0.0
    shape: EncoderShape = MINILM_L6

    def __post_init__(self) -> None:
        if self.rank < 0:
            raise TinylargeError(f"LoRA rank must be >= 0, got {self.rank}")
        unknown = sorted(set(self.targets) - set(LORA_TARGETS))
        if unknown or not self.targets:
            raise TinylargeError(
                f"LoRA targets {list(self.targets)} invalid; choose from {sorted(LORA_TARGETS)}"
            )


# -- analytic profile ----------------------------------------------------------------------
def base_params(shape: EncoderShape) -> int:
    """Parameters of the encoder with its pooler (as stored in the model file)."""
    h, i = shape.hidden, shape.intermediate
    embeddings = (shape.vocab_size + shape.max_positions + shape.type_vocab) * h + 2 * h
    layer = 4 * (h * h + h) + (h * i + i) + (i * h + h) + 2 * 2 * h
    return embeddings + shape.layers * layer + (h * h + h)


def trainable_params(spec: FoundationSpec) -> int:
    """LoRA adapter (``A``: r x h, ``B``: h x r per target and layer) plus head parameters."""
    h = spec.shape.hidden
    lora = spec.shape.layers * len(spec.targets) * 2 * h * spec.rank
    return lora + h * spec.num_classes + spec.num_classes


def _encoder_nodes(spec: FoundationSpec, tokens: int) -> list[OpNode]:
    s, t, r = spec.shape, tokens, spec.rank
    h, i = s.hidden, s.intermediate
    nodes: list[OpNode] = []

    def add(
        name: str,
        op: OpClass,
        macs: int,
        params: int,
        ins: Sequence[str],
        shape: Any,
        *,
        inplace: bool = False,
    ) -> str:
        out = tuple(int(d) for d in shape)
        nodes.append(
            OpNode(
                name,
                op,
                name.rsplit(".", 1)[-1],
                macs,
                params,
                tuple(ins),
                (name,),
                out,
                int(np.prod(out)) * _FP32,
                inplace=inplace,
            )
        )
        return name

    def lora(target: str) -> tuple[int, int]:
        on = target in spec.targets
        return (2 * t * h * r, 2 * h * r) if on else (0, 0)

    ids = "input"
    word = add("embeddings.word", "other", 0, s.vocab_size * h, [ids], (t, h))
    pos = add("embeddings.position", "other", 0, s.max_positions * h, [ids], (t, h))
    typ = add("embeddings.token_type", "other", 0, s.type_vocab * h, [ids], (t, h))
    x = add("embeddings.sum", "elementwise", 0, 0, [word, pos, typ], (t, h))
    x = add("embeddings.layernorm", "elementwise", 0, 2 * h, [x], (t, h), inplace=True)
    for layer in range(s.layers):
        p = f"layer{layer}"
        qkv = []
        for name in ("query", "key", "value"):
            extra_macs, extra_params = lora(name)
            qkv.append(
                add(
                    f"{p}.{name}",
                    "linear",
                    t * h * h + extra_macs,
                    h * h + h + extra_params,
                    [x],
                    (t, h),
                )
            )
        scores = add(f"{p}.scores", "linear", t * t * h, 0, qkv[:2], (s.heads, t, t))
        probs = add(f"{p}.softmax", "elementwise", 0, 0, [scores], (s.heads, t, t), inplace=True)
        ctx = add(f"{p}.context", "linear", t * t * h, 0, [probs, qkv[2]], (t, h))
        extra_macs, extra_params = lora("output")
        out = add(
            f"{p}.output", "linear", t * h * h + extra_macs, h * h + h + extra_params, [ctx], (t, h)
        )
        x = add(f"{p}.attention_norm", "elementwise", 0, 2 * h, [out, x], (t, h), inplace=True)
        up = add(f"{p}.ffn_up", "linear", t * h * i, h * i + i, [x], (t, i))
        up = add(f"{p}.gelu", "elementwise", 0, 0, [up], (t, i), inplace=True)
        down = add(f"{p}.ffn_down", "linear", t * i * h, i * h + h, [up], (t, h))
        x = add(f"{p}.ffn_norm", "elementwise", 0, 2 * h, [down, x], (t, h), inplace=True)
    pooler = add("pooler.dense", "linear", h * h, h * h + h, [x], (h,))
    add("pooler.tanh", "elementwise", 0, 0, [pooler], (h,), inplace=True)
    pooled = add("mean_pool", "elementwise", 0, 0, [x], (h,))
    c = spec.num_classes
    add("head", "linear", h * c, h * c + c, [pooled], (c,))
    return nodes


@functools.lru_cache(maxsize=512)
def foundation_profile(
    spec: FoundationSpec, *, tokens: int, train_batch_size: int = 1, optimizer: str = "adam"
) -> ModelProfile:
    """Profile of the LoRA classifier on one sequence of ``tokens`` tokens, at fp32.

    ``train_memory_bytes`` is for LoRA training at ``train_batch_size`` with
    ``optimizer`` state on the trainable parameters only; ``extra`` holds
    ``trainable_params``, ``trainable_macs`` and ``tokens``.
    """
    if not 1 <= tokens <= spec.shape.max_positions:
        raise TinylargeError(f"tokens must be in 1..{spec.shape.max_positions}, got {tokens}")
    nodes = _encoder_nodes(spec, tokens)
    elements = {"input": tokens} | {n.outputs[0]: n.output_bytes // _FP32 for n in nodes}
    params = sum(n.params for n in nodes)
    trainable = trainable_params(spec)
    profile = assemble_profile(
        name="minilm-l6-lora",
        input_shape=(tokens,),
        dtype="fp32",
        nodes=nodes,
        activation_bytes={k: v * _FP32 for k, v in elements.items()},
        activation_elements=elements,
        graph_inputs=["input"],
        graph_outputs=["head"],
        params=params,
        weight_bytes=params * _FP32,
        flash_bytes=params * _FP32,
        train_batch_size=train_batch_size,
        optimizer=optimizer,
    )
    # LoRA: every operator's output is kept for the backward pass through the encoder;
    # rank 0: no backward through it, the live activations of inference suffice.
    saved = sum(v for k, v in elements.items() if k != "input")
    if spec.rank == 0:
        saved = profile.peak_sram_bytes // _FP32
    memory = (params - trainable) * _FP32 + training_memory_bytes(
        params=trainable,
        saved_activation_elements=saved,
        input_elements=tokens,
        batch_size=train_batch_size,
        optimizer=optimizer,
    )
    lora_macs = sum(n.macs - tokens * spec.shape.hidden**2 for n in nodes if _is_target(spec, n))
    extra = profile.extra | {
        "format": "analytic",
        "tokens": tokens,
        "trainable_params": trainable,
        "trainable_macs": lora_macs + spec.shape.hidden * spec.num_classes,
    }
    return dataclasses.replace(profile, train_memory_bytes=memory, extra=extra)


def _is_target(spec: FoundationSpec, node: OpNode) -> bool:
    return node.name.rsplit(".", 1)[-1] in spec.targets


def backward_factor(spec: FoundationSpec, profile: ModelProfile) -> float:
    """Backward cost of a LoRA training step, in forward passes of ``profile``.

    One pass of activation gradients through the encoder (not at rank 0) plus
    the weight gradients of the adapters and the head.
    """
    through_encoder = 1.0 if spec.rank > 0 else 0.0
    return through_encoder + float(profile.extra["trainable_macs"]) / profile.macs


def lora_train_work(
    spec: FoundationSpec,
    *,
    steps: Sequence[tuple[int, int]],
    batch_size: int,
    optimizer: str = "adam",
) -> list[Train]:
    """LoRA training steps, each ``(padded tokens, sequences)``, as work for the cost model."""
    out = []
    for tokens, sequences in steps:
        prof = foundation_profile(
            spec, tokens=tokens, train_batch_size=batch_size, optimizer=optimizer
        )
        out.append(Train(prof, sequences, backward_factor=backward_factor(spec, prof)))
    return out


def lora_infer_work(spec: FoundationSpec, *, batches: Sequence[tuple[int, int]]) -> list[Infer]:
    """Forward passes, each batch ``(padded tokens, sequences)``, as work for the cost model."""
    return [
        Infer(foundation_profile(spec, tokens=tokens), batch=sequences, dtype="fp32")
        for tokens, sequences in batches
    ]
