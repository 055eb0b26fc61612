"""FedGKT's device side: the extractor/head split and the local round task.

He, Annavaram and Avestimehr, "Group Knowledge Transfer: Federated Learning of
Large CNNs at the Edge", NeurIPS 2020, https://arxiv.org/abs/2007.14513
(Algorithm 1, client side); the protocol is in :mod:`tinylarge.schemes.fedgkt`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from tinylarge.errors import TinylargeError
from tinylarge.schemes import _kd
from tinylarge.sim.client import ModelSpec, TrainSettings, Weights, get_weights


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


@dataclass(frozen=True)
class GKTTask:
    """One device's FedGKT round: local KD training, then features for the server."""

    client: int
    seed: int
    spec: ModelSpec
    cut: int
    weights: Weights
    indices: np.ndarray
    settings: TrainSettings
    server_logits: np.ndarray | None
    alpha: float
    temperature: float
    feature_dtype: str


@dataclass(frozen=True)
class GKTResult:
    client: int
    weights: Weights
    features: np.ndarray
    logits: np.ndarray
    labels: np.ndarray
    num_samples: int
    loss: float


def gkt_client(task: GKTTask, x: np.ndarray, y: np.ndarray) -> GKTResult:
    """Train extractor + head with CE and KD to the server's logits; extract features."""
    gen = _kd.seeded(task.seed)
    model = _kd.build(task.spec, task.weights)
    xs, ys = _kd.tensor(x[task.indices]), _kd.tensor(y[task.indices])
    teacher = None if task.server_logits is None else _kd.tensor(task.server_logits)
    loss = _kd.train_kd(
        model,
        xs,
        ys,
        teacher,
        settings=task.settings,
        epochs=task.settings.epochs,
        alpha=task.alpha,
        temperature=task.temperature,
        gen=gen,
    )
    extractor, head = split(model, task.cut)
    features = _kd.logits_of(extractor, x[task.indices]).astype(task.feature_dtype)
    logits = _kd.logits_of(head, features.astype(np.float32))
    labels = y[task.indices].astype(np.uint8 if int(y.max(initial=0)) < 256 else np.int32)
    return GKTResult(
        task.client, get_weights(model), features, logits, labels, len(task.indices), loss
    )
