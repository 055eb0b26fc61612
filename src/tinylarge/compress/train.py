"""The training loop every compression step shares: from scratch, distillation, fine-tuning.

One deterministic loop (a seeded generator shuffles, one intra-op thread
unless asked otherwise) trains a PyTorch module on numpy arrays. What differs
between the compression steps is plugged in, never branched on:

- the loss: cross-entropy, or Hinton's distillation loss when the teacher's
  logits are given (:mod:`tinylarge.compress.distill`);
- a hook after every optimizer step: magnitude pruning re-applies its masks
  there (:mod:`tinylarge.compress.prune`);
- the module itself: quantization-aware training passes a module with
  fake-quantizers (:mod:`tinylarge.compress.qat`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tinylarge.compress.distill import KDConfig, distillation_loss
from tinylarge.errors import TinylargeError

#: Called after every optimizer step with the model (e.g. to re-apply pruning masks).
StepHook = Callable[[nn.Module], None]


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How to train.

    Attributes:
        epochs: passes over the data.
        batch_size: samples per optimizer step.
        lr: learning rate.
        optimizer: ``"sgd"``, ``"momentum"`` (SGD with ``momentum``) or ``"adam"``.
        momentum: momentum of ``"momentum"``.
        weight_decay: L2 penalty.
        seed: seeds initial shuffling (and anything random in the module).
        threads: intra-op threads (1 keeps results independent of the machine).
        schedule: ``"constant"`` learning rate, or ``"cosine"`` decay to 0 over
            all steps (Loshchilov and Hutter, SGDR, https://arxiv.org/abs/1608.03983).
    """

    epochs: int = 1
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0
    threads: int = 1
    schedule: str = "constant"

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or not self.lr > 0:
            raise TinylargeError(
                f"training needs epochs >= 0, batch_size >= 1 and lr > 0, got {self}"
            )
        if self.optimizer not in ("sgd", "momentum", "adam"):
            raise TinylargeError(
                f"unknown optimizer {self.optimizer!r}; known: adam, momentum, sgd"
            )
        if self.schedule not in ("constant", "cosine"):
            raise TinylargeError(f"unknown schedule {self.schedule!r}; known: constant, cosine")


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    momentum = cfg.momentum if cfg.optimizer == "momentum" else 0.0
    return torch.optim.SGD(params, lr=cfg.lr, momentum=momentum, weight_decay=cfg.weight_decay)


def train_model(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    config: TrainConfig,
    teacher_logits: np.ndarray | None = None,
    kd: KDConfig | None = None,
    after_step: StepHook | None = None,
) -> float:
    """Train ``model`` in place on ``(x, y)``; return the mean loss of the last epoch.

    With ``teacher_logits`` (one row per sample of ``x``) the loss is the
    distillation loss of ``kd`` (default :class:`KDConfig`); otherwise
    cross-entropy on the labels.
    """
    if teacher_logits is not None and len(teacher_logits) != len(x):
        raise ValueError(f"{len(teacher_logits)} teacher logits for {len(x)} samples")
    if len(x) != len(y):
        raise ValueError(f"{len(x)} samples but {len(y)} labels")
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    xs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    ys = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
    ts = None if teacher_logits is None else torch.from_numpy(np.ascontiguousarray(teacher_logits))
    kd_cfg = kd or KDConfig()
    opt = make_optimizer(model, config)
    total_steps = config.epochs * math.ceil(len(xs) / config.batch_size)
    step = 0
    model.train()
    last = 0.0
    for _ in range(config.epochs):
        order = torch.randperm(len(xs), generator=gen)
        total, steps = 0.0, 0
        for i in range(0, len(xs), config.batch_size):
            idx = order[i : i + config.batch_size]
            if config.schedule == "cosine":
                for group in opt.param_groups:
                    group["lr"] = config.lr * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
            step += 1
            opt.zero_grad(set_to_none=True)
            out = model(xs[idx])
            if ts is None:
                loss = nn.functional.cross_entropy(out, ys[idx])
            else:
                loss = distillation_loss(
                    out, ts[idx], ys[idx], temperature=kd_cfg.temperature, alpha=kd_cfg.alpha
                )
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            if after_step is not None:
                after_step(model)
            total += float(loss.detach())
            steps += 1
        last = total / max(steps, 1)
    model.eval()
    return last


@torch.no_grad()
def predict_logits(
    model: nn.Module, x: np.ndarray, *, batch_size: int = 1024, threads: int = 1
) -> np.ndarray:
    """float32 logits of ``model`` (eval mode) on ``x``."""
    torch.set_num_threads(threads)
    model.eval()
    outs = [
        model(torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size]))).numpy()
        for i in range(0, len(x), batch_size)
    ]
    if not outs:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(outs).astype(np.float32)


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    """Share of rows of ``logits`` whose argmax is the label."""
    if len(y) == 0:
        return 0.0
    return float(np.mean(np.argmax(logits, axis=1) == y))
