"""The split training task: one client's turn of split learning, on any backend.

:func:`split_fit` cuts the model at the client's cut(s)
(:mod:`tinylarge.models.split`); every batch runs the device part, compresses
the smashed data, runs the server part (and, U-shaped, the device's head), and
back-propagates through all of them, each part with its own optimizer. This is
mathematically the protocol of Gupta and Raskar
(https://arxiv.org/abs/1810.06060): the server part receives exactly the
(de)compressed smashed data and sends back exactly the fp32 gradient at the
cut, the device applies it, batch after batch; running both sides in one
task only avoids the round trips in simulation. The task measures every
message it would have sent (bytes per batch, per direction) for the scheme
to bill. It is module-level and seeded from its task, so any backend gives
the same result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tinylarge.models.split import (
    Compression,
    compress,
    gradient_bytes,
    label_bytes,
    message_bytes,
    segments,
)
from tinylarge.orchestration.split_costs import Stream
from tinylarge.sim.client import (
    FitResult,
    ModelSpec,
    TrainSettings,
    Weights,
    get_weights,
    make_optimizer,
    set_weights,
)


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


@dataclass(frozen=True)
class SplitResult:
    """The trained weights (all parts) and the measured message sizes per stream."""

    client: int
    weights: Weights
    num_samples: int
    loss: float
    messages: dict[Stream, list[int]]

    def as_fit(self) -> FitResult:
        return FitResult(self.client, self.weights, self.num_samples, self.loss)


def _run_parts(
    parts: Sequence[nn.Module],
    x: torch.Tensor,
    mode: Compression,
    record: dict[Stream, list[int]] | None = None,
    labels: int = 0,
) -> torch.Tensor:
    """Forward through the parts, compressing at each boundary; record the messages."""
    h = x
    for i, part in enumerate(parts):
        h = part(h)
        if i == len(parts) - 1:
            break
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
    torch.set_num_threads(1)
    torch.manual_seed(task.seed)
    model = task.spec.build()
    set_weights(model, task.weights)
    model.train()
    parts = segments(model, task.cuts)
    opts = [make_optimizer(p, task.settings) for p in parts]
    xs = torch.from_numpy(np.ascontiguousarray(x[task.indices]))
    ys = torch.from_numpy(np.ascontiguousarray(y[task.indices]))
    gen = torch.Generator().manual_seed(task.seed)
    n, bs = len(task.indices), task.settings.batch_size
    per_label = label_bytes(task.spec.num_classes)
    messages: dict[Stream, list[int]] = {}
    total, batches = 0.0, 0
    for _ in range(task.settings.epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, bs):
            idx = order[i : i + bs]
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            out = _run_parts(parts, xs[idx], task.compression, messages, per_label * len(idx))
            loss = nn.functional.cross_entropy(out, ys[idx])
            loss.backward()  # type: ignore[no-untyped-call]
            for opt in opts:
                opt.step()
            total += float(loss.detach())
            batches += 1
    return SplitResult(task.client, get_weights(model), n, total / max(batches, 1), messages)


@torch.no_grad()
def evaluate_split(
    spec: ModelSpec,
    weights: Weights,
    cuts: tuple[int, ...],
    compression: Compression,
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int = 1024,
) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of the deployed split model (compressed at the cuts)."""
    torch.set_num_threads(1)
    model = spec.build()
    set_weights(model, weights)
    model.eval()
    parts = segments(model, cuts)
    correct, loss = 0, 0.0
    for i in range(0, len(y), batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size]))
        yb = torch.from_numpy(np.ascontiguousarray(y[i : i + batch_size]))
        out = _run_parts(parts, xb, compression)
        loss += float(nn.functional.cross_entropy(out, yb, reduction="sum"))
        correct += int((out.argmax(1) == yb).sum())
    n = max(len(y), 1)
    return correct / n, loss / n


def merge(
    start: Weights, contributions: Sequence[tuple[list[bool], int, Weights]], server: Weights
) -> Weights:
    """Average each tensor over the clients that trained it on their device.

    ``contributions`` are (device mask, samples, weights) per client; a tensor
    trained on the server for some clients takes ``server`` (the server's
    sequentially updated copy) weighted by those clients' samples. Integer
    buffers take the maximum. With one cut for everyone this is SplitFed V2's
    FedAvg of the client-side models next to the server's own model.
    """
    out: Weights = []
    for i, base in enumerate(start):
        parts = [(n, w[i]) for mask, n, w in contributions if mask[i]]
        on_server = sum(n for mask, n, _ in contributions if not mask[i])
        if on_server:
            parts.append((on_server, server[i]))
        if not parts:
            out.append(base)
            continue
        if np.issubdtype(base.dtype, np.integer):
            out.append(np.max(np.stack([t for _, t in parts]), axis=0))
            continue
        total = sum(n for n, _ in parts)
        acc = np.zeros_like(base, dtype=np.float64)
        for n, t in parts:
            acc += (n / total) * t.astype(np.float64)
        out.append(acc.astype(base.dtype))
    return out
