"""Smashed data on the wire: its size and its compression.

Split learning (Gupta and Raskar 2018, https://arxiv.org/abs/1810.06060;
Vepakomma et al. 2018, https://arxiv.org/abs/1812.00564) runs the layers before
a cut (:mod:`tinylarge.models.cuts`) on the device and the rest on a server;
the activations at the cut ("smashed data") travel up, their gradients travel
down.

Compression of smashed data. ``fp16`` rounds to half precision; ``int8`` is a
per-tensor asymmetric quantize-dequantize (scale and zero point from the
tensor's min and max, 256 levels; one fp32 scale and one int32 zero point ride
along with each message). Both are applied in the forward pass; gradients pass
straight through (the straight-through estimator, Bengio et al. 2013,
https://arxiv.org/abs/1308.3432), which is exactly what a server receiving the
dequantized tensor and sending back fp32 gradients computes.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from tinylarge.errors import TinylargeError

Compression = Literal["fp32", "fp16", "int8"]
#: Bytes per element of smashed data at each compression.
BYTES_PER_ELEMENT: dict[str, int] = {"fp32": 4, "fp16": 2, "int8": 1}
#: Per-message int8 quantization parameters: an fp32 scale and an int32 zero point.
INT8_PARAM_BYTES = 8
#: Gradients travel at fp32.
GRADIENT_BYTES_PER_ELEMENT = 4


def label_bytes(num_classes: int) -> int:
    """Bytes of one label on the wire: uint8 up to 256 classes, else uint16."""
    return 1 if num_classes <= 256 else 2


def message_bytes(elements: int, *, compression: Compression) -> int:
    """Bytes of one smashed-data message of ``elements`` values (a whole batch)."""
    extra = INT8_PARAM_BYTES if compression == "int8" else 0
    return elements * BYTES_PER_ELEMENT[compression] + extra


def gradient_bytes(elements: int) -> int:
    """Bytes of the gradient message for ``elements`` smashed values (fp32)."""
    return elements * GRADIENT_BYTES_PER_ELEMENT


def quantize_dequantize_int8(x: torch.Tensor) -> torch.Tensor:
    """Per-tensor asymmetric int8 quantize-dequantize (256 levels over [min, max])."""
    lo = torch.clamp(x.min(), max=0.0)
    hi = torch.clamp(x.max(), min=0.0)
    scale = (hi - lo) / 255.0
    if float(scale) == 0.0:
        return x.clone()
    zero_point = torch.round(-lo / scale)
    q = torch.clamp(torch.round(x / scale) + zero_point, 0.0, 255.0)
    return (q - zero_point) * scale


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, mode: str) -> torch.Tensor:
        if mode == "fp16":
            return x.half().float()
        return quantize_dequantize_int8(x)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grads[0], None


def compress(x: torch.Tensor, mode: Compression) -> torch.Tensor:
    """Smashed data as the server receives it; gradients pass straight through."""
    if mode == "fp32":
        return x
    if mode not in BYTES_PER_ELEMENT:
        raise TinylargeError(f"unknown compression {mode!r}; known: fp16, fp32, int8")
    out: torch.Tensor = _StraightThrough.apply(x, mode)  # type: ignore[no-untyped-call]
    return out
