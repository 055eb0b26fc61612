"""Per-inference cost paths: what one sample costs on its way through the tiers.

Every collaborative-inference mode is a set of *exit paths*. A path is the
ordered list of steps a sample takes until its answer is known on the device:
computations on the device, the edge server or the cloud, and transfers over
the device's link (uplink, downlink) or the edge-to-cloud backhaul. A cascade
has two paths (answer on the device; answer from the large model after
uploading the input), an early-exit network one per exit, split inference one
(its partition point). Steps run one after another, so a sample's end-to-end
latency is the sum of its steps' seconds (no queueing; requests are served one
at a time) and its device energy the sum of the device compute and radio
joules. The idle power of a device waiting for an answer is not billed, as
everywhere in tinylarge.

A computation step says what ran (:class:`~tinylarge.hardware.cost.Infer`
descriptors), not what it cost: the caller's ``price(leg, work)`` prices it on
the node of its leg (the serving schemes pass the context's prices). A
transfer step says how many bytes cross which leg; ``transfer(leg, bytes)``
prices one request's transfer (the context's
:class:`~tinylarge.sim.context.RequestChannel`: one fading draw per request,
memoised when the channel is deterministic).

A transfer in outage (SNR below threshold) ends the path: the device answers
with its *fallback* exit (the last exit it computed itself), after running
the path's fallback steps (split inference finishes the model locally).

:func:`walk` turns an exit index per sample into per-sample costs;
:func:`figures` summarises them. Pure functions: billing the ledger is the
round clock's job (:meth:`tinylarge.sim.rounds.Round.serve`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from tinylarge.hardware.cost import ComputeCost, Work
from tinylarge.network.link import TransferResult

#: Where a stage of a model runs: on the device, the edge server or the cloud (DDNN's tiers).
Tier = Literal["device", "edge", "cloud"]
TIERS: tuple[Tier, ...] = ("device", "edge", "cloud")
Leg = Literal["device", "uplink", "edge", "backhaul_up", "cloud", "backhaul_down", "downlink"]
#: The legs of a path, in the order a sample can visit them.
LEGS: tuple[Leg, ...] = (
    "device",
    "uplink",
    "edge",
    "backhaul_up",
    "cloud",
    "backhaul_down",
    "downlink",
)
COMPUTE_LEGS: frozenset[Leg] = frozenset({"device", "edge", "cloud"})
#: Legs whose joules the device pays: its compute and its radio.
DEVICE_LEGS: tuple[Leg, ...] = ("device", "uplink", "downlink")
LEG_INDEX: dict[Leg, int] = {leg: i for i, leg in enumerate(LEGS)}

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

#: ``transfer(leg, num_bytes)``: the cost of one request's transfer on a transfer leg.
TransferFn = Callable[[Leg, int], TransferResult]
#: ``price(leg, work)``: seconds, joules and MACs of a computation on the node of a compute leg.
PriceFn = Callable[[Leg, "Work | Sequence[Work]"], ComputeCost]


@dataclass(frozen=True)
class PathStep:
    """One computation (``work``) or transfer (``num_bytes``) on one leg of a request's path.

    ``work`` is what ran (one :data:`~tinylarge.hardware.cost.Work` or several, priced
    together on the leg's node); ``what`` labels the ledger event (``"infer-tiny"``,
    ``"input"``, ``"result"``...).
    """

    leg: Leg
    what: str
    work: Work | tuple[Work, ...] | None = None
    num_bytes: int = 0

    def __post_init__(self) -> None:
        if (self.leg in COMPUTE_LEGS) != (self.work is not None):
            raise ValueError(f"step on leg {self.leg!r} needs work iff it is a computation")
        if self.num_bytes < 0:
            raise ValueError("num_bytes must be >= 0")


@dataclass(frozen=True)
class ExitPath:
    """The steps until exit ``exit``'s answer is on the device.

    Attributes:
        exit: index of the exit whose answer the path delivers.
        steps: the steps in order.
        fallback_exit: the exit the device answers with when a transfer of the
            path is in outage (``None``: no answer, the sample counts as wrong).
        fallback_steps: device work after an outage (split inference: the rest
            of the model).
    """

    exit: int
    steps: tuple[PathStep, ...]
    fallback_exit: int | None = None
    fallback_steps: tuple[PathStep, ...] = ()

    @property
    def offloads(self) -> bool:
        """Whether the path leaves the device."""
        return any(s.leg != "device" for s in self.steps)


@dataclass(frozen=True)
class SampleCosts:
    """Per-sample costs of ``n`` inferences, one column per leg of :data:`LEGS`.

    ``seconds`` and ``joules`` are float64 ``(n, len(LEGS))``; ``macs`` and
    ``bytes`` int64. Joules on server legs are the server's or cloud's.
    """

    seconds: FloatArray
    joules: FloatArray
    macs: IntArray
    bytes: IntArray

    @property
    def latency_s(self) -> FloatArray:
        """End-to-end seconds per sample (all legs in sequence)."""
        out: FloatArray = self.seconds.sum(axis=1)
        return out

    @property
    def device_energy_j(self) -> FloatArray:
        """Device joules per sample: its compute and its radio."""
        out: FloatArray = self.joules[:, [LEG_INDEX[leg] for leg in DEVICE_LEGS]].sum(axis=1)
        return out

    def leg(self, leg: Leg) -> tuple[FloatArray, FloatArray, IntArray, IntArray]:
        """(seconds, joules, macs, bytes) of one leg."""
        i = LEG_INDEX[leg]
        return self.seconds[:, i], self.joules[:, i], self.macs[:, i], self.bytes[:, i]


def concat(parts: Sequence[SampleCosts]) -> SampleCosts:
    """The rows of several :class:`SampleCosts` one after another (zero rows for none)."""
    if not parts:
        z = _zeros(0)
        return SampleCosts(seconds=z[0], joules=z[1], macs=z[2], bytes=z[3])
    return SampleCosts(
        seconds=np.concatenate([c.seconds for c in parts]),
        joules=np.concatenate([c.joules for c in parts]),
        macs=np.concatenate([c.macs for c in parts]),
        bytes=np.concatenate([c.bytes for c in parts]),
    )


@dataclass(frozen=True)
class Walk:
    """Costs of serving samples along their paths, and what answered each one.

    ``answered`` is the exit whose answer the device got (``-1``: none);
    ``outage`` marks samples whose path hit an outage; ``by_what`` sums each
    ``(leg, what)`` for billing: ``(seconds, joules, macs, bytes)``.
    """

    costs: SampleCosts
    answered: IntArray
    outage: BoolArray
    by_what: dict[tuple[str, str], tuple[float, float, int, int]]


def _zeros(n: int) -> tuple[FloatArray, FloatArray, IntArray, IntArray]:
    shape = (n, len(LEGS))
    return np.zeros(shape), np.zeros(shape), np.zeros(shape, np.int64), np.zeros(shape, np.int64)


Totals = tuple[FloatArray, FloatArray, IntArray, IntArray]
Prices = dict[int, ComputeCost]


def _add(
    out: Totals,
    row: int,
    step: PathStep,
    cost: ComputeCost | None,
    res: TransferResult | None,
    by_what: dict[tuple[Leg, str], list[float]],
) -> None:
    if cost is not None:
        s, e, m, b = cost.latency_s, cost.energy_j, cost.macs, 0
    else:
        assert res is not None
        s, e, m, b = res.time_s, res.energy_j, 0, step.num_bytes
    j = LEG_INDEX[step.leg]
    out[0][row, j] += s
    out[1][row, j] += e
    out[2][row, j] += m
    out[3][row, j] += b
    acc = by_what.setdefault((step.leg, step.what), [0.0, 0.0, 0, 0])
    acc[0] += s
    acc[1] += e
    acc[2] += m
    acc[3] += b


def _walk_one(
    path: ExitPath,
    transfer: TransferFn,
    prices: Prices,
    out: Totals,
    row: int,
    by_what: dict[tuple[Leg, str], list[float]],
) -> tuple[int, bool]:
    """Walk one sample along ``path``; return (answered exit or -1, hit an outage)."""
    for step in path.steps:
        if step.work is not None:
            _add(out, row, step, prices[id(step)], None, by_what)
            continue
        res = transfer(step.leg, step.num_bytes)
        if res.outage:
            for fallback in path.fallback_steps:
                _add(out, row, fallback, prices[id(fallback)], None, by_what)
            return (-1 if path.fallback_exit is None else path.fallback_exit), True
        _add(out, row, step, None, res, by_what)
    return path.exit, False


def _price_steps(paths: Sequence[ExitPath], used: Sequence[int], price: PriceFn) -> Prices:
    """Each computation step of the used paths priced once (keyed by the step's identity)."""
    prices: Prices = {}
    for e in used:
        for step in (*paths[e].steps, *paths[e].fallback_steps):
            if step.work is not None and id(step) not in prices:
                prices[id(step)] = price(step.leg, step.work)
    return prices


def walk(
    exits: IntArray | Sequence[int],
    paths: Sequence[ExitPath],
    *,
    transfer: TransferFn,
    price: PriceFn,
    deterministic: bool,
) -> Walk:
    """Per-sample costs of serving sample ``i`` along ``paths[exits[i]]``.

    ``price(leg, work)`` prices each computation step (once per step), ``transfer(leg,
    bytes)`` each transfer. With ``deterministic=True`` (no fading or shadowing) each
    path is walked once and its cost repeated; otherwise every sample's transfers call
    ``transfer`` in sample order (one channel draw per request).
    """
    ex = np.asarray(exits, dtype=np.int64)
    n = int(ex.shape[0])
    out = _zeros(n)
    answered = np.full(n, -1, dtype=np.int64)
    outage = np.zeros(n, dtype=bool)
    by_what: dict[tuple[Leg, str], list[float]] = {}
    used = [int(e) for e in np.unique(ex).tolist()]
    prices = _price_steps(paths, used, price)
    if deterministic:
        for e in used:
            one = _zeros(1)
            local: dict[tuple[Leg, str], list[float]] = {}
            answer, failed = _walk_one(paths[e], transfer, prices, one, 0, local)
            members = ex == e
            for k in range(4):
                out[k][members] = one[k][0]
            answered[members] = answer
            outage[members] = failed
            count = int(members.sum())
            for key, values in local.items():
                acc = by_what.setdefault(key, [0.0, 0.0, 0, 0])
                for k in range(4):
                    acc[k] += values[k] * count
    else:
        for i in range(n):
            answered[i], outage[i] = _walk_one(paths[int(ex[i])], transfer, prices, out, i, by_what)
    totals: dict[tuple[str, str], tuple[float, float, int, int]] = {
        k: (float(v[0]), float(v[1]), round(v[2]), round(v[3])) for k, v in by_what.items()
    }
    costs = SampleCosts(seconds=out[0], joules=out[1], macs=out[2], bytes=out[3])
    return Walk(costs=costs, answered=answered, outage=outage, by_what=totals)


@dataclass(frozen=True)
class Figures:
    """The figures the issue asks for, for one mode over one set of samples.

    Attributes:
        samples: inferences served.
        accuracy: share of correct answers (no answer counts as wrong).
        offload_fraction: share of samples that sent anything over the uplink.
        latency_mean_s / latency_p50_s / latency_p95_s: end-to-end seconds per
            inference (mean; median and 95th percentile with linear interpolation).
        device_energy_per_inference_j: mean device joules (compute + radio).
        device_energy_j: total device joules.
        bytes_up / bytes_down: bytes on the devices' links.
        bytes_on_air_per_inference: ``(bytes_up + bytes_down) / samples``.
        backhaul_bytes: bytes between the edge and the cloud.
    """

    samples: int
    accuracy: float
    offload_fraction: float
    latency_mean_s: float
    latency_p50_s: float
    latency_p95_s: float
    device_energy_per_inference_j: float
    device_energy_j: float
    bytes_up: int
    bytes_down: int
    bytes_on_air_per_inference: float
    backhaul_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def figures(*, correct: BoolArray, costs: SampleCosts) -> Figures:
    """Summarise per-sample results and costs."""
    n = int(correct.shape[0])
    up = costs.bytes[:, LEG_INDEX["uplink"]]
    down = costs.bytes[:, LEG_INDEX["downlink"]]
    backhaul = costs.bytes[:, LEG_INDEX["backhaul_up"]] + costs.bytes[:, LEG_INDEX["backhaul_down"]]
    latency = costs.latency_s
    energy = costs.device_energy_j
    total_j = math.fsum(energy.tolist())
    return Figures(
        samples=n,
        accuracy=float(correct.mean()) if n else 0.0,
        offload_fraction=float((up > 0).mean()) if n else 0.0,
        latency_mean_s=float(latency.mean()) if n else 0.0,
        latency_p50_s=float(np.percentile(latency, 50)) if n else 0.0,
        latency_p95_s=float(np.percentile(latency, 95)) if n else 0.0,
        device_energy_per_inference_j=total_j / n if n else 0.0,
        device_energy_j=total_j,
        bytes_up=int(up.sum()),
        bytes_down=int(down.sum()),
        bytes_on_air_per_inference=float(up.sum() + down.sum()) / n if n else 0.0,
        backhaul_bytes=int(backhaul.sum()),
    )
