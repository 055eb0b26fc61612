"""Options of the FedAvg family: FedAvg, FedProx and the adaptive server optimizers."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from tinylarge.schemes.options.base import NoOptions, SchemeOptions, register_options

register_options("fedavg")(NoOptions)


@register_options("fedprox")
class FedProxOptions(SchemeOptions):
    #: Weight of the proximal term ``mu/2 * ||w - w_global||^2``.
    mu: Annotated[float, Field(ge=0, le=1000)] = 0.01


@register_options("fedadam", "fedyogi")
class FedOptOptions(SchemeOptions):
    #: Server learning rate (eta).
    server_lr: Annotated[float, Field(gt=0, le=100)] = 0.03
    beta1: Annotated[float, Field(ge=0, lt=1)] = 0.9
    beta2: Annotated[float, Field(ge=0, lt=1)] = 0.99
    #: Adaptivity (tau): larger is closer to FedAvg with momentum.
    tau: Annotated[float, Field(gt=0, le=10)] = 1e-3
