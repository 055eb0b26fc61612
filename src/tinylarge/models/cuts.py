"""Where a model can be cut: one rule for split learning, FedGKT, transfer and split inference.

A deployed model fuses a convolution (or a linear layer) with its BatchNorm and
activation into one operator, so a model can only be cut where such a group
ends: after an activation or a pooling layer, or after a block whose last
sub-module is one (ResNet blocks end in ReLU). Never between a convolution and
its BatchNorm/ReLU, and never after a pure view (``Flatten``), which carries the
same data as the cut before it.

The zoo's chain models (``mlp``, ``cnn-tiny``, ``cnn-large``, ``ds-cnn``,
``cnn1d``, ``cnn-mcmahan``, ``resnet-small``) are ``nn.Sequential``; a cut
``k`` puts children ``[0, k)`` on one side (the device, the frozen prefix, the
extractor) and ``[k, n)`` on the other. Who uses it:

- split learning and SplitFed (:func:`cut_points`): both sides must hold
  parameters (a device side without any is "send the raw data", a server side
  without any is federated learning);
- FedGKT (:func:`extractor_cut`): the device's feature extractor ends at the
  cut before its second weight layer, as the reference's ResNet-8 extractor
  is its first conv stage;
- transfer learning (:func:`suffix_cuts`): a device trains a suffix of the
  pre-trained model that starts at a cut;
- split inference (:func:`ends_group`): a partition of the operator graph may
  only separate a node from its successor where the node ends a group.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from tinylarge.errors import TinylargeError

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


def ends_group(module: nn.Module) -> bool:
    """Whether a model may be cut right after ``module`` (see the module docstring)."""
    if isinstance(module, CUT_AFTER):
        return True
    children = list(module.children())
    return bool(children) and ends_group(children[-1])


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
    model: nn.Module, *, input_shape: Sequence[int], name: str = "model", required: bool = True
) -> list[CutPoint]:
    """Every allowed cut of a chain model, in order (see the module docstring); a model with
    none is a user error unless ``required`` is False.

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
        if ends_group(children[k - 1]) and _has_params(children[:k]) and _has_params(children[k:])
    ]
    if not out and required:
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


#: Layers whose weights make a "weight layer" (what FedGKT counts to place its extractor).
WEIGHT_LAYERS: tuple[type[nn.Module], ...] = (nn.modules.conv._ConvNd, nn.Linear)


def extractor_cut(model: nn.Module, *, input_shape: Sequence[int], name: str = "model") -> int:
    """FedGKT's default extractor: children before the last cut at or before the second
    conv/linear child (the first conv stage, with its activation and pooling)."""
    children = list(as_chain(model, name=name).children())
    weights = [i for i, child in enumerate(children) if isinstance(child, WEIGHT_LAYERS)]
    if len(weights) < 2:
        raise TinylargeError(
            f"model {name!r} needs at least two conv/linear layers for a feature extractor"
        )
    before = [c.index for c in cut_points(model, input_shape=input_shape, name=name)]
    allowed = [k for k in before if k <= weights[1]]
    if not allowed:
        raise TinylargeError(f"model {name!r} has no cut before its second weight layer")
    return allowed[-1]


def suffix_cuts(model: nn.Module, *, input_shape: Sequence[int], name: str = "model") -> list[int]:
    """Where a trainable suffix may start: 0 (the whole model), then for every smaller set of
    trainable layers the last cut that leaves exactly that set in the suffix, in order (only
    ``[0]`` for a model without a cut point).

    >>> from tinylarge.models.zoo import build_model
    >>> suffix_cuts(build_model("cnn-tiny", input_shape=(1, 8, 8), num_classes=10),
    ...             input_shape=(1, 8, 8))
    [0, 3, 6]
    """
    children = list(as_chain(model, name=name).children())

    def trained_from(k: int) -> tuple[int, ...]:
        return tuple(i for i in range(k, len(children)) if _has_params(children[i : i + 1]))

    latest: dict[tuple[int, ...], int] = {}
    for point in cut_points(model, input_shape=input_shape, name=name, required=False):
        if trained_from(point.index) != trained_from(0):
            latest[trained_from(point.index)] = point.index
    return [0, *sorted(latest.values())]
