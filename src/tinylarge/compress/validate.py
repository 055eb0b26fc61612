"""Validate/fix: layers a microcontroller runtime cannot run in int8, replaced where possible.

After Opacus' ``ModuleValidator`` (a registry of validators returning typed
errors and of fixers replacing what can be replaced). The target is TFLite
Micro's int8 kernel set (``MicroMutableOpResolver``: conv, depthwise conv,
fully connected, pooling, mean, add, mul, softmax, logistic, tanh, ReLU,
ReLU6, leaky ReLU, PReLU, ELU, hard-swish, reshape, quantize/dequantize, ...;
https://github.com/tensorflow/tflite-micro/blob/main/tensorflow/lite/micro/micro_mutable_op_resolver.h).

Each :class:`Rule` is registered under a PyTorch module type name. Its fixer
either preserves the function at inference (``exact``: dropout removed, an
adaptive pool with an integer ratio replaced by a plain pool) or approximates
it (GELU and other smooth activations replaced by ReLU: fine-tune afterwards).
Rules without a fixer (LayerNorm, GroupNorm, attention, GRU) are reported and
left for the user.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tinylarge.registry import Registry

#: Leaf layers with a TFLite Micro int8 kernel (or none needed after conversion).
SUPPORTED = frozenset(
    {
        "Conv1d",
        "Conv2d",
        "Linear",
        "BatchNorm1d",
        "BatchNorm2d",
        "ReLU",
        "ReLU6",
        "LeakyReLU",
        "PReLU",
        "ELU",
        "Hardswish",
        "Sigmoid",
        "Tanh",
        "Softmax",
        "MaxPool1d",
        "MaxPool2d",
        "AvgPool1d",
        "AvgPool2d",
        "Flatten",
        "Identity",
        "Unsqueeze",
        "ZeroPad2d",
    }
)

Fixer = Callable[[nn.Module, tuple[int, ...] | None], nn.Module | None]


@dataclass(frozen=True)
class Rule:
    """Why a layer type cannot run in int8 on the MCU runtime, and how to replace it.

    ``fixer(module, input_shape)`` returns the replacement, or ``None`` when
    this instance cannot be replaced; ``exact`` says whether the replacement
    computes the same function at inference. ``applies(module)`` narrows the
    rule to some instances (default: all of the type).
    """

    reason: str
    fix: str | None = None
    exact: bool = False
    fixer: Fixer | None = None
    applies: Callable[[nn.Module], bool] | None = None


@dataclass(frozen=True)
class Issue:
    """One layer that a microcontroller int8 runtime cannot run as it is."""

    layer: str
    kind: str
    reason: str
    fix: str | None
    exact: bool


RULES: Registry[Rule] = Registry("int8 layer rule")


def _relu(module: nn.Module, shape: tuple[int, ...] | None) -> nn.Module:
    return nn.ReLU()


def _identity(module: nn.Module, shape: tuple[int, ...] | None) -> nn.Module:
    return nn.Identity()


def _not_global(module: nn.Module) -> bool:
    size: Any = getattr(module, "output_size", 1)
    sizes = tuple(size) if isinstance(size, (tuple, list)) else (size,)
    return any(s != 1 for s in sizes)


def _adaptive_avg(module: nn.Module, shape: tuple[int, ...] | None) -> nn.Module | None:
    if shape is None:
        return None
    spatial = shape[1:]
    size: Any = getattr(module, "output_size", 1)
    raw = tuple(size) if isinstance(size, (tuple, list)) else (size,) * len(spatial)
    outs = tuple(int(s if o is None else o) for s, o in zip(spatial, raw, strict=True))
    if any(o == 0 or s % o for s, o in zip(spatial, outs, strict=True)):
        return None
    kernel = [s // o for s, o in zip(spatial, outs, strict=True)]
    if len(kernel) == 1:
        return nn.AvgPool1d(kernel[0], stride=kernel[0])
    if len(kernel) == 2:
        return nn.AvgPool2d((kernel[0], kernel[1]), stride=(kernel[0], kernel[1]))
    return None


for _name in ("GELU", "Mish", "Softplus", "SELU", "CELU", "SiLU"):
    RULES.add(
        _name,
        Rule(
            reason=f"{_name} has no int8 kernel in TFLite Micro",
            fix="replace with ReLU and fine-tune",
            fixer=_relu,
        ),
    )
for _name in ("Dropout", "Dropout1d", "Dropout2d", "AlphaDropout"):
    RULES.add(
        _name,
        Rule(reason="dropout is a training-only layer", fix="remove", exact=True, fixer=_identity),
    )
for _name in ("AdaptiveAvgPool1d", "AdaptiveAvgPool2d"):
    RULES.add(
        _name,
        Rule(
            reason="adaptive pooling to more than 1x1 has no TFLite Micro kernel "
            "(global pooling is MEAN)",
            fix="fixed average pool (input size a multiple of the output size)",
            exact=True,
            fixer=_adaptive_avg,
            applies=_not_global,
        ),
    )
for _name in ("LayerNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d"):
    RULES.add(_name, Rule(reason=f"{_name} has no int8 kernel in TFLite Micro"))
for _name in ("MultiheadAttention", "TransformerEncoderLayer", "GRU", "RNN"):
    RULES.add(_name, Rule(reason=f"{_name} has no int8 kernel in TFLite Micro"))


def _input_shapes(
    model: nn.Module, input_shape: Sequence[int] | None
) -> dict[str, tuple[int, ...]]:
    if input_shape is None:
        return {}
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = []
    for name, module in model.named_modules():
        if next(module.children(), None) is None:

            def hook(mod: nn.Module, args: tuple[torch.Tensor, ...], name: str = name) -> None:
                shapes[name] = tuple(args[0].shape[1:])

            hooks.append(module.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
    return shapes


def validate(model: nn.Module, *, input_shape: Sequence[int] | None = None) -> list[Issue]:
    """Every leaf layer of ``model`` an int8 microcontroller runtime cannot run as it is."""
    shapes = _input_shapes(model, input_shape)
    issues = []
    for name, module in model.named_modules():
        if next(module.children(), None) is not None:
            continue
        kind = type(module).__name__
        if kind in SUPPORTED:
            continue
        if kind in RULES:
            rule = RULES[kind]
            if rule.applies is not None and not rule.applies(module):
                continue
            fixable = rule.fixer is not None and (rule.fixer(module, shapes.get(name)) is not None)
            issues.append(Issue(name, kind, rule.reason, rule.fix if fixable else None, rule.exact))
        else:
            issues.append(Issue(name, kind, "no known TFLite Micro int8 kernel", None, False))
    return issues


def fix(
    model: nn.Module, *, input_shape: Sequence[int] | None = None
) -> tuple[nn.Module, list[Issue], list[Issue]]:
    """A copy of ``model`` with every fixable layer replaced: ``(model, fixed, remaining)``."""
    out = copy.deepcopy(model)
    shapes = _input_shapes(out, input_shape)
    fixed, remaining = [], []
    for issue in validate(out, input_shape=input_shape):
        rule = RULES[issue.kind] if issue.kind in RULES else None  # noqa: SIM401
        new = None
        if rule is not None and rule.fixer is not None:
            new = rule.fixer(out.get_submodule(issue.layer), shapes.get(issue.layer))
        if new is None:
            remaining.append(issue)
            continue
        parent_name, _, child = issue.layer.rpartition(".")
        setattr(out.get_submodule(parent_name), child, new)
        fixed.append(issue)
    return out, fixed, remaining
