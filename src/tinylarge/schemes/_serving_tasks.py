"""The inference modes' server-side work as backend tasks: training and prediction.

The server trains the models a mode serves (the cascade's tiny and large model,
the early-exit network, the split model) and predicts with them. Each job is a
frozen task handed to ``ctx.backend.map`` with a module-level function,
deterministic given the task (its threads and seed), so every backend gives the
same weights. Training is the one training loop
(:func:`tinylarge.sim.training.run_steps`) with BranchyNet's joint loss
(:func:`tinylarge.inference.early_exit.joint_loss`: plain cross-entropy for a
model with one exit); the optimizer state travels with the task, so momentum and
Adam's moments carry over from round to round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from tinylarge.inference.early_exit import joint_loss
from tinylarge.models.weights import Weights, get_weights, set_weights
from tinylarge.sim.training import (
    TrainSettings,
    make_optimizer,
    predict_logits,
    run_steps,
    seeded,
    tensor,
)


class NetSpec(Protocol):
    """Anything that builds a network (a zoo ``ModelSpec``, an ``EarlyExitSpec``)."""

    def build(self) -> nn.Module: ...


@dataclass(frozen=True)
class TrainTask:
    """``epochs`` passes over ``x[indices]`` from ``weights`` (and optimizer state)."""

    net: NetSpec
    weights: Weights
    indices: np.ndarray
    settings: TrainSettings
    seed: int
    epochs: int = 1
    opt_state: dict[str, Any] | None = None
    exit_weights: tuple[float, ...] = ()
    threads: int = 1


@dataclass(frozen=True)
class TrainResult:
    """New weights and optimizer state, mean training loss, samples processed (epochs x rows)."""

    weights: Weights
    opt_state: dict[str, Any]
    loss: float
    samples: int


def train_net(task: TrainTask, x: np.ndarray, y: np.ndarray) -> TrainResult:
    """Train a copy of ``task.net`` on ``x[task.indices]`` with the one training loop
    (:func:`tinylarge.sim.training.run_steps`) and BranchyNet's joint loss
    (:func:`tinylarge.inference.early_exit.joint_loss`: cross-entropy for one exit)."""
    gen = seeded(task.seed, threads=task.threads)
    model = task.net.build()
    set_weights(model, task.weights)
    model.train()
    opt = make_optimizer(model, task.settings)
    if task.opt_state is not None:
        opt.load_state_dict(task.opt_state)
    xs, ys = tensor(x[task.indices]), tensor(y[task.indices])

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        return joint_loss(model(xs[idx]), ys[idx], task.exit_weights)

    stats = run_steps(
        loss_of, opt, n=len(task.indices), settings=task.settings, gen=gen, epochs=task.epochs
    )
    return TrainResult(
        weights=get_weights(model),
        opt_state=opt.state_dict(),
        loss=stats.loss,
        samples=len(task.indices) * task.epochs,
    )


@dataclass(frozen=True)
class PredictTask:
    """Logits of ``net`` on ``x`` (given), or on the backend's training set at ``indices``."""

    net: NetSpec
    weights: Weights
    x: np.ndarray | None = None
    indices: np.ndarray | None = None
    threads: int = 1


def predict_net(task: PredictTask, x_train: np.ndarray, y_train: np.ndarray) -> np.ndarray:
    """float32 logits, ``(n, K)`` or ``(n, E, K)``, in eval mode."""
    torch.set_num_threads(task.threads)
    model = task.net.build()
    set_weights(model, task.weights)
    x = task.x if task.x is not None else x_train[np.asarray(task.indices)]
    return predict_logits(model, x)
