"""Partitioners: split a training set over federated clients (pure functions).

Each partitioner takes the training labels and returns one sorted int64
index array per client; together they are disjoint and cover every sample.
The same seed gives the same partition. Use them by name through
:func:`partition`, or call them directly.

- ``iid``: a uniform random split into near-equal parts.
- ``dirichlet``: label skew. For every class, client shares are drawn from
  Dir(alpha); small alpha gives clients few classes. Draws are repeated until
  every client holds at least ``min_size`` samples, and clients that already
  hold ``n / num_clients`` samples get no more of the next classes: the
  implementation of Li et al., "Federated Learning on Non-IID Data Silos"
  (NIID-Bench, arXiv:2102.02079), used by FedLab, for the scheme of Hsu et al.
  2019 (arXiv:1909.06335).
- ``shards``: McMahan et al. 2017 (arXiv:1602.05629) pathological non-IID:
  samples sorted by label, cut into ``shards_per_client * num_clients``
  shards, each client gets ``shards_per_client`` random shards.
- ``quantity``: quantity skew. Client sizes from Dir(alpha) or a lognormal
  (sigma) over the samples left after ``min_size`` each; labels stay IID.
- ``groups``: a natural partition (e.g. FSDD speakers): the distinct group
  ids are shuffled and dealt to clients; with as many clients as groups,
  each client is exactly one group.

Every parameter has one range, in :data:`PARAMETERS`; :func:`options_model`
turns a partitioner's signature into the pydantic model the experiment config
checks ``task.partition.options`` with (``tinylarge validate``), and
:func:`partition` checks its arguments with the same model.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, Field

from tinylarge import bounds
from tinylarge.bounds import signature_model
from tinylarge.errors import TinylargeError
from tinylarge.registry import Registry

IntArray = NDArray[np.int64]
Partitioner = Callable[..., list[IntArray]]

#: Partitioners by name.
PARTITIONERS: Registry[Partitioner] = Registry("partitioner")
#: Give up a Dirichlet partition after this many draws that leave a client too small.
DIRICHLET_MAX_DRAWS = 1000
_FIXED_ARGS = ("num_clients", "seed", "groups")
#: Most samples a client, a shard count or a minimum size may name (the config's bound too).
MAX_SAMPLES = 10_000_000

#: The range of every partitioner parameter, by name (one range per name, for every
#: partitioner that takes it). Dirichlet concentrations below 1e-3 put (numerically) all of
#: a class on one client, the limit the partition of alpha = 1e-3 already shows; above 1e6 a
#: draw equals the IID one. A lognormal sigma of 10 already spans e^-60..e^60 in sizes; far
#: larger ones overflow float64.
PARAMETERS: dict[str, Any] = {
    "alpha": Annotated[float, Field(ge=1e-3, le=1e6, allow_inf_nan=False)],
    "min_size": Annotated[int, Field(ge=0, le=MAX_SAMPLES)],
    "shards_per_client": Annotated[int, Field(ge=1, le=MAX_SAMPLES)],
    "sigma": Annotated[float, Field(ge=0, le=10, allow_inf_nan=False)],
    "distribution": Literal["dirichlet", "lognormal"],
    "per_client": Annotated[int, Field(ge=0, le=MAX_SAMPLES)],
}


def _labels(labels: ArrayLike, num_clients: int, *, cover: bool = True) -> IntArray:
    array = np.asarray(labels)
    if array.ndim != 1:
        raise TinylargeError(f"labels must be one-dimensional, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise TinylargeError(f"labels must be integers, got {array.dtype}")
    if num_clients < 1:
        raise TinylargeError(f"num_clients must be >= 1, got {num_clients}")
    if cover and num_clients > array.shape[0]:
        raise TinylargeError(
            f"num_clients ({num_clients}) exceeds the number of samples ({array.shape[0]})"
        )
    return array.astype(np.int64, copy=False)


def _finish(parts: list[NDArray[Any]]) -> list[IntArray]:
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def _apportion(weights: NDArray[np.float64], total: int) -> IntArray:
    """Integers summing to ``total`` in proportion to ``weights`` (largest remainder)."""
    exact = weights / weights.sum() * total
    counts: IntArray = np.floor(exact).astype(np.int64)
    short = total - int(counts.sum())
    counts[np.argsort(-(exact - counts), kind="stable")[:short]] += 1
    return counts


@PARTITIONERS.register("iid")
def iid(labels: ArrayLike, *, num_clients: int, seed: int, per_client: int = 0) -> list[IntArray]:
    """Uniform random split into ``num_clients`` parts whose sizes differ by at most one.

    ``per_client`` > 0 instead gives every client ``per_client`` samples drawn uniformly
    with replacement, independently of the other clients: the parts overlap and need not
    cover the data, so a fleet may outnumber the samples (a million devices over
    Fashion-MNIST's 60,000, as bench/engine_scale.py configures)."""
    if per_client:
        n = _labels(labels, num_clients, cover=False).shape[0]
        draws = np.random.default_rng(seed).integers(0, n, size=(num_clients, per_client))
        return list(np.sort(draws, axis=1))
    y = _labels(labels, num_clients)
    perm = np.random.default_rng(seed).permutation(y.shape[0])
    return _finish(np.array_split(perm, num_clients))


@PARTITIONERS.register("dirichlet")
def dirichlet(
    labels: ArrayLike, *, num_clients: int, seed: int, alpha: float = 0.5, min_size: int = 10
) -> list[IntArray]:
    """Label skew by per-class Dirichlet(alpha) shares (see the module docstring).

    ``alpha`` > 0 (0.1 strong skew, 100 close to IID); every client gets at
    least ``min_size`` samples.
    """
    y = _labels(labels, num_clients)
    n = y.shape[0]
    if not alpha > 0:
        raise TinylargeError(f"dirichlet alpha must be > 0, got {alpha}")
    if min_size < 0 or min_size * num_clients > n:
        raise TinylargeError(
            f"dirichlet min_size ({min_size}) times num_clients ({num_clients}) must not exceed "
            f"the {n} samples; lower min_size"
        )
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(y == k) for k in np.unique(y)]
    for _ in range(DIRICHLET_MAX_DRAWS):
        parts: list[list[IntArray]] = [[] for _ in range(num_clients)]
        sizes = np.zeros(num_clients, dtype=np.int64)
        for members in by_class:
            shuffled = rng.permutation(members)
            shares = rng.dirichlet(np.full(num_clients, alpha))
            shares = shares * (sizes < n / num_clients)
            total = shares.sum()
            if not total > 0:  # all of this class's mass on full clients (tiny alpha): redraw
                break
            shares = shares / total
            cuts = (np.cumsum(shares) * shuffled.shape[0]).astype(np.int64)[:-1]
            for client, piece in enumerate(np.split(shuffled, cuts)):
                parts[client].append(piece)
                sizes[client] += piece.shape[0]
        else:
            if sizes.min() >= min_size:
                return _finish([np.concatenate(p) for p in parts])
    raise TinylargeError(
        f"dirichlet partition: no draw in {DIRICHLET_MAX_DRAWS} gave every client "
        f"{min_size} samples; raise alpha ({alpha}) or lower min_size"
    )


