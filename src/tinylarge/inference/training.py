"""Server-side training and batched prediction as backend tasks (plain PyTorch).

The inference modes train the models they serve at the server (billed to the
server): a tiny and a large model for the cascade, a multi-exit network for
early exits, the split model. Each job is a frozen task handed to
``ctx.backend.map`` with a module-level function, deterministic given the task
(one intra-op thread unless ``threads`` says otherwise, a generator seeded from
the task), so the sequential and Ray backends give the same weights.

A model returning ``(N, E, K)`` logits (an early-exit network) trains with the
joint loss ``sum_e w_e * CE(exit_e)`` of BranchyNet (Teerapittayanon et al.,
ICPR 2016, https://arxiv.org/abs/1709.01686); ``(N, K)`` with cross-entropy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from tinylarge.sim.client import TrainSettings, Weights, get_weights, make_optimizer, set_weights


class NetSpec(Protocol):
    """Anything that builds a network (a zoo ``ModelSpec``, an ``EarlyExitSpec``)."""

    def build(self) -> nn.Module: ...


def init_weights(net: NetSpec, *, seed: int) -> Weights:
    """Initial weights of ``net``, deterministic in ``seed``."""
    torch.manual_seed(seed)
    return get_weights(net.build())


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
    weights: Weights
    opt_state: dict[str, Any]
    loss: float
    samples: int


def joint_loss(out: torch.Tensor, y: torch.Tensor, exit_weights: tuple[float, ...]) -> torch.Tensor:
    """Cross-entropy; for ``(N, E, K)`` outputs the weighted sum over exits."""
    if out.ndim == 2:
        return nn.functional.cross_entropy(out, y)
    weights = exit_weights or (1.0,) * out.shape[1]
    if len(weights) != out.shape[1]:
        raise ValueError(f"{len(weights)} exit weights for {out.shape[1]} exits")
    terms = [w * nn.functional.cross_entropy(out[:, e], y) for e, w in enumerate(weights)]
    return torch.stack(terms).sum()


def train(task: TrainTask, x: np.ndarray, y: np.ndarray) -> TrainResult:
    """Train a copy of ``task.net`` on ``x[task.indices]``; return weights and optimizer state."""
    torch.set_num_threads(task.threads)
    torch.manual_seed(task.seed)
    model = task.net.build()
    set_weights(model, task.weights)
    model.train()
    opt = make_optimizer(model, task.settings)
    if task.opt_state is not None:
        opt.load_state_dict(task.opt_state)
    xs = torch.from_numpy(np.ascontiguousarray(x[task.indices]))
    ys = torch.from_numpy(np.ascontiguousarray(y[task.indices]))
    gen = torch.Generator().manual_seed(task.seed)
    n = len(task.indices)
    bs = task.settings.batch_size
    total, batches = 0.0, 0
    for _ in range(task.epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, bs):
            idx = order[i : i + bs]
            opt.zero_grad(set_to_none=True)
            loss = joint_loss(model(xs[idx]), ys[idx], task.exit_weights)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            total += float(loss.detach())
            batches += 1
    return TrainResult(
        weights=get_weights(model),
        opt_state=opt.state_dict(),
        loss=total / max(batches, 1),
        samples=n * task.epochs,
    )


@dataclass(frozen=True)
class PredictTask:
    """Logits of ``net`` on ``x`` (given), or on the backend's training set at ``indices``."""

    net: NetSpec
    weights: Weights
    x: np.ndarray | None = None
    indices: np.ndarray | None = None
    batch_size: int = 1024
    threads: int = 1


@torch.no_grad()
def predict(task: PredictTask, x_train: np.ndarray, y_train: np.ndarray) -> np.ndarray:
    """float32 logits, ``(n, K)`` or ``(n, E, K)``, in eval mode."""
    torch.set_num_threads(task.threads)
    model = task.net.build()
    set_weights(model, task.weights)
    model.eval()
    x = task.x if task.x is not None else x_train[np.asarray(task.indices)]
    outs = []
    for i in range(0, len(x), task.batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(x[i : i + task.batch_size]))
        outs.append(model(xb).numpy())
    if not outs:
        return np.zeros((0,), dtype=np.float32)
    return np.concatenate(outs).astype(np.float32)
