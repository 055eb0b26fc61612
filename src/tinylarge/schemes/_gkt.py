"""FedGKT's two halves: the device's extractor/head split and round task, the server's trainer.

He, Annavaram and Avestimehr, "Group Knowledge Transfer: Federated Learning of
Large CNNs at the Edge", NeurIPS 2020, https://arxiv.org/abs/2007.14513
(Algorithm 1); the protocol is in :mod:`tinylarge.schemes.fedgkt`. Both sides
follow the reference implementation (FedML, ``fedgkt``): each node keeps its
optimizer from round to round; the server trains with Adam (AMSGrad, weight
decay 1e-4) or SGD with Nesterov momentum 0.9, several epochs per round over all
uploaded features, on cross-entropy plus an optional distillation term.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from tinylarge.errors import TinylargeError
from tinylarge.schemes import _kd
from tinylarge.sim.client import ModelSpec, TrainSettings, Weights, get_weights, make_optimizer


def default_cut(model: nn.Module) -> int:
    """Index of the second conv/linear child: the extractor is everything before it."""
    weight_layers = [
        i
        for i, child in enumerate(model.children())
        if isinstance(child, (nn.modules.conv._ConvNd, nn.Linear))
    ]
    if len(weight_layers) < 2:
        raise TinylargeError("FedGKT needs a device model with at least two conv/linear layers")
    return weight_layers[1]


def split(model: nn.Module, cut: int) -> tuple[nn.Sequential, nn.Sequential]:
    children = list(model.children())
    if not isinstance(model, nn.Sequential) or not 0 < cut < len(children):
        raise TinylargeError(
            f"extractor_layers must be between 1 and {len(children) - 1} for this device model"
        )
    return nn.Sequential(*children[:cut]), nn.Sequential(*children[cut:])


#: A torch optimizer's ``state_dict()``: kept between rounds on the node that owns it.
OptimizerState = dict[str, Any]


def train_kd(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    xs: torch.Tensor,
    ys: torch.Tensor,
    teacher: torch.Tensor | None,
    *,
    batch_size: int,
    epochs: int,
    kd_weight: float,
    temperature: float,
    gen: torch.Generator,
) -> float:
    """Mini-batch training with cross-entropy plus ``kd_weight`` times the distillation loss
    (``T^2``-scaled KL, temperature ``temperature``) to the ``teacher`` logits of the same
    samples, if any. Batches are shuffled from ``gen``; returns the mean batch loss."""
    model.train()
    total, steps = 0.0, 0
    for idx in _kd.batches(len(xs), batch_size=batch_size, epochs=epochs, gen=gen):
        opt.zero_grad(set_to_none=True)
        out = model(xs[idx])
        loss = nn.functional.cross_entropy(out, ys[idx])
        if teacher is not None and kd_weight > 0:
            loss = loss + kd_weight * _kd.kd_loss(out, teacher[idx], temperature)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        total += float(loss.detach())
        steps += 1
    return total / max(steps, 1)


@dataclass(frozen=True)
class GKTTask:
    """One device's FedGKT round: local KD training, then features for the server."""

    client: int
    seed: int
    spec: ModelSpec
    cut: int
    weights: Weights
    #: The device's optimizer state from its previous round (None: a fresh optimizer).
    opt_state: OptimizerState | None
    indices: np.ndarray
    settings: TrainSettings
    #: The server's logits on ``indices``, row for row (None in the first round).
    server_logits: np.ndarray | None
    alpha: float
    temperature: float
    feature_dtype: str


@dataclass(frozen=True)
class GKTResult:
    client: int
    weights: Weights
    opt_state: OptimizerState
    features: np.ndarray
    logits: np.ndarray
    labels: np.ndarray
    num_samples: int
    loss: float


def gkt_client(task: GKTTask, x: np.ndarray, y: np.ndarray) -> GKTResult:
    """Train extractor + head with CE and ``alpha`` x KD to the server's logits (the device
    keeps its optimizer across rounds, as the reference's client trainer); extract features."""
    gen = _kd.seeded(task.seed)
    model = _kd.build(task.spec, task.weights)
    opt = make_optimizer(model, task.settings)
    if task.opt_state is not None:
        opt.load_state_dict(task.opt_state)
    xs, ys = _kd.tensor(x[task.indices]), _kd.tensor(y[task.indices])
    teacher = None if task.server_logits is None else _kd.tensor(task.server_logits)
    loss = train_kd(
        model,
        opt,
        xs,
        ys,
        teacher,
        batch_size=task.settings.batch_size,
        epochs=task.settings.epochs,
        kd_weight=task.alpha,
        temperature=task.temperature,
        gen=gen,
    )
    extractor, head = split(model, task.cut)
    features = _kd.logits_of(extractor, x[task.indices]).astype(task.feature_dtype)
    logits = _kd.logits_of(head, features.astype(np.float32))
    labels = y[task.indices].astype(np.uint8 if int(y.max(initial=0)) < 256 else np.int32)
    return GKTResult(
        client=task.client,
        weights=get_weights(model),
        opt_state=copy.deepcopy(opt.state_dict()),
        features=features,
        logits=logits,
        labels=labels,
        num_samples=len(task.indices),
        loss=loss,
    )


@dataclass(frozen=True)
class ServerSettings:
    """How the server trains the large model each round (FedML fedgkt's values by default)."""

    optimizer: str
    lr: float
    weight_decay: float
    batch_size: int
    epochs: int
    #: Weight of the distillation term to the devices' logits (0: cross-entropy only).
    kd_weight: float
    temperature: float


def server_optimizer(model: nn.Module, s: ServerSettings) -> torch.optim.Optimizer:
    """The reference's server optimizers: Adam with AMSGrad, or SGD with Nesterov momentum 0.9."""
    if s.optimizer == "adam":
        return torch.optim.Adam(
            model.parameters(), lr=s.lr, weight_decay=s.weight_decay, amsgrad=True
        )
    return torch.optim.SGD(
        model.parameters(), lr=s.lr, momentum=0.9, nesterov=True, weight_decay=s.weight_decay
    )


def train_server(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    features: torch.Tensor,
    labels: torch.Tensor,
    device_logits: torch.Tensor,
    *,
    settings: ServerSettings,
    gen: torch.Generator,
) -> float:
    """``settings.epochs`` epochs over all uploaded features, shuffled across devices, with
    cross-entropy plus ``kd_weight`` x the distillation loss to the devices' logits."""
    return train_kd(
        model,
        opt,
        features,
        labels,
        device_logits,
        batch_size=settings.batch_size,
        epochs=settings.epochs,
        kd_weight=settings.kd_weight,
        temperature=settings.temperature,
        gen=gen,
    )
