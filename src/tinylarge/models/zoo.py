"""Model zoo: tiny models for devices and large models for servers, built by name.

>>> from tinylarge.models.zoo import build_model
>>> model = build_model("cnn-tiny", input_shape=(1, 28, 28), num_classes=10)

Every builder takes the input shape without the batch dimension and the number
of classes, plus its own keyword options (``width``, ``hidden``, ...), and
raises :class:`~tinylarge.errors.TinylargeError` for a shape it cannot take.

Tiny tier (fits a microcontroller at int8):

- ``mlp``: flatten -> hidden layers -> classes; any input shape.
- ``cnn-tiny``: two 3x3 conv + max-pool stages and a linear head, for small
  images ``(C, H, W)`` with H, W >= 4 (8x8 digits, 28x28 Fashion-MNIST).
- ``ds-cnn``: the depthwise-separable CNN of the MLPerf Tiny keyword-spotting
  benchmark (Zhang et al., "Hello Edge", arXiv:1711.07128) for MFCC features
  ``(1, T, n_mfcc)``; at ``(1, 49, 10)`` and width 64 it has the reference
  model's 2.66 M MACs. ``width`` and ``blocks`` scale it.
- ``cnn1d``: 1-D CNN over sensor windows ``(C, L)`` or tabular features
  ``(F,)`` (read as one channel of length F).
- ``cnn-mcmahan``: the "CNN" of McMahan et al. 2017, the FedAvg paper
  ("Communication-Efficient Learning of Deep Networks from Decentralized
  Data", https://arxiv.org/abs/1602.05629): two 5x5 convs (32, 64 channels,
  each with ReLU and 2x2 max-pool), a 512-unit ReLU layer and a linear
  output; 1,663,370 parameters and about 12.3 M MACs on 28x28 MNIST. A phone
  or SBC trains it; at int8 it also fits a large MCU's flash for inference.

Large tier (edge/cloud teachers and server-side models):

- ``cnn-large``: three VGG-style stages of two 3x3 conv + BN + ReLU (32, 64,
  128 channels by default), global average pooling and a linear head.
- ``resnet-small``: the ResNet-8 of the MLPerf Tiny image-classification
  benchmark (He et al., arXiv:1512.03385; three residual stacks of 16/32/64
  channels); at ``(3, 32, 32)`` it has the reference model's 12.5 M MACs.

Options have one range each (:data:`OPTION_RANGES`): ``width`` 1..512
channels, ``hidden`` 1..4096 units (the MLP takes a list of at most 8 hidden
layers), ``blocks`` 1..64. That is far beyond any tiny model, yet the largest
model they allow on 28x28 images, the largest input of any dataset
(cnn-mcmahan at width 512 with 4096 hidden units: 219 M parameters), is 0.9 GB
at fp32 and still builds. The config (``tinylarge validate``) and
:func:`build_model` check options with the same model (:func:`options_model`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field

from tinylarge import bounds
from tinylarge.errors import TinylargeError
from tinylarge.registry import Registry

if TYPE_CHECKING:  # the zoo's names load without PyTorch; builders import it when called
    from torch import nn

Builder = Callable[..., "nn.Module"]

#: Most channels a ``width`` may ask for, hidden units a ``hidden`` layer, repeated blocks.
MAX_WIDTH, MAX_HIDDEN, MAX_BLOCKS = 512, 4096, 64
#: Most hidden layers of an MLP.
MAX_HIDDEN_LAYERS = 8
Units = Annotated[int, Field(ge=1, le=MAX_HIDDEN)]
#: The MLP's ``hidden``: one width or a list of widths (a single width is a list of one).
HiddenLayers = Annotated[
    list[Units],
    BeforeValidator(lambda v: v if isinstance(v, (list, tuple)) else [v]),
    Field(max_length=MAX_HIDDEN_LAYERS),
]
#: The range of every builder option, by name (a builder may override one, see ``mlp``).
OPTION_RANGES: dict[str, Any] = {
    "width": Annotated[int, Field(ge=1, le=MAX_WIDTH)],
    "hidden": Units,
    "blocks": Annotated[int, Field(ge=1, le=MAX_BLOCKS)],
}


@dataclass(frozen=True)
class ZooEntry:
    """A zoo entry.

    Attributes:
        name: registry name.
        tier: ``"tiny"`` (device-side) or ``"large"`` (server-side).
        description: one line for people.
        default_input_shape: input shape without the batch dimension used when
            none is given (``tinylarge profile``).
        builder: ``(input_shape, num_classes, **options) -> nn.Module``.
    """

    name: str
    tier: Literal["tiny", "large"]
    description: str
    default_input_shape: tuple[int, ...]
    builder: Builder
    #: Ranges of this builder's options that differ from :data:`OPTION_RANGES`.
    ranges: Mapping[str, Any] = field(default_factory=dict)


#: The zoo, by name.
MODELS: Registry[ZooEntry] = Registry("model")


def _register(
    name: str,
    *,
    tier: Literal["tiny", "large"],
    description: str,
    default: tuple[int, ...],
    ranges: Mapping[str, Any] | None = None,
) -> Callable[[Builder], Builder]:
    def deco(builder: Builder) -> Builder:
        MODELS.add(name, ZooEntry(name, tier, description, default, builder, dict(ranges or {})))
        return builder

    return deco


@functools.cache
def options_model(name: str) -> type[BaseModel]:
    """The pydantic model of zoo model ``name``'s builder options: defaults from the
    builder's signature, ranges from :data:`OPTION_RANGES`; unknown options are refused."""
    entry = MODELS[name]
    ranges = {**OPTION_RANGES, **entry.ranges}
    return bounds.signature_model(name, entry.builder, ranges, skip=("input_shape", "num_classes"))


