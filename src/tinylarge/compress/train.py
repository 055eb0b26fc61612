"""Compression's training calls, on the one training loop of :mod:`tinylarge.sim.training`.

Training from scratch, distillation, pruning fine-tuning and quantization-aware
training are all :func:`tinylarge.sim.training.train_supervised` (which runs
:func:`~tinylarge.sim.training.run_steps` with the optimizer of
:func:`~tinylarge.sim.training.make_optimizer`). This module only adapts
compression's inputs to it:

- :class:`TrainConfig` is a :class:`~tinylarge.sim.training.TrainSettings` with
  compression's defaults (Adam at 1e-3, batches of 64), a seed and a thread count;
- the loss: cross-entropy, or Hinton's distillation loss when the teacher's
  logits are given (``ce_weight = 1 - alpha``, ``kd_weight = alpha``;
  :mod:`tinylarge.compress.distill`);
- a hook after every optimizer step: magnitude pruning re-applies its masks
  there (:mod:`tinylarge.compress.prune`);
- the module itself: quantization-aware training passes a module with
  fake-quantizers (:mod:`tinylarge.compress.qat`).

Deterministic: :func:`~tinylarge.sim.training.seeded` seeds torch and the
shuffling generator from ``seed`` and sets ``threads`` intra-op threads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tinylarge.compress.distill import KDConfig
from tinylarge.errors import TinylargeError
from tinylarge.sim import training
from tinylarge.sim.training import OptimizerName, TrainSettings, accuracy, seeded, tensor

__all__ = ["StepHook", "TrainConfig", "accuracy", "predict_logits", "train_model"]

#: Called after every optimizer step with the model (e.g. to re-apply pruning masks).
StepHook = Callable[[nn.Module], None]


@dataclass(frozen=True, kw_only=True)
class TrainConfig(TrainSettings):
    """How compression trains: :class:`~tinylarge.sim.training.TrainSettings` with
    compression's defaults, plus the seed and the threads of the call.

    Attributes:
        batch_size: samples per optimizer step (default 64).
        lr: learning rate (default 1e-3).
        optimizer: ``"sgd"``, ``"momentum"`` or ``"adam"`` (default).
        seed: seeds torch (anything random in the module) and the shuffling.
        threads: intra-op threads (1 keeps results independent of the machine).

    The other fields (``epochs``, ``momentum``, ``weight_decay``, ``schedule``:
    ``"constant"`` or ``"cosine"`` decay to 0 over all steps of the call) are
    :class:`~tinylarge.sim.training.TrainSettings`'.
    """

    batch_size: int = 64
    lr: float = 1e-3
    optimizer: OptimizerName = "adam"
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or not self.lr > 0 or self.threads < 1:
            raise TinylargeError(
                f"training needs epochs >= 0, batch_size >= 1, lr > 0 and threads >= 1, got {self}"
            )
        if self.optimizer not in ("sgd", "momentum", "adam"):
            raise TinylargeError(
                f"unknown optimizer {self.optimizer!r}; known: adam, momentum, sgd"
            )
        if self.schedule not in ("constant", "cosine"):
            raise TinylargeError(f"unknown schedule {self.schedule!r}; known: constant, cosine")


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
    cross-entropy on the labels. The model is left in eval mode.
    """
    if teacher_logits is not None and len(teacher_logits) != len(x):
        raise ValueError(f"{len(teacher_logits)} teacher logits for {len(x)} samples")
    if len(x) != len(y):
        raise ValueError(f"{len(x)} samples but {len(y)} labels")
    gen = seeded(config.seed, threads=config.threads)
    xs = tensor(np.asarray(x, dtype=np.float32))
    ys = tensor(np.asarray(y, dtype=np.int64))
    hinton = kd or KDConfig()
    distil = teacher_logits is not None
    stats = training.train_supervised(
        model,
        xs,
        ys,
        settings=config,
        gen=gen,
        teacher=None if teacher_logits is None else tensor(teacher_logits),
        ce_weight=hinton.ce_weight if distil else 1.0,
        kd_weight=hinton.kd_weight if distil else 0.0,
        temperature=hinton.temperature,
        after_step=None if after_step is None else lambda: after_step(model),
    )
    model.eval()
    return stats.last_epoch_loss


def predict_logits(
    model: nn.Module, x: np.ndarray, *, batch_size: int = 1024, threads: int = 1
) -> np.ndarray:
    """float32 logits of ``model`` (eval mode) on ``x``, on ``threads`` intra-op threads."""
    torch.set_num_threads(threads)
    return training.predict_logits(model, x, batch_size=batch_size)
