"""Cutting a chain model into device and server parts, and compressing smashed data.

Split learning (Gupta and Raskar 2018, https://arxiv.org/abs/1810.06060;
Vepakomma et al. 2018, https://arxiv.org/abs/1812.00564) runs the layers before
a *cut* on the device and the rest on a server; the activations at the cut
("smashed data") travel up, their gradients travel down.

Cut points. The zoo's chain models (``mlp``, ``cnn-tiny``, ``cnn-large``,
``ds-cnn``, ``cnn1d``, ``resnet-small``) are ``nn.Sequential``; a cut ``k``
puts children ``[0, k)`` on the device and ``[k, n)`` on the server. A cut is
allowed only after a child that ends in an activation or a pooling layer
(or a block whose last sub-module is one, as ResNet blocks end in ReLU):
never between a convolution and its BatchNorm/ReLU, which a deployed model
fuses into one operator, and never after a pure view (``Flatten``), which
carries the same data as the cut before it. Both sides must hold parameters:
a device side without any is "send the raw data", a server side without any
is federated learning.

Compression of smashed data. ``fp16`` rounds to half precision; ``int8`` is a
per-tensor asymmetric quantize-dequantize (scale and zero point from the
tensor's min and max, 256 levels; one fp32 scale and one int32 zero point ride
along with each message). Both are applied in the forward pass; gradients pass
straight through (the straight-through estimator, Bengio et al. 2013,
https://arxiv.org/abs/1308.3432), which is exactly what a server receiving the
dequantized tensor and sending back fp32 gradients computes.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from tinylarge.errors import TinylargeError

Compression = Literal["fp32", "fp16", "int8"]
#: Bytes per element of smashed data at each compression.
BYTES_PER_ELEMENT: dict[str, int] = {"fp32": 4, "fp16": 2, "int8": 1}
#: Per-message int8 quantization parameters: an fp32 scale and an int32 zero point.
INT8_PARAM_BYTES = 8
#: Gradients travel at fp32.
GRADIENT_BYTES_PER_ELEMENT = 4

#: Children after which a cut is allowed.
CUT_AFTER: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Hardswish,
    nn.Tanh,
    nn.Sigmoid,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
)


@dataclass(frozen=True)
class CutPoint:
    """One place a chain model may be cut.

    Attributes:
        index: children ``[0, index)`` run on the device.
        layer: the last device-side child, ``"<index>:<type>"``.
        output_shape: smashed data shape of one sample (no batch dimension).
    """

    index: int
    layer: str
    output_shape: tuple[int, ...]

    @property
    def elements(self) -> int:
        """Smashed-data elements per sample."""
        return math.prod(self.output_shape)


def _ends_at_boundary(module: nn.Module) -> bool:
    if isinstance(module, CUT_AFTER):
        return True
    children = list(module.children())
    return bool(children) and _ends_at_boundary(children[-1])


def _has_params(modules: Sequence[nn.Module]) -> bool:
    return any(p.numel() > 0 for m in modules for p in m.parameters())


def as_chain(model: nn.Module, *, name: str = "model") -> nn.Sequential:
    """``model`` as an ``nn.Sequential``, or a user error naming the problem."""
    if not isinstance(model, nn.Sequential):
        raise TinylargeError(
            f"model {name!r} is not a chain of layers (nn.Sequential); split learning needs one "
            "of the chain zoo models: mlp, cnn-tiny, cnn-large, ds-cnn, cnn1d, resnet-small"
        )
    return model


def cut_points(
    model: nn.Module, *, input_shape: Sequence[int], name: str = "model"
) -> list[CutPoint]:
    """Every allowed cut of a chain model, in order (see the module docstring).

    >>> from tinylarge.models.zoo import build_model
    >>> m = build_model("cnn-tiny", input_shape=(1, 28, 28), num_classes=10, width=8)
    >>> for c in cut_points(m, input_shape=(1, 28, 28)):
    ...     print(c.index, c.layer, c.output_shape)
    2 1:ReLU (8, 28, 28)
    3 2:MaxPool2d (8, 14, 14)
    5 4:ReLU (16, 14, 14)
    6 5:MaxPool2d (16, 7, 7)
    """
    chain = as_chain(model, name=name)
    children = list(chain.children())
    was_training = chain.training
    chain.eval()
    shapes: list[tuple[int, ...]] = []
    with torch.no_grad():
        h = torch.zeros((1, *(int(d) for d in input_shape)))
        for child in children:
            h = child(h)
            shapes.append(tuple(h.shape[1:]))
    chain.train(was_training)
    out = [
        CutPoint(
            index=k, layer=f"{k - 1}:{type(children[k - 1]).__name__}", output_shape=shapes[k - 1]
        )
        for k in range(1, len(children))
        if _ends_at_boundary(children[k - 1])
        and _has_params(children[:k])
        and _has_params(children[k:])
    ]
    if not out:
        raise TinylargeError(
            f"model {name!r} has no cut point (a cut needs parameters on both sides, after an "
            "activation or pooling layer); choose a deeper model, e.g. mlp with hidden: 64"
        )
    return out


def segments(model: nn.Module, cuts: Sequence[int]) -> list[nn.Sequential]:
    """The chain cut at ``cuts`` (increasing): ``len(cuts) + 1`` parts sharing its modules."""
    children = list(as_chain(model).children())
    bounds = [0, *cuts, len(children)]
    if any(a >= b for a, b in itertools.pairwise(bounds)):
        raise TinylargeError(f"cuts {list(cuts)} must increase within 1..{len(children) - 1}")
    return [nn.Sequential(*children[a:b]) for a, b in itertools.pairwise(bounds)]


def segment_of_tensors(model: nn.Module, cuts: Sequence[int]) -> list[int]:
    """For each state-dict entry of a chain ``model`` (in order), the index of its segment."""
    bounds = [*cuts, len(as_chain(model))]
    out = []
    for key in model.state_dict():
        child = int(key.split(".", 1)[0])
        out.append(next(i for i, b in enumerate(bounds) if child < b))
    return out


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