def check_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` of zoo model ``name``, checked and converted (``hidden: 8.0`` becomes 8),
    or a :class:`~tinylarge.errors.TinylargeError` of one line naming the option and range."""
    return bounds.check_options(options_model(name), options, what=f"model {name!r}")


def model_names() -> list[str]:
    """Sorted names of the zoo models."""
    return MODELS.names()


@dataclass(frozen=True)
class ModelSpec:
    """How to build one zoo model: name, input shape (no batch), classes and builder options.

    Plain data (picklable), so a backend task can carry it and build the model where it runs.

    >>> ModelSpec("mlp", (1, 8, 8), 10, {"hidden": 16}).build()[1]
    Linear(in_features=64, out_features=16, bias=True)
    """

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    options: dict[str, Any] = field(default_factory=dict)

    def build(self) -> nn.Module:
        return build_model(
            self.name, input_shape=self.input_shape, num_classes=self.num_classes, **self.options
        )


def build_model(
    name: str, *, input_shape: Sequence[int], num_classes: int, **options: Any
) -> nn.Module:
    """Build zoo model ``name`` for inputs of ``input_shape`` (no batch dim).

    Raises:
        UnknownNameError: ``name`` is not in the zoo.
        TinylargeError: the shape, class count or an option is invalid.
    """
    spec = MODELS[name]
    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d < 1 for d in shape):
        raise TinylargeError(f"input_shape must be positive integers, got {tuple(input_shape)}")
    if num_classes < 1:
        raise TinylargeError(f"num_classes must be >= 1, got {num_classes}")
    options = check_options(name, options)
    try:
        return spec.builder(input_shape=shape, num_classes=num_classes, **options)
    except TinylargeError:
        raise
    except (TypeError, ValueError) as exc:
        raise TinylargeError(f"invalid options {options} for model {name!r}: {exc}") from None


def _expect_rank(name: str, shape: tuple[int, ...], ranks: Sequence[int], layout: str) -> None:
    if len(shape) not in ranks:
        raise TinylargeError(f"model {name!r} takes inputs shaped {layout}, got {shape}")


@_register(
    "mlp",
    tier="tiny",
    description="flatten -> hidden ReLU layers -> classes; any input shape",
    default=(1, 28, 28),
    ranges={"hidden": HiddenLayers},
)
def build_mlp(
    *, input_shape: tuple[int, ...], num_classes: int, hidden: int | Sequence[int] = 64
) -> nn.Module:
    """Multi-layer perceptron over the flattened input; ``hidden``: width(s) of hidden layers."""
    from torch import nn

    sizes = [int(hidden)] if isinstance(hidden, int) else [int(h) for h in hidden]
    layers: list[nn.Module] = [nn.Flatten()]
    features = math.prod(input_shape)
    for width in sizes:
        layers += [nn.Linear(features, width), nn.ReLU()]
        features = width
    layers.append(nn.Linear(features, num_classes))
    return nn.Sequential(*layers)


@_register(
    "cnn-tiny",
    tier="tiny",
    description="2 x (3x3 conv, ReLU, 2x2 max-pool) + linear; small images (C, H, W)",
    default=(1, 28, 28),
)
def build_cnn_tiny(*, input_shape: tuple[int, ...], num_classes: int, width: int = 16) -> nn.Module:
    """Small image CNN: ``width`` then ``2 * width`` channels, 2x2 pooling after each conv."""
    from torch import nn

    _expect_rank("cnn-tiny", input_shape, (3,), "(C, H, W)")
    channels, height, wide = input_shape
    if height < 4 or wide < 4:
        raise TinylargeError(f"model 'cnn-tiny' needs H, W >= 4, got {input_shape}")
    flat = 2 * width * (height // 4) * (wide // 4)
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(flat, num_classes),
    )


def _conv_bn_relu(
    cin: int, cout: int, kernel: int | tuple[int, int], **conv: Any
) -> list[nn.Module]:
    from torch import nn

    return [nn.Conv2d(cin, cout, kernel, bias=False, **conv), nn.BatchNorm2d(cout), nn.ReLU()]


def _same_padding(size: int, kernel: int, stride: int) -> int:
    """Symmetric padding giving TensorFlow's ``"same"`` output size ceil(size / stride)."""
    out = -(-size // stride)
    return -(-max((out - 1) * stride + kernel - size, 0) // 2)


@_register(
    "ds-cnn",
    tier="tiny",
    description="depthwise-separable CNN for MFCC features (1, T, n_mfcc), MLPerf Tiny KWS",
    default=(1, 49, 10),
)
def build_ds_cnn(
    *, input_shape: tuple[int, ...], num_classes: int, width: int = 64, blocks: int = 4
) -> nn.Module:
    """DS-CNN: a 10x4 stride-2 conv, ``blocks`` depthwise-separable blocks, average pool."""
    from torch import nn

    _expect_rank("ds-cnn", input_shape, (3,), "(C, T, n_mfcc)")
    channels, frames, coeffs = input_shape
    kernel = (min(10, frames), min(4, coeffs))
    stride = (2 if frames >= 2 else 1, 2 if coeffs >= 2 else 1)
    padding = tuple(
        _same_padding(size, k, s)
        for size, k, s in zip((frames, coeffs), kernel, stride, strict=True)
    )
    layers: list[nn.Module] = _conv_bn_relu(channels, width, kernel, stride=stride, padding=padding)
    for _ in range(blocks):
        layers += _conv_bn_relu(width, width, 3, padding=1, groups=width)
        layers += _conv_bn_relu(width, width, 1)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes)]
    return nn.Sequential(*layers)


@_register(
    "cnn1d",
    tier="tiny",
    description="1-D CNN for sensor windows (C, L) or tabular features (F,)",
    default=(41,),
)
def build_cnn1d(*, input_shape: tuple[int, ...], num_classes: int, width: int = 16) -> nn.Module:
    """Two 1-D convs (``width``, ``2 * width`` channels), max-pool, global average pool."""
    from torch import nn

    from tinylarge.models.layers import Unsqueeze

    _expect_rank("cnn1d", input_shape, (1, 2), "(F,) or (C, L)")
    channels, length = (1, input_shape[0]) if len(input_shape) == 1 else input_shape
    if length < 2:
        raise TinylargeError(f"model 'cnn1d' needs a length >= 2, got {input_shape}")
    head: list[nn.Module] = [Unsqueeze(1)] if len(input_shape) == 1 else []
    return nn.Sequential(
        *head,
        nn.Conv1d(channels, width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool1d(2),
        nn.Conv1d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
        nn.Linear(2 * width, num_classes),
    )


@_register(
    "cnn-mcmahan",
    tier="tiny",
    description="McMahan et al. 2017 FedAvg CNN: 2 x (5x5 conv, ReLU, max-pool), 512 ReLU, linear",
    default=(1, 28, 28),
)
def build_cnn_mcmahan(
    *, input_shape: tuple[int, ...], num_classes: int, width: int = 32, hidden: int = 512
) -> nn.Module:
    """The FedAvg paper's CNN (https://arxiv.org/abs/1602.05629, section 3).

    Two 5x5 "same" convolutions of ``width`` and ``2 * width`` channels, each
    followed by ReLU and 2x2 max-pooling, a fully connected layer of
    ``hidden`` ReLU units and a linear layer to the classes (the softmax is
    in the loss). With the defaults at ``(1, 28, 28)`` and 10 classes it has
    the paper's 1,663,370 parameters.
    """
    from torch import nn

    _expect_rank("cnn-mcmahan", input_shape, (3,), "(C, H, W)")
    channels, height, wide = input_shape
    if height < 4 or wide < 4:
        raise TinylargeError(f"model 'cnn-mcmahan' needs H, W >= 4, got {input_shape}")
    flat = 2 * width * (height // 4) * (wide // 4)
    return nn.Sequential(
        nn.Conv2d(channels, width, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(flat, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


@_register(
    "cnn-large",
    tier="large",
    description="VGG-style CNN, 3 stages x 2 (3x3 conv, BN, ReLU), global pool; (C, H, W)",
    default=(1, 28, 28),
)
def build_cnn_large(
    *, input_shape: tuple[int, ...], num_classes: int, width: int = 32
) -> nn.Module:
    """Wider, deeper CNN: stages of ``width``, ``2 * width``, ``4 * width`` channels."""
    from torch import nn

    _expect_rank("cnn-large", input_shape, (3,), "(C, H, W)")
    cin, height, wide = input_shape
    layers: list[nn.Module] = []
    for stage in range(3):
        cout = width * 2**stage
        layers += _conv_bn_relu(cin, cout, 3, padding=1)
        layers += _conv_bn_relu(cout, cout, 3, padding=1)
        cin = cout
        if stage < 2 and height >= 2 and wide >= 2:
            layers.append(nn.MaxPool2d(2))
            height, wide = height // 2, wide // 2
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)


@_register(
    "resnet-small",
    tier="large",
    description="ResNet-8 (3 residual stacks, 16/32/64 ch), MLPerf Tiny IC; (C, H, W)",
    default=(3, 32, 32),
)
def build_resnet_small(
    *, input_shape: tuple[int, ...], num_classes: int, width: int = 16
) -> nn.Module:
    """ResNet-8: stem conv, stacks of ``width``, ``2 * width``, ``4 * width`` channels."""
    from torch import nn

    from tinylarge.models.layers import BasicBlock

    _expect_rank("resnet-small", input_shape, (3,), "(C, H, W)")
    channels = input_shape[0]
    return nn.Sequential(
        *_conv_bn_relu(channels, width, 3, padding=1),
        BasicBlock(width, width, 1),
        BasicBlock(width, 2 * width, 2),
        BasicBlock(2 * width, 4 * width, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * width, num_classes),
    )
