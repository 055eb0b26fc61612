"""Adaptive server optimizers: FedAdam and FedYogi.

The server treats the negative mean client update as a pseudo-gradient and
applies Adam or Yogi to the global model. Reddi et al., "Adaptive Federated
Optimization", ICLR 2021, https://arxiv.org/abs/2003.00295 (Algorithm 2).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinylarge.models.weights import Weights
from tinylarge.schemes.base import register_scheme
from tinylarge.schemes.fedavg import FedAvgFamily
from tinylarge.schemes.options.federated import FedOptOptions


def adam_second_moment(v: np.ndarray, delta: np.ndarray, beta2: float) -> np.ndarray:
    out: np.ndarray = beta2 * v + (1 - beta2) * delta**2
    return out


def yogi_second_moment(v: np.ndarray, delta: np.ndarray, beta2: float) -> np.ndarray:
    d2 = delta**2
    out: np.ndarray = v - (1 - beta2) * d2 * np.sign(v - d2)
    return out


class FedOpt(FedAvgFamily[FedOptOptions]):
    """FedAvg whose server step is an adaptive optimizer; subclasses pick the moment rule."""

    @staticmethod
    def second_moment(v: np.ndarray, delta: np.ndarray, beta2: float) -> np.ndarray:
        raise NotImplementedError

    def setup(self) -> None:
        super().setup()
        self.m = [np.zeros_like(w, dtype=np.float64) for w in self.weights]
        self.v = [np.full_like(w, self.options.tau**2, dtype=np.float64) for w in self.weights]

    def server_update(self, rnd: int, averaged: Weights) -> Weights:
        o = self.options
        new: Weights = []
        for i, (w, a) in enumerate(zip(self.weights, averaged, strict=True)):
            if not np.issubdtype(w.dtype, np.floating):
                new.append(a)
                continue
            delta = a.astype(np.float64) - w.astype(np.float64)
            self.m[i] = o.beta1 * self.m[i] + (1 - o.beta1) * delta
            self.v[i] = self.second_moment(self.v[i], delta, o.beta2)
            step = o.server_lr * self.m[i] / (np.sqrt(self.v[i]) + o.tau)
            new.append((w.astype(np.float64) + step).astype(w.dtype))
        return new

    def state(self) -> dict[str, Any]:
        return {"weights": self.weights, "m": self.m, "v": self.v}

    def load_state(self, state: dict[str, Any]) -> None:
        self.weights, self.m, self.v = state["weights"], state["m"], state["v"]


@register_scheme
class FedAdam(FedOpt):
    name = "fedadam"
    second_moment = staticmethod(adam_second_moment)


@register_scheme
class FedYogi(FedOpt):
    name = "fedyogi"
    second_moment = staticmethod(yogi_second_moment)
