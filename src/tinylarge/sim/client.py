"""Local training on one client: a pure function every backend calls.

A :class:`FitTask` carries everything a worker needs (model spec, starting
weights, the client's sample indices, hyper-parameters, a seed), so the same
function runs in-process (sequential backend) or in a Ray worker and gives
the same weights for the same task. Scheme-specific local objectives
(FedProx's proximal term, ...) are registered *trainers*: small loss
functions looked up by name, never branches inside the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from tinylarge.registry import Registry

Weights = list[np.ndarray]


@dataclass(frozen=True)
class ModelSpec:
    """How to build a zoo model: name, input shape (no batch), classes, options."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    options: dict[str, Any] = field(default_factory=dict)

    def build(self) -> nn.Module:
        from tinylarge.models.zoo import build_model

        return build_model(
            self.name, input_shape=self.input_shape, num_classes=self.num_classes, **self.options
        )


@dataclass(frozen=True)
class TrainSettings:
    """Local optimisation settings shared by all clients of a run."""

    epochs: int = 1
    batch_size: int = 32
    lr: float = 0.05
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0


@dataclass(frozen=True)
class FitTask:
    """One client's local training job in one round."""

    client: int
    round: int
    seed: int
    spec: ModelSpec
    weights: Weights
    indices: np.ndarray
    settings: TrainSettings
    trainer: str = "erm"
    trainer_options: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class FitResult:
    """What a client sends back: new weights, its sample count and mean training loss."""

    client: int
    weights: Weights
    num_samples: int
    loss: float


#: A trainer maps (model, inputs, labels, starting params, options) to a loss tensor.
LossFn = Callable[
    [nn.Module, torch.Tensor, torch.Tensor, list[torch.Tensor], dict[str, float]], torch.Tensor
]
TRAINERS: Registry[LossFn] = Registry("trainer")


@TRAINERS.register("erm")
def erm_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    start: list[torch.Tensor],
    options: dict[str, float],
) -> torch.Tensor:
    """Plain empirical risk: cross-entropy on the local batch (FedAvg)."""
    return nn.functional.cross_entropy(model(x), y)


@TRAINERS.register("prox")
def prox_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    start: list[torch.Tensor],
    options: dict[str, float],
) -> torch.Tensor:
    """FedProx local objective: cross-entropy plus ``mu/2 * ||w - w_global||^2``.

    Li et al., "Federated Optimization in Heterogeneous Networks", MLSys 2020,
    https://arxiv.org/abs/1812.06127
    """
    mu = options["mu"]
    prox = sum(((p - s) ** 2).sum() for p, s in zip(model.parameters(), start, strict=True))
    return nn.functional.cross_entropy(model(x), y) + 0.5 * mu * prox


def get_weights(model: nn.Module) -> Weights:
    """The model's state (parameters and buffers) as numpy arrays in state-dict order."""
    return [t.detach().cpu().numpy().copy() for t in model.state_dict().values()]


def set_weights(model: nn.Module, weights: Weights) -> None:
    keys = list(model.state_dict().keys())
    if len(keys) != len(weights):
        raise ValueError(f"model has {len(keys)} tensors, got {len(weights)}")
    state = {k: torch.from_numpy(np.asarray(w).copy()) for k, w in zip(keys, weights, strict=True)}
    model.load_state_dict(state)


def make_optimizer(model: nn.Module, s: TrainSettings) -> torch.optim.Optimizer:
    if s.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    momentum = s.momentum if s.optimizer == "momentum" else 0.0
    return torch.optim.SGD(
        model.parameters(), lr=s.lr, momentum=momentum, weight_decay=s.weight_decay
    )


def fit(task: FitTask, x: np.ndarray, y: np.ndarray) -> FitResult:
    """Train a fresh copy of the model on ``x[task.indices]`` and return its weights.

    Deterministic for a given task: one intra-op thread and a generator seeded
    from ``task.seed`` for shuffling.
    """
    torch.set_num_threads(1)
    torch.manual_seed(task.seed)
    model = task.spec.build()
    set_weights(model, task.weights)
    model.train()
    start = [p.detach().clone() for p in model.parameters()]
    opt = make_optimizer(model, task.settings)
    loss_fn = TRAINERS[task.trainer]
    xs = torch.from_numpy(np.ascontiguousarray(x[task.indices]))
    ys = torch.from_numpy(np.ascontiguousarray(y[task.indices]))
    gen = torch.Generator().manual_seed(task.seed)
    n = len(task.indices)
    bs = task.settings.batch_size
    total, batches = 0.0, 0
    for _ in range(task.settings.epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, bs):
            idx = order[i : i + bs]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model, xs[idx], ys[idx], start, task.trainer_options)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            total += float(loss.detach())
            batches += 1
    return FitResult(
        client=task.client,
        weights=get_weights(model),
        num_samples=n,
        loss=total / max(batches, 1),
    )


@torch.no_grad()
def evaluate(
    spec: ModelSpec, weights: Weights, x: np.ndarray, y: np.ndarray, *, batch_size: int = 1024
) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of the model on ``(x, y)``."""
    torch.set_num_threads(1)
    model = spec.build()
    set_weights(model, weights)
    model.eval()
    correct, loss = 0, 0.0
    for i in range(0, len(y), batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size]))
        yb = torch.from_numpy(np.ascontiguousarray(y[i : i + batch_size]))
        out = model(xb)
        loss += float(nn.functional.cross_entropy(out, yb, reduction="sum"))
        correct += int((out.argmax(1) == yb).sum())
    n = max(len(y), 1)
    return correct / n, loss / n
