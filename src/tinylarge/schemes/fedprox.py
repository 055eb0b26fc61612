"""FedProx: FedAvg with a proximal term that keeps local models near the global one.

Li et al., "Federated Optimization in Heterogeneous Networks", MLSys 2020,
https://arxiv.org/abs/1812.06127
"""

from __future__ import annotations

from tinylarge.schemes.base import register_scheme
from tinylarge.schemes.fedavg import FedAvgFamily
from tinylarge.schemes.options.federated import FedProxOptions


@register_scheme
class FedProx(FedAvgFamily[FedProxOptions]):
    name = "fedprox"
    trainer = "prox"

    def trainer_options(self) -> dict[str, float]:
        return {"mu": self.options.mu}
