"""Batched local training: many clients of one architecture trained at once on one core.

A tiny client's update is a handful of small matrix products; in a per-client
loop the Python and dispatch around them cost more than the arithmetic. Here
the parameters of ``G`` clients are stacked along a leading client dimension
and each layer runs once for all of them: a linear layer as one batched matrix
product (``torch.baddbmm``), a convolution as one grouped convolution with
``G`` groups. The summed loss of the clients back-propagates to every client's
own slice, and an SGD step (with momentum, Nesterov and weight decay, as
``torch.optim.SGD``) updates all slices at once.

The semantics are :func:`tinylarge.sim.training.fit`'s, client by client: each
client's shuffling generator is seeded from its task, it takes the same
mini-batches in the same order, its loss is the mean over its own batch (a
short last batch is padded, and the padding is masked out of the loss), and it
reports the same steps, examples and mean loss. Clients are grouped by their
number of steps, so no client steps on a batch it does not have. Results equal
the per-client loop's up to float rounding (tests/sim/test_batched.py).

What can be batched (:func:`batchable`): a model that is an ``nn.Sequential`` of the
layers in :data:`LAYERS` (the zoo's ``mlp`` and ``cnn-tiny``), the plain ``erm``
objective, SGD or momentum with a constant or cosine schedule, no DP-SGD and no
poisoned data. Anything else trains through :func:`~tinylarge.sim.training.fit`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from tinylarge.registry import Registry
from tinylarge.sim.training import FitResult, FitTask, fit, seeded, spec_key

#: Stacked tensors of a batch of clients flow through a layer in one of two layouts:
#: ``"rows"`` is ``[G, B, features...]`` (linear layers), ``"channels"`` is
#: ``[B, G * C, H, W]`` (grouped convolutions: client ``g``'s channels are ``g*C .. g*C+C-1``).
Layout = str


@dataclass
class Flow:
    """Activations of ``groups`` clients in ``layout``."""

    x: torch.Tensor
    layout: Layout
    groups: int

    def rows(self) -> torch.Tensor:
        """The activations as ``[G, B, ...]``."""
        if self.layout == "rows":
            return self.x
        b, gc = self.x.shape[:2]
        return self.x.reshape(b, self.groups, gc // self.groups, *self.x.shape[2:]).transpose(0, 1)

    def channels(self) -> torch.Tensor:
        """The activations as ``[B, G * C, H, W]``."""
        if self.layout == "channels":
            return self.x
        g, b = self.x.shape[:2]
        return self.x.transpose(0, 1).reshape(b, g * self.x.shape[2], *self.x.shape[3:])


#: How one layer runs on stacked parameters: (layer, flow, its stacked parameter tensors) ->
#: flow. Parameters are the layer's state-dict tensors, each with a leading client dimension.
StackedLayer = Callable[[nn.Module, Flow, list[torch.Tensor]], Flow]
LAYERS: Registry[StackedLayer] = Registry("batched layer")
_SUPPORTED: dict[type[nn.Module], str] = {}


def _layer(kind: type[nn.Module]) -> Callable[[StackedLayer], StackedLayer]:
    def add(fn: StackedLayer) -> StackedLayer:
        LAYERS.add(kind.__name__, fn)
        _SUPPORTED[kind] = kind.__name__
        return fn

    return add


@_layer(nn.Linear)
def _linear(layer: nn.Module, flow: Flow, params: list[torch.Tensor]) -> Flow:
    # out^T = W x^T, so the weight's gradient comes out of the batched product already in
    # the weight's own [G, out, in] layout (as x W^T it is a transposed view, and the SGD
    # update over a strided gradient was half of cnn-mcmahan's step)
    xt = flow.rows().transpose(1, 2)  # [G, in, B]
    if len(params) > 1:
        out = torch.baddbmm(params[1].unsqueeze(2), params[0], xt)
    else:
        out = torch.bmm(params[0], xt)
    return Flow(out.transpose(1, 2), "rows", flow.groups)


@_layer(nn.Conv2d)
def _conv2d(layer: nn.Module, flow: Flow, params: list[torch.Tensor]) -> Flow:
    assert isinstance(layer, nn.Conv2d)
    g = flow.groups
    weight = params[0].reshape(-1, *params[0].shape[2:])  # [G * out, in, k, k]
    bias = params[1].reshape(-1) if len(params) > 1 else None
    out = nn.functional.conv2d(
        # channels-last: oneDNN's grouped convolution writes channels-last output, on
        # which max-pooling runs several times faster than on NCHW (measured, 2.4x a step
        # of cnn-tiny with the ReLU/pool swap of _forward)
        flow.channels().contiguous(memory_format=torch.channels_last),
        weight,
        bias,
        stride=layer.stride,
        padding=layer.padding,
        dilation=layer.dilation,
        groups=g,
    )
    return Flow(out, "channels", g)


@_layer(nn.ReLU)
def _relu(layer: nn.Module, flow: Flow, params: list[torch.Tensor]) -> Flow:
    return Flow(torch.relu(flow.x), flow.layout, flow.groups)


@_layer(nn.MaxPool2d)
def _maxpool2d(layer: nn.Module, flow: Flow, params: list[torch.Tensor]) -> Flow:
    assert isinstance(layer, nn.MaxPool2d)
    out = nn.functional.max_pool2d(
        flow.channels(),
        layer.kernel_size,
        layer.stride,
        layer.padding,
        layer.dilation,
        ceil_mode=layer.ceil_mode,
    )
    return Flow(out, "channels", flow.groups)


@_layer(nn.Flatten)
def _flatten(layer: nn.Module, flow: Flow, params: list[torch.Tensor]) -> Flow:
    assert isinstance(layer, nn.Flatten)
    if layer.start_dim != 1 or layer.end_dim != -1:
        raise ValueError("only Flatten(1, -1) is batched")
    x = flow.rows()
    return Flow(x.reshape(x.shape[0], x.shape[1], -1), "rows", flow.groups)


def _forward(layers: list[nn.Module], params: list[list[torch.Tensor]], flow: Flow) -> Flow:
    """``flow`` through ``layers``; a ReLU followed by a max-pool runs as the pool, then the
    ReLU. ReLU is monotone, so ``maxpool(relu(x)) == relu(maxpool(x))``, and the gradients
    agree too, ties included: where a window's maximum is <= 0 both give zero. Pooling first
    applies the ReLU, forward and backward, to a quarter of the values."""
    i = 0
    while i < len(layers):
        layer = layers[i]
        if type(layer) is nn.ReLU and i + 1 < len(layers) and type(layers[i + 1]) is nn.MaxPool2d:
            pooled = _maxpool2d(layers[i + 1], flow, params[i + 1])
            flow = Flow(torch.relu(pooled.x), pooled.layout, pooled.groups)
            i += 2
            continue
        flow = LAYERS[type(layer).__name__](layer, flow, params[i])
        i += 1
    return flow


def _conv_ok(layer: nn.Module) -> bool:
    return not isinstance(layer, nn.Conv2d) or (
        layer.groups == 1 and layer.padding_mode == "zeros" and isinstance(layer.padding, tuple)
    )


_ARCH: dict[tuple[Any, ...], tuple[nn.Sequential, list[int]] | None] = {}


def _architecture(task: FitTask) -> tuple[nn.Sequential, list[int]] | None:
    """The task's model and its state-dict tensor count per layer, if every layer is batched."""
    key = spec_key(task.spec)
    if key not in _ARCH:
        model = task.spec.build()
        ok = isinstance(model, nn.Sequential) and all(
            type(m) in _SUPPORTED and _conv_ok(m) and not list(m.buffers()) for m in model
        )
        _ARCH[key] = None
        if ok and isinstance(model, nn.Sequential):
            _ARCH[key] = (model, [len(m.state_dict()) for m in model])
    return _ARCH[key]


