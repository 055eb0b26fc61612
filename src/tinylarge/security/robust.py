"""Robust aggregation rules and pre-aggregators against Byzantine clients.

A *rule* turns the round's update matrix (``n`` clients x ``d`` values, float64) into
one ``d``-vector; a *pre-aggregator* turns it into a new ``(m, d)`` matrix the rule
then reads (bucketing, nearest-neighbour mixing). Both are registered by name and
built from a flat options mapping, validated against the number of clients with
one-line :class:`~tinylarge.errors.TinylargeError` messages, so ``tinylarge validate``
can refuse a bad setting without running anything (:func:`check_options`).

========================  ========================  =================================
name                      options (default)         from
========================  ========================  =================================
``krum``                  ``f`` (0)                 Blanchard et al. 2017; ByzFL ``f``,
                                                    Flower ``num_malicious_clients``
``multi-krum``            ``f`` (0), ``m`` (n - f)  ByzFL's ``MultiKrum`` averages n - f;
                                                    Flower ``num_clients_to_keep``
``bulyan``                ``f`` (0)                 El Mhamdi et al. 2018, Flower
``median``                none                      Yin et al. 2018; Flower ``FedMedian``
``trimmed-mean``          ``beta`` (0.2)            Flower ``FedTrimmedAvg`` (fraction cut
                                                    from each tail)
``geometric-median``      ``nu`` (1e-6), ``T``      RFA (Pillutla et al. 2022); names
                          (100)                     ByzFL's, defaults of RFA's
                                                    ``geom_median`` (``eps``, ``maxiter``)
``centered-clipping``     ``tau`` (100), ``L`` (1)  Karimireddy et al. 2021; ByzFL
``fltrust``               none (``reference=``)     Cao et al. 2021
``bucketing`` (pre)       ``s`` (2)                 Karimireddy et al. 2022; ByzFL ``s``
``nnm`` (pre)             ``f`` (0)                 Allouah et al. 2023; ByzFL ``f``
========================  ========================  =================================

ByzFL's ``Bucketing`` defaults to ``s=1``, which only shuffles; the default here is 2,
the smallest bucket that mixes. ByzFL's ``GeometricMedian`` defaults (``nu=0.1``,
``T=3``, starting at zero) stop far from the median on updates of small norm, hence
RFA's. Rules that take ``weights`` (per-client sample counts) say so; the others ignore
them, because a Byzantine client can claim any sample count.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import numpy as np

from tinylarge.errors import TinylargeError, UnknownNameError
from tinylarge.registry import Registry
from tinylarge.security import _robust_math as rm

#: An option value after defaults are filled in (``None``: derived from the client count).
Value = float | int | None
Options = Mapping[str, float | int]


class RobustRule(Protocol):
    """``(n, d)`` update matrix -> one ``d``-vector.

    ``reference`` is the server's own update on its root data; only FLTrust reads it
    (see :data:`NEEDS_REFERENCE`), the other rules accept and ignore it.
    """

    def __call__(
        self,
        updates: np.ndarray,
        *,
        weights: np.ndarray | None = None,
        rng: np.random.Generator,
        reference: np.ndarray | None = None,
    ) -> np.ndarray: ...


class PreAggregator(Protocol):
    """``(n, d)`` update matrix -> a new ``(m, d)`` matrix for the rule to read."""

    def __call__(self, updates: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...

    def output_rows(self, num_clients: int) -> int:
        """How many rows a matrix of ``num_clients`` rows becomes (what the rule then sees)."""
        ...


T = TypeVar("T")


@dataclass(frozen=True)
class Spec(Generic[T]):
    """A registered rule or pre-aggregator: its options, their defaults, its bounds, its builder.

    ``bounds(options, n)`` returns what is wrong with the options for ``n`` clients
    (one clause, without the name), or ``None``.
    """

    defaults: Mapping[str, Value]
    integers: frozenset[str]
    bounds: Callable[[Mapping[str, Value], int], str | None]
    build: Callable[[Mapping[str, Value]], T]


#: Rules that need the server's reference update (``reference=`` on every call).
NEEDS_REFERENCE = frozenset({"fltrust"})


def _matrix(updates: np.ndarray) -> np.ndarray:
    x = np.asarray(updates, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"updates must be a non-empty (clients, values) matrix, got {x.shape}")
    return x


def _require(name: str, problem: str | None) -> None:
    if problem is not None:
        raise TinylargeError(f"{name}: {problem}")


# --- bounds: one clause saying what is wrong and what is allowed --------------------------------


def _f_nonneg(f: int) -> str | None:
    return None if f >= 0 else f"f={f} must be a non-negative count of Byzantine clients"


def _krum_bounds(f: int, n: int) -> str | None:
    if (bad := _f_nonneg(f)) is not None:
        return bad
    if n > 2 * f + 2:
        return None
    allowed = f"allowed f <= {(n - 3) // 2}" if n >= 3 else "it needs at least 3 clients"
    return f"f={f} Byzantine of n={n} clients needs n > 2f + 2; {allowed}"


def _multi_krum_bounds(f: int, m: int | None, n: int) -> str | None:
    if (bad := _krum_bounds(f, n)) is not None:
        return bad
    if m is not None and not 1 <= m <= n:
        return f"m={m} clients to average out of n={n}; allowed 1 <= m <= {n}"
    return None


def _bulyan_bounds(f: int, n: int) -> str | None:
    if (bad := _f_nonneg(f)) is not None:
        return bad
    if n >= 4 * f + 3:
        return None
    allowed = f"allowed f <= {(n - 3) // 4}" if n >= 3 else "it needs at least 3 clients"
    return f"f={f} Byzantine of n={n} clients needs n >= 4f + 3; {allowed}"


def _beta_bounds(beta: float) -> str | None:
    if 0.0 <= beta < 0.5:
        return None
    return f"trimmed fraction beta={beta} cut from each tail must satisfy 0 <= beta < 0.5"


def _positive(name: str, value: float) -> str | None:
    return None if value > 0 else f"{name}={value:g} must be > 0"


def _at_least_one(name: str, value: int) -> str | None:
    return None if value >= 1 else f"{name}={value} must be an integer >= 1"


def _nnm_bounds(f: int, n: int) -> str | None:
    if (bad := _f_nonneg(f)) is not None:
        return bad
    if 2 * f < n:
        return None
    return f"f={f} Byzantine of n={n} clients needs n > 2f; allowed f <= {(n - 1) // 2}"


def _bucket_bounds(s: int, n: int) -> str | None:
    if 1 <= s <= n:
        return None
    return f"bucket size s={s} for n={n} clients; allowed 1 <= s <= {n}"


def _int(o: Mapping[str, Value], key: str) -> int:
    v = o[key]
    assert v is not None
    return int(v)


def _float(o: Mapping[str, Value], key: str) -> float:
    v = o[key]
    assert v is not None
    return float(v)


# --- the rules ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Krum:
    """Blanchard et al., "Machine Learning with Adversaries: Byzantine Tolerant Gradient Descent",
    NeurIPS 2017 (https://papers.nips.cc/paper/6617): the update whose ``n - f - 2`` nearest
    others are closest (sum of squared L2 distances). Needs ``n > 2f + 2``. Ignores ``weights``.
    """

    f: int = 0

    def __call__(
        self,
        updates: np.ndarray,
        *,
        weights: np.ndarray | None = None,
        rng: np.random.Generator,
        reference: np.ndarray | None = None,
    ) -> np.ndarray:
        x = _matrix(updates)
        _require("krum", _krum_bounds(self.f, x.shape[0]))
        return rm.krum(x, self.f)


@dataclass(frozen=True)
class MultiKrum:
    """Blanchard et al. 2017's Multi-Krum: the mean of the ``m`` updates with the best Krum
    scores (``m=None``: ``n - f``, as ByzFL). Weighted by ``weights`` when given, as Flower's
    Multi-Krum weights its kept clients by sample count. Needs ``n > 2f + 2``.
    """

    f: int = 0
    m: int | None = None

    def __call__(
        self,
        updates: np.ndarray,
        *,
        weights: np.ndarray | None = None,
        rng: np.random.Generator,
        reference: np.ndarray | None = None,
    ) -> np.ndarray:
        x = _matrix(updates)
        n = x.shape[0]
        _require("multi-krum", _multi_krum_bounds(self.f, self.m, n))
        m = n - self.f if self.m is None else self.m
        w = None if weights is None else np.asarray(weights, dtype=np.float64)
        return rm.multi_krum(x, self.f, m, w)


@dataclass(frozen=True)
class Bulyan:
    """El Mhamdi et al., "The Hidden Vulnerability of Distributed Learning in Byzantium",
    ICML 2018 (https://arxiv.org/abs/1802.07927), over Krum: ``n - 2f`` updates chosen by
    repeated Krum, then per coordinate the mean of the ``n - 4f`` values closest to their
    median. Needs ``n >= 4f + 3``. Ignores ``weights``.
    """

    f: int = 0

    def __call__(
        self,
        updates: np.ndarray,
        *,
        weights: np.ndarray | None = None,
        rng: np.random.Generator,
        reference: np.ndarray | None = None,
    ) -> np.ndarray:
        x = _matrix(updates)
        _require("bulyan", _bulyan_bounds(self.f, x.shape[0]))
        return rm.bulyan(x, self.f)


@dataclass(frozen=True)
class Median:
    """Coordinate-wise median (Yin et al., ICML 2018, https://arxiv.org/abs/1803.01498; Flower's
    ``FedMedian``). Ignores ``weights``.
    """

    def __call__(
        self,
        updates: np.ndarray,
        *,
        weights: np.ndarray | None = None,
        rng: np.random.Generator,
        reference: np.ndarray | None = None,
    ) -> np.ndarray:
        return rm.coordinate_median(_matrix(updates))


@dataclass(frozen=True)
class TrimmedMean:
    """Coordinate-wise trimmed mean (Yin et al. 2018; Flower's ``FedTrimmedAvg``): per
    coordinate drop the ``int(beta * n)`` largest and smallest values and average the rest.
    ``0 <= beta < 0.5``. Ignores ``weights``.
    """

    beta: float = 0.2

    def __call__(
        self,
        updates: np.ndarray,
        *,
        weights: np.ndarray | None = None,
        rng: np.random.Generator,
        reference: np.ndarray | None = None,
    ) -> np.ndarray:
        return rm.trimmed_mean(_matrix(updates), self.beta)


@dataclass(frozen=True)
class GeometricMedian:
    """RFA's geometric median (Pillutla et al., IEEE TSP 2022, https://arxiv.org/abs/1912.13445):
    at most ``T`` smoothed Weiszfeld steps from the weighted mean, distances floored at ``nu``.
    Weighted by ``weights`` when given (RFA weighs clients by sample count).
    """

    nu: float = 1e-6
    iterations: int = 100

    def __call__(
        self,
        updates: np.ndarray,
        *,
        weights: np.ndarray | None = None,
        rng: np.random.Generator,
        reference: np.ndarray | None = None,
    ) -> np.ndarray:
        w = None if weights is None else np.asarray(weights, dtype=np.float64)
        return rm.geometric_median(
            _matrix(updates), nu=self.nu, iterations=self.iterations, weights=w
        )


@dataclass
class CenteredClipping:
    """Karimireddy et al., "Learning from History for Byzantine Robust Optimization", ICML 2021
    (https://arxiv.org/abs/2012.10333): ``L`` steps of
    ``v <- v + mean_i (x_i - v) min(1, tau / |x_i - v|)`` from the previous round's output
    (zero in the first round), so one client moves the result by at most ``L tau / n``.
    Stateful: :meth:`state` / :meth:`load_state` carry the centre across a resume.
    Ignores ``weights``.
    """

    tau: float = 100.0
    iterations: int = 1
    center: np.ndarray | None = field(default=None)

    def __call__(
        self,
        updates: np.ndarray,
        *,
        weights: np.ndarray | None = None,
        rng: np.random.Generator,
        reference: np.ndarray | None = None,
    ) -> np.ndarray:
        x = _matrix(updates)
        start = np.zeros(x.shape[1]) if self.center is None else self.center
        if start.shape != (x.shape[1],):
            raise ValueError(f"centre of shape {start.shape} for updates of {x.shape[1]} values")
        out = rm.centered_clipping(x, start, tau=self.tau, iterations=self.iterations)
        self.center = out.copy()
        return out

    def state(self) -> dict[str, np.ndarray]:
        """The centre for the next round (empty before the first)."""
        return {} if self.center is None else {"center": self.center.copy()}

    def load_state(self, state: Mapping[str, np.ndarray | float]) -> None:
        """Restore :meth:`state`'s output."""
        c = state.get("center")
        self.center = None if c is None else np.asarray(c, dtype=np.float64).copy()


@dataclass(frozen=True)
class FLTrust:
    """Cao et al., "FLTrust: Byzantine-robust Federated Learning via Trust Bootstrapping", NDSS
    2021 (https://arxiv.org/abs/2012.13995): each update rescaled to the norm of the server's
    ``reference`` update (computed on its root data) and weighted by ``ReLU(cos(x_i, ref))``;
    zeros when no client is trusted. ``reference`` is required. Ignores ``weights``.
    """

    def __call__(
        self,
        updates: np.ndarray,
        *,
        weights: np.ndarray | None = None,
        rng: np.random.Generator,
        reference: np.ndarray | None = None,
    ) -> np.ndarray:
        x = _matrix(updates)
        if reference is None:
            raise ValueError("fltrust needs reference=, the server's update on its root data")
        ref = np.asarray(reference, dtype=np.float64)
        if ref.shape != (x.shape[1],):
            raise ValueError(f"reference of shape {ref.shape} for updates of {x.shape[1]} values")
        return rm.fltrust(x, ref)


# --- pre-aggregators --------------------------------------------------------------------------


@dataclass(frozen=True)
class Bucketing:
    """Karimireddy, He and Jaggi, "Byzantine-Robust Learning on Heterogeneous Datasets via
    Bucketing", ICLR 2022 (https://arxiv.org/abs/2006.09365): shuffle the updates with ``rng``
    and average buckets of ``s``; ``ceil(n / s)`` rows out.
    """

    s: int = 2

    def __call__(self, updates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = _matrix(updates)
        _require("bucketing", _bucket_bounds(self.s, x.shape[0]))
        return rm.bucketing(x, self.s, rng)

    def output_rows(self, num_clients: int) -> int:
        return -(-num_clients // self.s)


@dataclass(frozen=True)
class NearestNeighbourMixing:
    """Allouah et al., "Fixing by Mixing: A Recipe for Optimal Byzantine ML under
    Heterogeneity", AISTATS 2023 (https://arxiv.org/abs/2302.01772): each update replaced by
    the mean of its ``n - f`` nearest updates (itself included). Needs ``n > 2f``.
    """

    f: int = 0

    def __call__(self, updates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = _matrix(updates)
        _require("nnm", _nnm_bounds(self.f, x.shape[0]))
        return rm.nearest_neighbour_mixing(x, self.f)

    def output_rows(self, num_clients: int) -> int:
        return num_clients


# --- registries -------------------------------------------------------------------------------

RULES: Registry[Spec[RobustRule]] = Registry("robust aggregation rule")
RULES.add(
    "krum",
    Spec(
        {"f": 0},
        frozenset({"f"}),
        lambda o, n: _krum_bounds(_int(o, "f"), n),
        lambda o: Krum(f=_int(o, "f")),
    ),
)
RULES.add(
    "multi-krum",
    Spec(
        {"f": 0, "m": None},
        frozenset({"f", "m"}),
        lambda o, n: _multi_krum_bounds(_int(o, "f"), None if o["m"] is None else _int(o, "m"), n),
        lambda o: MultiKrum(f=_int(o, "f"), m=None if o["m"] is None else _int(o, "m")),
    ),
)
RULES.add(
    "bulyan",
    Spec(
        {"f": 0},
        frozenset({"f"}),
        lambda o, n: _bulyan_bounds(_int(o, "f"), n),
        lambda o: Bulyan(f=_int(o, "f")),
    ),
)
RULES.add("median", Spec({}, frozenset(), lambda o, n: None, lambda o: Median()))
RULES.add(
    "trimmed-mean",
    Spec(
        {"beta": 0.2},
        frozenset(),
        lambda o, n: _beta_bounds(_float(o, "beta")),
        lambda o: TrimmedMean(beta=_float(o, "beta")),
    ),
)
RULES.add(
    "geometric-median",
    Spec(
        {"nu": 1e-6, "T": 100},
        frozenset({"T"}),
        lambda o, n: _positive("nu", _float(o, "nu")) or _at_least_one("T", _int(o, "T")),
        lambda o: GeometricMedian(nu=_float(o, "nu"), iterations=_int(o, "T")),
    ),
)
RULES.add(
    "centered-clipping",
    Spec(
        {"tau": 100.0, "L": 1},
        frozenset({"L"}),
        lambda o, n: _positive("tau", _float(o, "tau")) or _at_least_one("L", _int(o, "L")),
        lambda o: CenteredClipping(tau=_float(o, "tau"), iterations=_int(o, "L")),
    ),
)
RULES.add("fltrust", Spec({}, frozenset(), lambda o, n: None, lambda o: FLTrust()))

PRE_AGGREGATORS: Registry[Spec[PreAggregator]] = Registry("pre-aggregator")
PRE_AGGREGATORS.add(
    "bucketing",
    Spec(
        {"s": 2},
        frozenset({"s"}),
        lambda o, n: _bucket_bounds(_int(o, "s"), n),
        lambda o: Bucketing(s=_int(o, "s")),
    ),
)
PRE_AGGREGATORS.add(
    "nnm",
    Spec(
        {"f": 0},
        frozenset({"f"}),
        lambda o, n: _nnm_bounds(_int(o, "f"), n),
        lambda o: NearestNeighbourMixing(f=_int(o, "f")),
    ),
)


def _resolve(name: str, spec: Spec[T], options: Options) -> dict[str, Value]:
    """``options`` over the defaults; unknown names and non-integral counts refused."""
    out: dict[str, Value] = dict(spec.defaults)
    for key, value in options.items():
        if key not in spec.defaults:
            allowed = ", ".join(sorted(spec.defaults)) or "none"
            raise TinylargeError(f"{name}: unknown option {key!r}; allowed: {allowed}")
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TinylargeError(f"{name}: option {key}={value!r} must be a number")
        if key in spec.integers:
            if not float(value).is_integer():
                raise TinylargeError(f"{name}: option {key}={value!r} must be an integer")
            value = int(value)
        out[key] = value
    return out


def _checked(name: str, spec: Spec[T], options: Options, num_clients: int) -> dict[str, Value]:
    opts = _resolve(name, spec, options)
    _require(name, spec.bounds(opts, num_clients))
    return opts


def make_rule(name: str, options: Options, *, num_clients: int) -> RobustRule:
    """The rule ``name`` with ``options`` over its defaults, validated for ``num_clients``.

    ``num_clients`` is what the rule will see: after a pre-aggregator, its
    :meth:`PreAggregator.output_rows`. Raises :class:`TinylargeError` (one line) for an
    unknown name or option or a setting the client count does not allow.

    >>> make_rule("krum", {"f": 5}, num_clients=10)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tinylarge.errors.TinylargeError: krum: f=5 Byzantine of n=10 clients needs n > 2f + 2; ...
    """
    spec = RULES[name]
    return spec.build(_checked(name, spec, options, num_clients))


def make_pre(name: str, options: Options, *, num_clients: int) -> PreAggregator:
    """The pre-aggregator ``name``, options over its defaults, validated for ``num_clients``."""
    spec = PRE_AGGREGATORS[name]
    return spec.build(_checked(name, spec, options, num_clients))


def check_options(name: str, options: Options, *, num_clients: int) -> None:
    """:func:`make_rule`'s (or :func:`make_pre`'s) validation alone, for config validation."""
    if name in RULES:
        _checked(name, RULES[name], options, num_clients)
    elif name in PRE_AGGREGATORS:
        _checked(name, PRE_AGGREGATORS[name], options, num_clients)
    else:
        raise UnknownNameError(
            "robust aggregation rule or pre-aggregator", name, [*RULES, *PRE_AGGREGATORS]
        )
