"""Model profile: what a model costs in compute and memory, layer by layer.

A :class:`ModelProfile` is produced by the profilers (PyTorch modules,
``.tflite`` and ``.onnx`` files) and consumed by the compute cost model in
:mod:`tinylarge.hardware.cost`, the fit check and the planners. It is plain
data: no torch objects, so it can be serialised to JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

#: Operator classes the cost model distinguishes. Runtimes such as TFLite Micro
#: with CMSIS-NN reach very different MAC/s on each.
OpClass = Literal["conv", "depthwise_conv", "linear", "pool", "elementwise", "other"]
OP_CLASSES: tuple[OpClass, ...] = (
    "conv",
    "depthwise_conv",
    "linear",
    "pool",
    "elementwise",
    "other",
)


@dataclass(frozen=True)
class LayerProfile:
    """One executed operator.

    Attributes:
        name: layer or tensor name in the source model.
        op: operator class used by the cost model.
        macs: multiply-accumulates of one forward pass (batch 1).
        params: trainable parameters (weights and biases).
        output_shape: shape of the output activation without the batch
            dimension, in the source layout (PyTorch and ONNX: channels first;
            TFLite: channels last).
        output_bytes: bytes of the output activation at the profile's dtype.
        kind: operator type in the source model (``"Conv2d"``, ``"CONV_2D"``,
            ``"Gemm"``), for people; ``op`` is what the cost model uses.
    """

    name: str
    op: OpClass
    macs: int
    params: int
    output_shape: tuple[int, ...]
    output_bytes: int
    kind: str = ""


@dataclass(frozen=True)
class ModelProfile:
    """Per-layer costs and whole-model memory figures of one model at batch 1.

    Attributes:
        name: model name (zoo name or file name).
        input_shape: input shape without the batch dimension.
        dtype: ``"int8"`` or ``"fp32"``: the dtype of activations and weights
            that ``peak_sram_bytes`` and ``flash_bytes`` assume.
        layers: operators in execution order.
        macs: total forward MACs.
        params: total parameters.
        weight_bytes: bytes of the weights at ``dtype`` (int8: 1 byte per weight,
            int32 biases, plus per-channel scales).
        flash_bytes: bytes to store the deployable model (weights plus a
            format overhead); for a file, its size on disk.
        peak_sram_bytes: peak bytes of live activations for inference, from a
            memory plan over the execution order.
        train_memory_bytes: bytes to train at batch size ``train_batch_size`` at
            fp32: weights, gradients, optimizer state (``extra["train_optimizer"]``,
            SGD+momentum unless asked otherwise) and the activations saved for
            the backward pass. ``None`` when unknown.
        train_batch_size: batch size ``train_memory_bytes`` assumes.
        extra: further figures; the profilers fill ``flash_bytes_fp32``,
            ``flash_bytes_int8``, ``arena_bytes`` (greedy arena layout, at least
            ``peak_sram_bytes``) and ``train_optimizer``.
    """

    name: str
    input_shape: tuple[int, ...]
    dtype: Literal["int8", "fp32"]
    layers: tuple[LayerProfile, ...]
    macs: int
    params: int
    weight_bytes: int
    flash_bytes: int
    peak_sram_bytes: int
    train_memory_bytes: int | None = None
    train_batch_size: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def macs_by_op(self) -> dict[OpClass, int]:
        """Total MACs per operator class."""
        out: dict[OpClass, int] = dict.fromkeys(OP_CLASSES, 0)
        for layer in self.layers:
            out[layer.op] += layer.macs
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
