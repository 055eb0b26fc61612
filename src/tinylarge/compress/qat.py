"""Quantization-aware training (QAT) with straight-through fake quantization.

Jacob et al., "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", CVPR 2018, https://arxiv.org/abs/1712.05877
(the scheme TFLite's int8 format implements). During fine-tuning every
convolution and linear layer sees its weights and its input activations
rounded to the int8 grid the deployed model will use, and the gradient passes
straight through the rounding (inside the clipping range) — the model learns
weights that survive quantization.

The grid is the TFLite int8 scheme of :mod:`tinylarge.compress.quantize`:
weights per output channel symmetric in [-127, 127], activations per tensor
asymmetric in [-128, 127] with a range tracked by a moving min/max (averaging
constant 0.01, as PyTorch's QAT observers) started from a calibration pass.
The fake-quantizers are PyTorch's core ``torch.fake_quantize_per_*_affine``
operators (not ``torch.ao.quantization``).

The deployable artifact is then made by the same post-training path as without
QAT (:func:`strip_qat` returns the plain float model; ONNX Runtime's static
quantizer or the LiteRT converter quantizes it): the weight grid is a function
of the weights only, so the exported weights land on exactly the grid QAT
trained on, and activation ranges are recalibrated on the calibration set.
BatchNorm is folded into the preceding convolution before QAT (as deployed).
"""

from __future__ import annotations

import copy
import itertools

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from tinylarge.compress.quantize import ACT_QMAX, ACT_QMIN, MIN_SCALE, WEIGHT_QMAX

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BNS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval) with each BatchNorm folded into the conv/linear before it.

    Folds consecutive children of every ``nn.Sequential``; a folded BatchNorm
    becomes ``nn.Identity``. Other BatchNorms are left in place.
    """
    out = copy.deepcopy(model).eval()
    for module in out.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for prev, cur in itertools.pairwise(names):
            a, b = module._modules[prev], module._modules[cur]
            if isinstance(b, _BNS) and isinstance(a, _CONVS):
                module._modules[prev] = fuse_conv_bn_eval(a, b)
                module._modules[cur] = nn.Identity()
            elif isinstance(b, nn.BatchNorm1d) and isinstance(a, nn.Linear):
                module._modules[prev] = fuse_linear_bn_eval(a, b)
                module._modules[cur] = nn.Identity()
    return out


class ActFakeQuant(nn.Module):
    """Per-tensor asymmetric int8 fake quantization with a moving min/max range."""

    def __init__(self, averaging_constant: float = 0.01) -> None:
        super().__init__()
        self.averaging_constant = averaging_constant
        self.min_val: torch.Tensor
        self.max_val: torch.Tensor
        self.register_buffer("min_val", torch.tensor(float("inf")))
        self.register_buffer("max_val", torch.tensor(float("-inf")))
        #: When True (calibration), the range is the running min/max; else a moving average.
        self.calibrating = False

    def observe(self, x: torch.Tensor) -> None:
        lo, hi = x.detach().min(), x.detach().max()
        if self.calibrating or not torch.isfinite(self.min_val):
            self.min_val = torch.minimum(self.min_val, lo)
            self.max_val = torch.maximum(self.max_val, hi)
        else:
            c = self.averaging_constant
            self.min_val = self.min_val + c * (lo - self.min_val)
            self.max_val = self.max_val + c * (hi - self.max_val)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or self.calibrating:
            self.observe(x)
        if self.calibrating or not torch.isfinite(self.min_val):
            return x
        lo = float(min(self.min_val.item(), 0.0))
        hi = float(max(self.max_val.item(), 0.0))
        scale = max((hi - lo) / (ACT_QMAX - ACT_QMIN), MIN_SCALE)
        zero_point = int(np.clip(round(ACT_QMIN - lo / scale), ACT_QMIN, ACT_QMAX))
        return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, ACT_QMIN, ACT_QMAX)


def fake_quant_weight(weight: torch.Tensor) -> torch.Tensor:
    """Per-output-channel symmetric int8 fake quantization (axis 0), straight-through."""
    flat = weight.detach().reshape(weight.shape[0], -1)
    scale = (flat.abs().amax(dim=1) / WEIGHT_QMAX).clamp_min(MIN_SCALE).float()
    zero = torch.zeros(weight.shape[0], dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -WEIGHT_QMAX, WEIGHT_QMAX)


class QATLayer(nn.Module):
    """A conv or linear layer whose input and weights are fake-quantized."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer
        self.act = ActFakeQuant()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(x)
        layer = self.layer
        assert isinstance(layer.weight, torch.Tensor)
        w = fake_quant_weight(layer.weight)
        if isinstance(layer, nn.Linear):
            return nn.functional.linear(x, w, layer.bias)
        assert isinstance(layer, _CONVS)
        out: torch.Tensor = layer._conv_forward(x, w, layer.bias)
        return out


def prepare_qat(model: nn.Module, calibration: np.ndarray, *, batch_size: int = 256) -> nn.Module:
    """A QAT copy of ``model``: BatchNorm folded, conv/linear layers wrapped, ranges calibrated."""
    qat = fold_batchnorm(model)
    _wrap(qat)
    fakes = [m for m in qat.modules() if isinstance(m, ActFakeQuant)]
    for f in fakes:
        f.calibrating = True
    qat.eval()
    with torch.no_grad():
        for i in range(0, len(calibration), batch_size):
            qat(torch.from_numpy(np.ascontiguousarray(calibration[i : i + batch_size])))
    for f in fakes:
        f.calibrating = False
    return qat


def _wrap(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, (nn.Linear, *_CONVS)):
            setattr(module, name, QATLayer(child))
        else:
            _wrap(child)


def strip_qat(model: nn.Module) -> nn.Module:
    """The plain float model inside a :func:`prepare_qat` model (a copy, eval mode)."""
    out = copy.deepcopy(model)
    _unwrap(out)
    return out.eval()


def _unwrap(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, QATLayer):
            setattr(module, name, child.layer)
        else:
            _unwrap(child)
