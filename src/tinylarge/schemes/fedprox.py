"""FedProx: FedAvg with a proximal term that keeps local models near the global one.

Li et al., "Federated Optimization in Heterogeneous Networks", MLSys 2020,
https://arxiv.org/abs/1812.06127
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from tinylarge.schemes.base import register_scheme
from tinylarge.schemes.fedavg import FedAvg


class FedProxOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    #: Weight of the proximal term ``mu/2 * ||w - w_global||^2``.
    mu: Annotated[float, Field(ge=0)] = 0.01


@register_scheme
class FedProx(FedAvg):
    name = "fedprox"
    Options = FedProxOptions
    trainer = "prox"

    def trainer_options(self) -> dict[str, float]:
        assert isinstance(self.options, FedProxOptions)
        return {"mu": self.options.mu}
