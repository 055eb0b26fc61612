"""The split training task: one client's turn of split learning, on any backend.

:func:`split_fit` cuts the model at the client's cut(s)
(:func:`tinylarge.models.cuts.segments`) and trains the parts with the one
training loop (:func:`tinylarge.sim.training.run_steps`), one optimizer per
part: every batch runs the device part, compresses the smashed data
(:func:`tinylarge.models.split.compress`), runs the server part (and,
U-shaped, the device's head) and back-propagates through all of them. This is
mathematically the protocol of Gupta and Raskar
(https://arxiv.org/abs/1810.06060): the server part receives exactly the
(de)compressed smashed data and sends back exactly the fp32 gradient at the
cut, the device applies it, batch after batch; running both sides in one task
only avoids the round trips in simulation. The task measures every message it
would have sent (bytes per batch, per direction) for the round clock to bill
(:meth:`tinylarge.sim.rounds.Round.exchange`). It is module-level and seeded
from its task, so any backend gives the same result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tinylarge.models.cuts import segments
from tinylarge.models.split import (
    Compression,
    compress,
    gradient_bytes,
    label_bytes,
    message_bytes,
)
from tinylarge.models.weights import Weights, get_weights
from tinylarge.models.zoo import ModelSpec
from tinylarge.security.nopeek import SmashedGuard
from tinylarge.sim.rounds import Stream
from tinylarge.sim.training import (
    TrainSettings,
    accuracy,
    build,
    make_optimizer,
    mean_cross_entropy,
    predict_logits,
    run_steps,
    seeded,
    tensor,
)

#: The guard's noise in a task is drawn from ``task.seed`` plus this (its own stream).
NOISE_SEED_OFFSET = 104_729


@dataclass(frozen=True)
class SplitTask:
    """One client's split training job: the whole model's weights and where it is cut."""

    client: int
    round: int
    seed: int
    spec: ModelSpec
    weights: Weights
    cuts: tuple[int, ...]
    compression: Compression
    indices: np.ndarray
    settings: TrainSettings
    #: The device's defense of its smashed data (NoPeek, cut noise), if any.
    guard: SmashedGuard | None = None


@dataclass(frozen=True)
class SplitResult:
    """The trained weights (all parts) and the measured message sizes per stream."""

    client: int
    weights: Weights
    num_samples: int
    loss: float
    messages: dict[Stream, list[int]]


@dataclass(frozen=True)
class Sending:
    """What a device does to the smashed data it sends: its guard's noise, drawn from ``gen``;
    ``smashed`` collects the device part's output (before noise) for the guard's loss."""

    guard: SmashedGuard | None
    gen: torch.Generator
    smashed: list[torch.Tensor]


def run_parts(
    parts: Sequence[nn.Module],
    x: torch.Tensor,
    mode: Compression,
    record: dict[Stream, list[int]] | None = None,
    labels: int = 0,
    sending: Sending | None = None,
) -> torch.Tensor:
    """Forward through the parts, compressing at each boundary; record the messages.

    Boundary 0 (device -> server) sends activations up (with ``labels`` bytes when there
    is no head on the device) and receives their gradients; boundary 1 of the U-shaped
    variant sends the server's activations down and the head's gradients up. What the
    device sends at boundary 0 first gets the ``sending`` guard's noise.
    """
    h = x
    for i, part in enumerate(parts):
        h = part(h)
        if i == len(parts) - 1:
            break
        if i == 0 and sending is not None:
            sending.smashed.append(h)
            if sending.guard is not None:
                h = sending.guard.perturb(h, sending.gen)
        h = compress(h, mode)
        if record is not None:
            up = i % 2 == 0
            extra = labels if (up and len(parts) == 2) else 0
            act = message_bytes(h.numel(), compression=mode) + extra
            record.setdefault(("up" if up else "down", "activations"), []).append(act)
            record.setdefault(("down" if up else "up", "gradients"), []).append(
                gradient_bytes(h.numel())
            )
    return h


def split_fit(task: SplitTask, x: np.ndarray, y: np.ndarray) -> SplitResult:
    """Train the cut model on ``x[task.indices]``; deterministic for a given task."""
    gen = seeded(task.seed)
    model = build(task.spec, task.weights)
    model.train()
    parts = segments(model, task.cuts)
    xs, ys = tensor(x[task.indices]), tensor(y[task.indices])
    per_label = label_bytes(task.spec.num_classes)
    messages: dict[Stream, list[int]] = {}
    noise = torch.Generator().manual_seed(task.seed + NOISE_SEED_OFFSET)
    sending = Sending(task.guard, noise, [])

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        sending.smashed.clear()
        out = run_parts(parts, xs[idx], task.compression, messages, per_label * len(idx), sending)
        loss = nn.functional.cross_entropy(out, ys[idx])
        penalty = None if task.guard is None else task.guard.penalty(xs[idx], sending.smashed[0])
        return loss if penalty is None else loss + penalty

    stats = run_steps(
        loss_of,
        [make_optimizer(p, task.settings) for p in parts],
        n=len(task.indices),
        settings=task.settings,
        gen=gen,
    )
    return SplitResult(task.client, get_weights(model), len(task.indices), stats.loss, messages)


class DeployedSplit(nn.Module):
    """The parts of a cut model run as deployed: smashed data compressed at every cut, the
    device's guard noise (drawn from ``seed``) on what it sends."""

    def __init__(
        self,
        parts: Sequence[nn.Module],
        mode: Compression,
        guard: SmashedGuard | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.parts = nn.ModuleList(parts)
        self.mode: Compression = mode
        self.sending = Sending(guard, torch.Generator().manual_seed(seed), [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sending.smashed.clear()
        return run_parts(list(self.parts), x, self.mode, sending=self.sending)


def evaluate_split(
    spec: ModelSpec,
    weights: Weights,
    cuts: tuple[int, ...],
    compression: Compression,
    x: np.ndarray,
    y: np.ndarray,
    guard: SmashedGuard | None = None,
    seed: int = 0,
) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of the deployed split model (compressed at the cuts,
    with the ``guard``'s noise drawn from ``seed``)."""
    torch.set_num_threads(1)
    deployed = DeployedSplit(segments(build(spec, weights), cuts), compression, guard, seed)
    logits = predict_logits(deployed, x)
    return accuracy(logits, y), mean_cross_entropy(logits, y)
