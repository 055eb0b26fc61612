"""Pruning: unstructured magnitude pruning and structured channel pruning.

- Magnitude pruning (Han et al., "Learning both Weights and Connections for
  Efficient Neural Networks", NeurIPS 2015, https://arxiv.org/abs/1506.02626):
  the ``amount`` share of conv/linear weights with the smallest magnitude
  (one global threshold) is set to zero and kept at zero while fine-tuning
  (:func:`mask_hook` re-applies the masks after every optimizer step). The
  dense int8 artifact keeps its size; only a sparse or compressed encoding
  gains (:func:`sparsity` reports the zeros).
- Channel pruning (Li et al., "Pruning Filters for Efficient ConvNets", ICLR
  2017, https://arxiv.org/abs/1608.08710): in every conv/linear layer but the
  classifier the ``amount`` share of output channels (neurons) with the
  smallest L1 norm is removed, together with the matching inputs of the next
  layer, BatchNorm entries and depthwise channels. The result is a physically
  smaller ``nn.Sequential``: fewer MACs, bytes and activation SRAM.

Both are followed by fine-tuning (:func:`tinylarge.compress.train.train_model`,
with distillation from the teacher when there is one).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from tinylarge.compress.train import StepHook
from tinylarge.errors import TinylargeError

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BNS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
#: Layers that keep the channel dimension as it is.
_PASS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Identity,
    nn.Dropout,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
)

Masks = dict[str, np.ndarray]


def _w(module: nn.Module) -> torch.Tensor:
    """The ``weight`` of a conv/linear/BatchNorm layer."""
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    return weight


def _t(module: nn.Module, name: str) -> torch.Tensor | None:
    """A tensor attribute (``bias``, ``running_mean``, ...) or ``None``."""
    value = getattr(module, name)
    assert value is None or isinstance(value, torch.Tensor)
    return value


def _tt(module: nn.Module, name: str) -> torch.Tensor:
    value = _t(module, name)
    assert value is not None
    return value


def _prunable(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, *_CONVS))]


def magnitude_masks(model: nn.Module, *, amount: float) -> Masks:
    """Keep-masks (bool, weight-shaped) zeroing the ``amount`` smallest-magnitude weights.

    One global threshold over every conv/linear weight (biases are kept).
    """
    if not 0.0 <= amount < 1.0:
        raise TinylargeError(f"pruning amount must be in [0, 1), got {amount}")
    layers = _prunable(model)
    weights = {n: _w(m).detach().abs().numpy() for n, m in layers}
    flat = np.concatenate([w.ravel() for w in weights.values()]) if weights else np.zeros(0)
    k = math.floor(amount * flat.size)
    if k == 0:
        return {n: np.ones_like(w, dtype=bool) for n, w in weights.items()}
    order = np.argsort(flat, kind="stable")
    keep_flat = np.ones(flat.size, dtype=bool)
    keep_flat[order[:k]] = False
    masks: Masks = {}
    start = 0
    for n, w in weights.items():
        masks[n] = keep_flat[start : start + w.size].reshape(w.shape)
        start += w.size
    return masks


def apply_masks(model: nn.Module, masks: Masks) -> None:
    """Zero the pruned weights of ``model`` in place."""
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, mask in masks.items():
            weight = _w(modules[name])
            weight.mul_(torch.from_numpy(mask).to(weight.dtype))


def mask_hook(masks: Masks) -> StepHook:
    """A training hook that keeps pruned weights at zero after every step."""

    def hook(model: nn.Module) -> None:
        apply_masks(model, masks)

    return hook


def sparsity(model: nn.Module) -> float:
    """Share of conv/linear weights that are exactly zero."""
    total = zeros = 0
    for _, m in _prunable(model):
        total += _w(m).numel()
        zeros += int((_w(m) == 0).sum())
    return zeros / total if total else 0.0


def _input_shapes(model: nn.Sequential, input_shape: Sequence[int]) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []
    x = torch.zeros(1, *input_shape)
    with torch.no_grad():
        for layer in model:
            shapes.append(tuple(x.shape[1:]))
            x = layer(x)
    return shapes


def _l1_keep(weight: torch.Tensor, amount: float) -> list[int]:
    n = weight.shape[0]
    keep = max(1, n - math.floor(amount * n))
    norms = weight.detach().reshape(n, -1).abs().sum(dim=1).numpy()
    order = np.argsort(-norms, kind="stable")[:keep]
    return sorted(int(i) for i in order)


def prune_channels(
    model: nn.Module,
    *,
    input_shape: Sequence[int],
    amount: float = 0.5,
    keep: Sequence[Sequence[int]] | None = None,
) -> tuple[nn.Sequential, list[list[int]]]:
    """A physically smaller copy of a sequential model and the channels kept per layer.

    Removes the ``amount`` share of output channels (smallest L1 norm) of every
    conv/linear layer except the last; ``keep`` (as returned earlier) replays
    a previous selection instead, to rebuild a pruned model from a checkpoint.

    Raises:
        TinylargeError: the model is not an ``nn.Sequential`` of supported layers
            (conv, linear, BatchNorm, activations, pooling, flatten).
    """
    if not isinstance(model, nn.Sequential):
        raise TinylargeError(
            f"channel pruning needs a sequential model, got {type(model).__name__}; "
            "use magnitude pruning for models with skip connections"
        )
    if not 0.0 <= amount < 1.0:
        raise TinylargeError(f"pruning amount must be in [0, 1), got {amount}")
    layers = [copy.deepcopy(m) for m in model]
    shapes = _input_shapes(model, input_shape)
    producers = [i for i, m in enumerate(layers) if isinstance(m, (nn.Linear, *_CONVS))]
    last = producers[-1] if producers else -1
    chosen: list[list[int]] = []
    current: list[int] | None = None  # kept indices along dim 1 of the running tensor
    for i, layer in enumerate(layers):
        if isinstance(layer, _CONVS) and layer.groups > 1:
            layers[i] = _slice_depthwise(layer, current)
        elif isinstance(layer, (nn.Linear, *_CONVS)):
            if i == last:
                out_keep = list(range(_w(layer).shape[0]))
            elif keep is not None:
                out_keep = [int(c) for c in keep[len(chosen)]]
            else:
                out_keep = _l1_keep(_w(layer), amount)
            if i != last:
                chosen.append(out_keep)
            layers[i] = _slice_layer(layer, in_keep=current, out_keep=out_keep)
            current = out_keep
        elif isinstance(layer, _BNS):
            layers[i] = _slice_bn(layer, current)
        elif isinstance(layer, nn.Flatten):
            shape = shapes[i]
            if current is not None and len(shape) > 1:
                spatial = math.prod(shape[1:])
                current = [c * spatial + s for c in current for s in range(spatial)]
        elif type(layer).__name__ == "Unsqueeze" or isinstance(layer, _PASS):
            continue
        else:
            raise TinylargeError(
                f"channel pruning does not support layer {i} ({type(layer).__name__}); "
                "supported: conv, linear, BatchNorm, activations, pooling, flatten "
                "(use magnitude pruning for other models)"
            )
    return nn.Sequential(*layers), chosen


def _slice_layer(layer: nn.Module, *, in_keep: list[int] | None, out_keep: list[int]) -> nn.Module:
    weight = _w(layer).detach()[out_keep]
    if in_keep is not None:
        weight = weight[:, in_keep]
    old_bias = _t(layer, "bias")
    bias = None if old_bias is None else old_bias.detach()[out_keep]
    if isinstance(layer, nn.Linear):
        new: nn.Module = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    else:
        new = type(layer)(
            weight.shape[1],
            weight.shape[0],
            layer.kernel_size,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            bias=bias is not None,
            padding_mode=layer.padding_mode,
        )
    with torch.no_grad():
        _w(new).copy_(weight)
        if bias is not None:
            _tt(new, "bias").copy_(bias)
    return new


def _slice_depthwise(layer: nn.Module, keep: list[int] | None) -> nn.Module:
    if layer.groups != layer.in_channels or layer.out_channels != layer.in_channels:
        raise TinylargeError("channel pruning supports depthwise convolutions, not other groups")
    if keep is None:
        return layer
    new = type(layer)(
        len(keep),
        len(keep),
        layer.kernel_size,
        stride=layer.stride,
        padding=layer.padding,
        dilation=layer.dilation,
        groups=len(keep),
        bias=_t(layer, "bias") is not None,
        padding_mode=layer.padding_mode,
    )
    with torch.no_grad():
        _w(new).copy_(_w(layer).detach()[keep])
        if _t(layer, "bias") is not None:
            _tt(new, "bias").copy_(_tt(layer, "bias").detach()[keep])
    return new


def _slice_bn(layer: nn.Module, keep: list[int] | None) -> nn.Module:
    if keep is None:
        return layer
    new = type(layer)(len(keep), eps=layer.eps, momentum=layer.momentum)
    with torch.no_grad():
        _w(new).copy_(_w(layer).detach()[keep])
        _tt(new, "bias").copy_(_tt(layer, "bias").detach()[keep])
        _tt(new, "running_mean").copy_(_tt(layer, "running_mean")[keep])
        _tt(new, "running_var").copy_(_tt(layer, "running_var")[keep])
        _tt(new, "num_batches_tracked").copy_(_tt(layer, "num_batches_tracked"))
    return new