def batchable(task: FitTask) -> bool:
    """Whether :func:`fit_batch` trains ``task`` (see the module docstring)."""
    s = task.settings
    return (
        task.trainer == "erm"
        and task.dpsgd is None
        and task.poison is None
        and s.optimizer in ("sgd", "momentum")
        and _architecture(task) is not None
    )


def group_key(task: FitTask) -> tuple[Any, ...]:
    """Tasks with equal keys train together: one architecture, settings and step count."""
    s = task.settings
    steps = s.epochs * math.ceil(len(task.indices) / s.batch_size)
    return (spec_key(task.spec), s, steps)


def fit_batch(tasks: Sequence[FitTask], x: np.ndarray, y: np.ndarray) -> list[FitResult]:
    """Train ``tasks`` (batchable, equal :func:`group_key`) at once; their results in order."""
    if not tasks:
        return []
    first = tasks[0]
    arch = _architecture(first)
    assert arch is not None, "fit_batch of a task batchable() refuses"
    model, counts = arch
    s = first.settings
    g, bs = len(tasks), s.batch_size
    sizes = [len(t.indices) for t in tasks]
    per_epoch = math.ceil(sizes[0] / bs)
    total_steps = s.epochs * per_epoch
    key = group_key(first)
    if any(t.spec is not first.spec and group_key(t) != key for t in tasks) or any(
        (t.settings is not s and t.settings != s) or math.ceil(n / bs) != per_epoch
        for t, n in zip(tasks, sizes, strict=True)
    ):
        raise ValueError("fit_batch trains tasks of one group_key only")
    if total_steps == 0:
        return [fit(t, x, y) for t in tasks]  # nothing to train: fit's zero-step results
    # stacked state: [G, *shape] per state-dict tensor, as float32 leaves
    shared = all(t.weights is first.weights for t in tasks)  # one global model: broadcast it
    stacked = [
        torch.from_numpy(np.asarray(w, dtype=np.float32)).expand(g, *np.shape(w)).clone()
        if shared
        else torch.from_numpy(np.stack([np.asarray(t.weights[i], np.float32) for t in tasks]))
        for i, w in enumerate(first.weights)
    ]
    for p in stacked:
        p.requires_grad_(True)
    layers = list(model)
    slices: list[list[torch.Tensor]] = []
    at = 0
    for c in counts:
        slices.append(stacked[at : at + c])
        at += c
    gens = [seeded(t.seed) for t in tasks]
    momentum = s.momentum if s.optimizer == "momentum" else 0.0
    bufs: list[torch.Tensor | None] = [None] * len(stacked)
    losses = torch.zeros(g, dtype=torch.float64)
    step = 0
    sizes_t = torch.tensor(sizes)
    for _ in range(s.epochs):
        orders = [torch.randperm(n, generator=gen) for n, gen in zip(sizes, gens, strict=True)]
        for k in range(per_epoch):
            lo = k * bs
            take = torch.clamp(sizes_t - lo, max=bs)  # this step's batch size per client
            width = int(take.max())
            idx = np.zeros((g, width), dtype=np.int64)
            for j, (t, order) in enumerate(zip(tasks, orders, strict=True)):
                part = order[lo : lo + width].numpy()
                idx[j, : len(part)] = t.indices[part]
            mask = (torch.arange(width).unsqueeze(0) < take.unsqueeze(1)).to(torch.float32)
            xb = torch.from_numpy(x[idx.reshape(-1)].reshape(g, width, *x.shape[1:]))
            yb = torch.from_numpy(y[idx.reshape(-1)].astype(np.int64, copy=False))
            logits = _forward(layers, slices, Flow(xb, "rows", g)).rows()
            per_sample = nn.functional.cross_entropy(
                logits.reshape(g * width, -1), yb, reduction="none"
            ).reshape(g, width)
            client_loss = (per_sample * mask).sum(1) / take.to(torch.float32)
            grads = torch.autograd.grad(client_loss.sum(), stacked)
            lr = s.lr
            if s.schedule == "cosine":
                lr = s.lr * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
            with torch.no_grad():
                for i, (p, grad) in enumerate(zip(stacked, grads, strict=True)):
                    d = grad if s.weight_decay == 0 else grad.add(p, alpha=s.weight_decay)
                    if momentum:
                        buf = bufs[i]
                        if buf is None:
                            buf = bufs[i] = d.clone()
                        else:
                            buf.mul_(momentum).add_(d)
                        d = d.add(buf, alpha=momentum) if s.nesterov else buf
                    p.sub_(d, alpha=lr)
            value = client_loss.detach().to(torch.float64)
            losses += value
            step += 1
    out: list[FitResult] = []
    state = [p.detach().numpy() for p in stacked]  # each client's weights: views of its rows
    for j, (t, n) in enumerate(zip(tasks, sizes, strict=True)):
        weights = [w[j] for w in state]
        mean_loss = float(losses[j]) / total_steps
        out.append(FitResult(t.client, weights, n, mean_loss, total_steps, s.epochs * n))
    return out


def plan(tasks: Sequence[FitTask], *, max_group: int = 256) -> list[list[int]]:
    """Positions of ``tasks`` in training groups: batchable tasks of one :func:`group_key`
    together (at most ``max_group`` a group), every other task alone."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    alone: list[list[int]] = []
    for i, t in enumerate(tasks):
        if batchable(t) and len(t.indices):
            groups.setdefault(group_key(t), []).append(i)
        else:
            alone.append([i])
    out = [m[j : j + max_group] for m in groups.values() for j in range(0, len(m), max_group)]
    return out + alone


def fit_group(tasks: Sequence[FitTask], x: np.ndarray, y: np.ndarray) -> list[FitResult]:
    """A group of :func:`plan`: one task through :func:`fit`, several through :func:`fit_batch`."""
    if len(tasks) == 1:
        return [fit(tasks[0], x, y)]
    return fit_batch(tasks, x, y)
