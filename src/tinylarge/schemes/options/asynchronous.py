"""Options of the schemes on other clocks: asynchronous (FedBuff, FedAsync) and
hierarchical (HierFAVG)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from tinylarge.schemes.options.base import SchemeOptions, register_options

if TYPE_CHECKING:
    from tinylarge.config import ExperimentConfig

Staleness = Literal["constant", "polynomial", "hinge"]


class AsyncOptions(SchemeOptions):
    """What every asynchronous scheme takes (:mod:`tinylarge.sim.async_clock`)."""

    #: Devices training at once; default: the clients a round (``training.fraction`` of the
    #: admitted devices, at least ``training.min_clients``). At most the admitted devices.
    concurrency: Annotated[int, Field(ge=1, le=100_000)] | None = None
    #: Updates staler than this many server updates are dropped on arrival (billed, unused).
    max_staleness: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    #: How a stale update is weighted (:mod:`tinylarge.sim.staleness`).
    staleness: Staleness = "polynomial"
    #: Exponent ``a`` of ``polynomial`` ``(1 + s) ** -a`` and slope ``a`` of ``hinge``.
    staleness_a: Annotated[float, Field(ge=0, le=100)] = 0.5
    #: ``hinge``: updates up to ``b`` server updates stale count fully.
    staleness_b: Annotated[float, Field(ge=0, le=1_000_000)] = 4.0

    def refuse(self, cfg: ExperimentConfig) -> list[str]:
        out = []
        name = cfg.scheme.name
        if cfg.engine.deadline_s is not None:
            out.append(
                f"engine.deadline_s: scheme {name!r} is asynchronous, it has no round to cut; "
                "bound how late an update may be with scheme.options.max_staleness instead"
            )
        if cfg.training.selection != "uniform":
            out.append(
                f"training.selection: scheme {name!r} dispatches to idle devices uniformly as "
                "slots free; selection policies choose a synchronous round's devices"
            )
        n = cfg.topology.num_devices
        if self.concurrency is not None and self.concurrency > n:
            out.append(
                f"scheme.options.concurrency: {self.concurrency} devices training at once, "
                f"but the topology has {n}; allowed: 1..{n}"
            )
        return out


@register_options("fedbuff")
class FedBuffOptions(AsyncOptions):
    """FedBuff (Nguyen et al. 2022): the server steps when ``buffer_size`` updates arrived."""

    #: Updates per server step (K); default: the concurrency.
    buffer_size: Annotated[int, Field(ge=1, le=100_000)] | None = None
    #: Server learning rate on the buffered mean delta (1: the mean is applied as is).
    server_lr: Annotated[float, Field(gt=0, le=100)] = 1.0
    #: Server momentum on the buffered mean delta (0: none).
    server_momentum: Annotated[float, Field(ge=0, lt=1)] = 0.0


@register_options("fedasync")
class FedAsyncOptions(AsyncOptions):
    """FedAsync (Xie et al. 2019): ``x <- (1 - alpha_t) x + alpha_t x_client`` per arrival."""

    #: Mixing weight ``alpha`` before the staleness function (the paper's 0.6 or 0.9).
    alpha: Annotated[float, Field(gt=0, le=1)] = 0.6


@register_options("hierfavg")
class HierFavgOptions(SchemeOptions):
    """HierFAVG (Liu et al. 2020): ``training.local_epochs`` (kappa1) of local training per
    edge aggregation, ``kappa2`` edge aggregations per cloud aggregation."""

    #: Edge aggregations per cloud round (kappa2).
    kappa2: Annotated[int, Field(ge=1, le=1000)] = 2

    def refuse(self, cfg: ExperimentConfig) -> list[str]:
        if cfg.engine.deadline_s is None:
            return []
        return [
            "engine.deadline_s: scheme 'hierfavg' runs kappa2 edge rounds inside each cloud "
            "round, each edge waiting for its devices, so one deadline cannot cut them; remove it"
        ]