@PARTITIONERS.register("shards")
def shards(
    labels: ArrayLike, *, num_clients: int, seed: int, shards_per_client: int = 2
) -> list[IntArray]:
    """McMahan et al. 2017 pathological non-IID: ``shards_per_client`` label-sorted shards each."""
    y = _labels(labels, num_clients)
    if shards_per_client < 1:
        raise TinylargeError(f"shards_per_client must be >= 1, got {shards_per_client}")
    num_shards = shards_per_client * num_clients
    if num_shards > y.shape[0]:
        raise TinylargeError(
            f"shards: {num_shards} shards ({shards_per_client} per client) exceed the "
            f"{y.shape[0]} samples"
        )
    rng = np.random.default_rng(seed)
    perm = rng.permutation(y.shape[0])
    order = perm[np.argsort(y[perm], kind="stable")]  # by label, random within a label
    pieces = np.array_split(order, num_shards)
    dealt = rng.permutation(num_shards).reshape(num_clients, shards_per_client)
    return _finish([np.concatenate([pieces[s] for s in row]) for row in dealt])


@PARTITIONERS.register("quantity")
def quantity(
    labels: ArrayLike,
    *,
    num_clients: int,
    seed: int,
    distribution: str = "dirichlet",
    alpha: float = 0.5,
    sigma: float = 1.0,
    min_size: int = 1,
) -> list[IntArray]:
    """Quantity skew: sizes are ``min_size`` plus Dir(alpha) or lognormal(0, sigma) shares.

    Labels stay IID (a random permutation is cut at those sizes).
    """
    y = _labels(labels, num_clients)
    n = y.shape[0]
    if min_size < 0 or min_size * num_clients > n:
        raise TinylargeError(
            f"quantity min_size ({min_size}) times num_clients ({num_clients}) must not exceed "
            f"the {n} samples"
        )
    rng = np.random.default_rng(seed)
    if distribution == "dirichlet":
        if not alpha > 0:
            raise TinylargeError(f"quantity alpha must be > 0, got {alpha}")
        weights = rng.dirichlet(np.full(num_clients, alpha))
    elif distribution == "lognormal":
        if not sigma >= 0:
            raise TinylargeError(f"quantity sigma must be >= 0, got {sigma}")
        weights = rng.lognormal(0.0, sigma, size=num_clients)
    else:
        raise TinylargeError(
            f"quantity distribution {distribution!r} unknown; known: dirichlet, lognormal"
        )
    if not (np.isfinite(weights).all() and weights.sum() > 0):
        raise TinylargeError(
            f"quantity partition: the {distribution} draw has no usable sizes "
            f"(alpha {alpha}, sigma {sigma}); raise alpha or lower sigma"
        )
    sizes = min_size + _apportion(weights, n - min_size * num_clients)
    perm = rng.permutation(n)
    return _finish(np.split(perm, np.cumsum(sizes)[:-1]))


