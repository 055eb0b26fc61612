"""FedGKT's device side: the extractor/head split of a device model and the round's task.

He, Annavaram and Avestimehr, "Group Knowledge Transfer: Federated Learning of
Large CNNs at the Edge", NeurIPS 2020, https://arxiv.org/abs/2007.14513
(Algorithm 1); the protocol is in :mod:`tinylarge.schemes.fedgkt`. As in the
reference implementation (FedML, ``fedgkt``) each node keeps its optimizer from
round to round; the server's settings are :func:`server_settings` (Adam with
AMSGrad, or SGD with Nesterov momentum 0.9, weight decay 1e-4). Every loop is
:func:`tinylarge.sim.training.train_supervised`; the cut comes from
:mod:`tinylarge.models.cuts`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from tinylarge.errors import TinylargeError
from tinylarge.models import cuts
from tinylarge.models.weights import Weights, get_weights
from tinylarge.models.zoo import ModelSpec
from tinylarge.schemes.options.transfer import FedGKTOptions
from tinylarge.sim.training import (
    TrainSettings,
    TrainStats,
    build,
    make_optimizer,
    predict_logits,
    seeded,
    tensor,
    train_supervised,
)

#: A torch optimizer's ``state_dict()``: kept between rounds on the node that owns it.
OptimizerState = dict[str, Any]


def cut_of(model: nn.Module, spec: ModelSpec, layers: int | None) -> int:
    """Where ``spec``'s model is cut into extractor and head: ``layers`` children if given (it
    must be a cut point, :func:`~tinylarge.models.cuts.cut_points`), else FedGKT's default
    (:func:`~tinylarge.models.cuts.extractor_cut`)."""
    if layers is None:
        return cuts.extractor_cut(model, input_shape=spec.input_shape, name=spec.name)
    allowed = [
        c.index for c in cuts.cut_points(model, input_shape=spec.input_shape, name=spec.name)
    ]
    if layers not in allowed:
        raise TinylargeError(
            f"scheme.options.extractor_layers: model {spec.name!r} can be cut after "
            f"{', '.join(map(str, allowed))} children (where an activation or pooling layer "
            f"ends a group), got {layers}"
        )
    return layers


def split(model: nn.Module, cut: int) -> tuple[nn.Sequential, nn.Sequential]:
    """The extractor (children before ``cut``) and the head (the rest), sharing the modules."""
    extractor, head = cuts.segments(model, [cut])
    return extractor, head


def server_settings(o: FedGKTOptions) -> TrainSettings:
    """How the server trains the large model each round (FedML fedgkt's values by default):
    Adam with AMSGrad, or SGD with Nesterov momentum 0.9."""
    return TrainSettings(
        epochs=o.server_epochs,
        batch_size=o.server_batch_size,
        lr=o.server_lr,
        optimizer="adam" if o.server_optimizer == "adam" else "momentum",
        momentum=0.9,
        weight_decay=o.server_weight_decay,
        nesterov=True,
        amsgrad=True,
    )


def train_server(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    features: torch.Tensor,
    labels: torch.Tensor,
    device_logits: torch.Tensor,
    *,
    options: FedGKTOptions,
    gen: torch.Generator,
) -> TrainStats:
    """``server_epochs`` epochs over all uploaded features, shuffled across devices, with
    cross-entropy plus ``server_kd_weight`` x the distillation loss to the devices' logits."""
    return train_supervised(
        model,
        features,
        labels,
        settings=server_settings(options),
        gen=gen,
        teacher=device_logits,
        kd_weight=options.server_kd_weight,
        temperature=options.temperature,
        optimizer=opt,
    )


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
    """The device's new model and optimizer state, and what it uploads."""

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
    gen = seeded(task.seed)
    model = build(task.spec, task.weights)
    opt = make_optimizer(model, task.settings)
    if task.opt_state is not None:
        opt.load_state_dict(task.opt_state)
    stats = train_supervised(
        model,
        tensor(x[task.indices]),
        tensor(y[task.indices]),
        settings=task.settings,
        gen=gen,
        teacher=None if task.server_logits is None else tensor(task.server_logits),
        kd_weight=task.alpha,
        temperature=task.temperature,
        optimizer=opt,
    )
    extractor, head = split(model, task.cut)
    features = predict_logits(extractor, x[task.indices]).astype(task.feature_dtype)
    logits = predict_logits(head, features.astype(np.float32))
    labels = y[task.indices].astype(np.uint8 if int(y.max(initial=0)) < 256 else np.int32)
    return GKTResult(
        client=task.client,
        weights=get_weights(model),
        opt_state=copy.deepcopy(opt.state_dict()),
        features=features,
        logits=logits,
        labels=labels,
        num_samples=len(task.indices),
        loss=stats.loss,
    )