@PARTITIONERS.register("groups")
def groups(
    labels: ArrayLike, *, num_clients: int, seed: int, groups: ArrayLike | None = None
) -> list[IntArray]:
    """Natural partition: whole groups (e.g. speakers) dealt to clients."""
    y = _labels(labels, num_clients)
    if groups is None:
        raise TinylargeError(
            "partitioner 'groups' needs groups (one id per sample, e.g. Dataset.groups_train)"
        )
    g = np.asarray(groups)
    if g.shape != y.shape:
        raise TinylargeError(f"groups has shape {g.shape}, labels {y.shape}: one group per sample")
    distinct = np.unique(g)
    if num_clients > distinct.shape[0]:
        raise TinylargeError(
            f"num_clients ({num_clients}) exceeds the number of groups ({distinct.shape[0]})"
        )
    rng = np.random.default_rng(seed)
    dealt = np.array_split(distinct[rng.permutation(distinct.shape[0])], num_clients)
    return _finish([np.flatnonzero(np.isin(g, chunk)) for chunk in dealt])


def partition(
    name: str,
    labels: ArrayLike,
    *,
    num_clients: int,
    seed: int,
    groups: ArrayLike | None = None,
    **params: Any,
) -> list[IntArray]:
    """Split sample indices over ``num_clients`` clients with the partitioner ``name``.

    ``groups`` goes to partitioners that use it (``groups``) and is ignored by
    the others; ``params`` are the partitioner's own (``alpha``, ``min_size``,
    ``shards_per_client``, ...). Returns one sorted int64 index array per
    client: disjoint, covering every sample (except ``iid`` with ``per_client``), the
    same for the same seed.
    """
    fn = PARTITIONERS[name]
    params = check_options(name, params)
    if "groups" in inspect.signature(fn).parameters:
        params["groups"] = groups
    return fn(labels, num_clients=num_clients, seed=seed, **params)


@functools.cache
def options_model(name: str) -> type[BaseModel]:
    """The pydantic model of partitioner ``name``'s own parameters: their defaults from its
    signature, their ranges from :data:`PARAMETERS`; unknown parameters are refused."""
    return signature_model(name, PARTITIONERS[name], PARAMETERS, skip=_FIXED_ARGS)


def check_options(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` of partitioner ``name`` checked against :func:`options_model` (the ones
    given, converted: ``2.0`` becomes ``2``), or a :class:`TinylargeError` of one line."""
    return bounds.check_options(options_model(name), params, what=f"partitioner {name!r}")


def partitioner_names() -> list[str]:
    """Names accepted by :func:`partition`."""
    return PARTITIONERS.names()
