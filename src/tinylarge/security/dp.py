"""User-level differential privacy for federated averaging (DP-FedAvg).

McMahan et al., "Learning Differentially Private Recurrent Language Models", ICLR 2018,
https://arxiv.org/abs/1710.06963: each sampled client's model *update* (its trained
weights minus the global weights it started from) is clipped to L2 norm ``C``, the
server averages the clipped updates over the expected number of clients per round
``m`` (the fixed-denominator estimator, so one client moves the average by at most
``C / m``) and adds Gaussian noise of standard deviation ``z * C / m`` to every
coordinate. Adaptive clipping (Andrew et al., "Differentially Private Learning with
Adaptive Clipping", NeurIPS 2021, https://arxiv.org/abs/1905.03871) moves ``C``
each round towards the ``target_clipped_quantile`` of the update norms, from a
noised count of unclipped updates, and spends part of the privacy budget on that
count.

Names and meanings follow Flower's wrappers (``noise_multiplier``, ``clipping_norm``,
``initial_clipping_norm``, ``target_clipped_quantile``, ``clip_norm_lr``,
``clipped_count_stddev``), with two differences, both for the guarantee: the
average is unweighted with a fixed denominator (Flower's wrapped FedAvg weights by
sample count, which lets one client's weight exceed ``1 / m``), and adaptive
clipping noises this round's average with the norm this round clipped to (Flower
uses the norm already updated for the next round).

This module is numpy only; :class:`tinylarge.sim.rounds.Round` calls it where
updates leave a device (:meth:`UserDp.on_device`) and where they meet
(:meth:`UserDp.aggregate`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tinylarge.errors import TinylargeError
from tinylarge.models.weights import Weights
from tinylarge.sim.aggregation import Update

if TYPE_CHECKING:
    from tinylarge.security.accounting import Sampling

#: Where clipping happens: on the server (it sees each update) or on the device.
CLIPPINGS = ("server-fixed", "server-adaptive", "client-fixed")


def l2_norm(tensors: Sequence[np.ndarray | None]) -> float:
    """L2 norm over every carried floating tensor, accumulated in float64."""
    total = 0.0
    for t in tensors:
        if t is not None and np.issubdtype(t.dtype, np.floating):
            total += float(np.sum(np.square(t, dtype=np.float64)))
    return math.sqrt(total)


def clip(delta: Sequence[np.ndarray | None], bound: float) -> tuple[list[np.ndarray | None], bool]:
    """``delta`` scaled down to L2 norm at most ``bound``, and whether it was within it already.

    >>> out, within = clip([np.array([3.0, 4.0])], 1.0)
    >>> out[0].tolist(), within
    ([0.6000000000000001, 0.8], False)
    """
    norm = l2_norm(delta)
    within = norm <= bound
    scale = 1.0 if within else bound / norm
    return [None if t is None else _scaled(t, scale) for t in delta], within


def _scaled(t: np.ndarray, scale: float) -> np.ndarray:
    if not np.issubdtype(t.dtype, np.floating) or scale == 1.0:
        return t
    return (t.astype(np.float64) * scale).astype(t.dtype)


def adaptive_noise_multiplier(noise_multiplier: float, count_stddev: float) -> float:
    """The noise multiplier left for the updates when the clipped count takes its share.

    Andrew et al. 2021, section 3: noising the updates with ``z_delta`` and the count
    (sensitivity 1/2) with ``count_stddev`` composes to one Gaussian mechanism of
    multiplier ``z = (z_delta^-2 + (2 count_stddev)^-2)^-1/2``, so
    ``z_delta = (z^-2 - (2 count_stddev)^-2)^-1/2``; that needs ``z < 2 count_stddev``.

    >>> round(adaptive_noise_multiplier(1.0, 0.5), 6)
    inf
    >>> round(adaptive_noise_multiplier(1.0, 5.0), 4)
    1.005
    """
    if noise_multiplier == 0:
        return 0.0
    if noise_multiplier >= 2 * count_stddev:
        return math.inf
    return float((noise_multiplier**-2 - (2 * count_stddev) ** -2) ** -0.5)


@dataclass
class UserDp:
    """DP-FedAvg for one run: clipping on the device or the server, noise on the server.

    ``num_sampled`` is the expected number of clients per round (the average's fixed
    denominator ``m``); ``noise_multiplier`` is ``z``, the multiplier the accountant
    sees (for adaptive clipping, the updates get the larger :attr:`update_noise`).
    """

    clipping: str
    noise_multiplier: float
    num_sampled: int
    clipping_norm: float
    target_clipped_quantile: float = 0.5
    clip_norm_lr: float = 0.2
    clipped_count_stddev: float | None = None
    #: Distributed DP (with secure aggregation): each device adds its share of the noise,
    #: standard deviation ``z C / sqrt(m)``, so ``m`` shares sum to the central ``z C``.
    distributed: bool = False
    #: what the last aggregation did (for metrics): the norm it clipped to, the unclipped share
    last_clip: float | None = None
    last_unclipped: float | None = None

    def __post_init__(self) -> None:
        if self.clipping not in CLIPPINGS:
            raise TinylargeError(
                f"unknown clipping {self.clipping!r}; known: {', '.join(CLIPPINGS)}"
            )
        if self.clipping == "server-adaptive":
            if self.clipped_count_stddev is None:
                self.clipped_count_stddev = self.num_sampled / 20
            if math.isinf(self.update_noise):
                raise TinylargeError(
                    f"privacy.dp: adaptive clipping with noise_multiplier "
                    f"{self.noise_multiplier:g} needs clipped_count_stddev above "
                    f"{self.noise_multiplier / 2:g} (it is {self.clipped_count_stddev:g}: "
                    "clients per round / 20 by default); raise it, sample more clients per "
                    "round or lower the noise"
                )

    @property
    def update_noise(self) -> float:
        """The noise multiplier of the averaged update (``z``, or ``z_delta`` when adaptive)."""
        if self.clipping != "server-adaptive":
            return self.noise_multiplier
        assert self.clipped_count_stddev is not None
        return adaptive_noise_multiplier(self.noise_multiplier, self.clipped_count_stddev)

    # -- on the device -----------------------------------------------------------------------
    def on_device(
        self, update: Update, base: Weights, *, rng: np.random.Generator | None = None
    ) -> Update:
        """What a device sends: with client-side clipping, its clipped update (plus, when
        :attr:`distributed`, its share of the noise, drawn from ``rng``) applied to ``base``;
        otherwise ``update`` unchanged."""
        if self.clipping != "client-fixed":
            return update
        clipped, _ = clip(_delta(update, base), self.clipping_norm)
        if self.distributed and self.noise_multiplier > 0:
            if rng is None:
                raise ValueError("distributed DP needs the device's noise generator")
            std = self.noise_multiplier * self.clipping_norm / math.sqrt(self.num_sampled)
            clipped = [
                d if d is None or not np.issubdtype(d.dtype, np.floating)
                else (d.astype(np.float64) + rng.normal(0.0, std, size=d.shape)).astype(d.dtype)
                for d in clipped
            ]  # fmt: skip
        return Update(update.client, _apply(base, clipped), update.num_samples)

    def device_work(self, update: Update) -> int:
        """Values a device touches to clip (norm, then scale) and, when distributed, to draw
        and add its noise: 0 without client-side clipping."""
        if self.clipping != "client-fixed":
            return 0
        values = sum(int(t.size) for t in update.tensors if t is not None)
        return (4 if self.distributed else 2) * values

    def realized_multiplier(self, survivors: int) -> float:
        """Distributed DP: the noise multiplier the sum really carries when ``survivors`` of the
        expected ``m`` devices' noise shares arrived (``z sqrt(survivors / m)``)."""
        return self.noise_multiplier * math.sqrt(survivors / self.num_sampled)

    # -- on the server -----------------------------------------------------------------------
    def aggregate(
        self, updates: Sequence[Update], *, base: Weights, rng: np.random.Generator
    ) -> Weights:
        """``base`` plus the fixed-denominator mean of the clipped updates plus Gaussian noise
        of standard deviation ``update_noise * C / m`` on every floating value any update
        carries. Integer buffers take the maximum, as in plain FedAvg."""
        bound = self.clipping_norm
        deltas, unclipped = [], 0
        for u in updates:
            d = _delta(u, base)
            if self.clipping != "client-fixed":  # client-side updates arrive clipped
                d, within = clip(d, bound)
                unclipped += within
            deltas.append(d)
        m = self.num_sampled
        std = self.update_noise * bound / m
        out: Weights = []
        for i, current in enumerate(base):
            carried = [t for d in deltas if (t := d[i]) is not None]
            if not carried:
                out.append(current)
                continue
            if not np.issubdtype(current.dtype, np.floating):
                out.append(np.max(np.stack(carried), axis=0))
                continue
            acc = np.sum([np.asarray(t, dtype=np.float64) for t in carried], axis=0) / m
            if std > 0:
                acc = acc + rng.normal(0.0, std, size=current.shape)
            out.append((current.astype(np.float64) + acc).astype(current.dtype))
        self.last_clip = bound
        self.last_unclipped = unclipped / len(updates) if updates else None
        if self.clipping == "server-adaptive" and updates:
            self._adapt(unclipped, len(updates), rng)
        return out

    def _adapt(self, unclipped: int, arrived: int, rng: np.random.Generator) -> None:
        """Geometric update of the clipping norm from the noised unclipped count (Andrew et
        al. 2021, Algorithm 1)."""
        assert self.clipped_count_stddev is not None
        noised = unclipped + (
            rng.normal(0.0, self.clipped_count_stddev) if self.noise_multiplier > 0 else 0.0
        )
        fraction = noised / arrived
        self.clipping_norm *= math.exp(
            -self.clip_norm_lr * (fraction - self.target_clipped_quantile)
        )

    def server_values(self, updates: Sequence[Update]) -> int:
        """Values the server touches beyond plain averaging: norm and scale of each update
        it clips, one noise draw per averaged value."""
        carried = sum(int(t.size) for u in updates for t in u.tensors if t is not None)
        per_update = max(
            (sum(int(t.size) for t in u.tensors if t is not None) for u in updates), default=0
        )
        clip_work = 2 * carried if self.clipping != "client-fixed" else 0
        return clip_work + per_update

    # -- resume ------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"clipping_norm": self.clipping_norm}

    def load_state(self, state: dict[str, Any]) -> None:
        self.clipping_norm = float(state["clipping_norm"])


def _delta(update: Update, base: Weights) -> list[np.ndarray | None]:
    return [
        None if t is None else (t - b if np.issubdtype(b.dtype, np.floating) else t)
        for t, b in zip(update.tensors, base, strict=True)
    ]


def _apply(base: Weights, delta: Sequence[np.ndarray | None]) -> list[np.ndarray | None]:
    return [
        None
        if d is None
        else ((b + d).astype(b.dtype) if np.issubdtype(b.dtype, np.floating) else d)
        for b, d in zip(base, delta, strict=True)
    ]


@dataclass
class PrivateAveraging:
    """DP-FedAvg over a run: the mechanism (:class:`UserDp`) and what its accountant is told.

    The accountant composes one subsampled Gaussian mechanism per round, with the
    sampling the run really used (``training.sampling``):

    - ``poisson``: each of the ``population`` devices joins a round with probability
      ``q = training.fraction``; neighbouring fleets differ by adding or removing one
      device, whose clipped update moves the sum by at most ``C``: the accountant's
      multiplier is ``z``.
    - ``fixed``: ``k`` of ``population`` devices without replacement; dp-accounting
      analyses this under replace-one neighbours (Wang, Balle and Kasiviswanathan
      2019), where the sum moves by up to ``2C``: :mod:`tinylarge.security.accounting`
      accounts it with multiplier ``z/2``.
    """

    dp: UserDp
    delta: float
    accountant: str
    sampling: Sampling
    population: int
    sampling_rate: float
    #: Distributed DP: the noise multiplier each round's sum really carried (``None``: the
    #: round released nothing, e.g. secure aggregation aborted), by round.
    realized: dict[int, float | None] = field(default_factory=dict)

    def epsilon(self, rounds: int) -> float:
        """epsilon at :attr:`delta` after ``rounds`` noised aggregations (0 before any). The
        accountant is given the noise multiplier (noise std over the clipping norm) and halves
        it itself under fixed-size sampling's replace-one relation."""
        if rounds <= 0:
            return 0.0
        if self.dp.noise_multiplier == 0:
            return math.inf  # no noise: no privacy
        if self.dp.distributed:
            return self._distributed_epsilon(rounds)
        from tinylarge.security.accounting import DpSpec, epsilon

        return epsilon(
            DpSpec(
                noise_multiplier=self.dp.noise_multiplier,
                sampling_rate=self.sampling_rate,
                steps=rounds,
                delta=self.delta,
                accountant=self.accountant,
                sampling=self.sampling,
                population=self.population,
            )
        )

    def _distributed_epsilon(self, rounds: int) -> float:
        """Each round composed at the multiplier its sum really carried: dropped devices' noise
        shares are missing from it."""
        from tinylarge.security.accounting import Accountant

        acct = Accountant(
            delta=self.delta,
            accountant=self.accountant,
            sampling=self.sampling,
            population=self.population,
        )
        for rnd in range(rounds):
            z = self.realized.get(rnd)
            if z is None:
                continue
            if z == 0:
                return math.inf
            acct.step(z, self.sampling_rate)
        return float(acct.epsilon())

    def record_round(self, rnd: int, survivors: int) -> None:
        """Distributed DP: ``survivors`` devices' noise shares are in round ``rnd``'s sum."""
        self.realized[rnd] = self.dp.realized_multiplier(survivors) if survivors else None

    def state(self) -> dict[str, Any]:
        return {
            **self.dp.state(),
            "realized_rounds": sorted(self.realized),
            "realized": [-1.0 if v is None else v for _, v in sorted(self.realized.items())],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.dp.load_state(state)
        rounds = [int(r) for r in state.get("realized_rounds", [])]
        values = [float(v) for v in state.get("realized", [])]
        self.realized = {r: (None if v < 0 else v) for r, v in zip(rounds, values, strict=True)}

    def summary(self, rounds: int) -> dict[str, Any]:
        """summary.json's privacy keys."""
        return {
            "epsilon": self.epsilon(rounds),
            "delta": self.delta,
            "noise_multiplier": self.dp.noise_multiplier,
            "accountant": self.accountant,
            "dp_sampling": self.sampling,
            "dp_sampling_rate": self.sampling_rate,
            "dp_clipping": self.dp.clipping,
            "clipping_norm": self.dp.clipping_norm,
        }


def private_averaging(
    cfg: Any,
    *,
    population: int,
    per_round: int,
    sampling: Sampling,
    fraction: float,
    rounds: int,
    distributed: bool = False,
) -> PrivateAveraging:
    """The run's :class:`PrivateAveraging` from ``privacy.dp`` (``cfg``), solving for the noise
    multiplier first when the config gives ``target_epsilon``.

    ``population``: the devices that may be sampled; ``per_round``: the expected number
    sampled (the average's denominator).
    """
    if cfg.delta >= 1 / population:
        raise TinylargeError(
            f"privacy.dp.delta {cfg.delta:g} must be below 1/n = {1 / population:.3g} for the "
            f"n = {population:,} devices that can take part"
        )
    rate = fraction if sampling == "poisson" else per_round / population
    z = cfg.noise_multiplier
    if z is None:
        from tinylarge.security.accounting import solve_noise_multiplier

        z = solve_noise_multiplier(
            cfg.target_epsilon,
            sampling_rate=rate,
            steps=rounds,
            delta=cfg.delta,
            accountant=cfg.accountant,
            sampling=sampling,
            population=population,
        )
    return PrivateAveraging(
        dp=UserDp(
            clipping=cfg.clipping,
            noise_multiplier=float(z),
            num_sampled=per_round,
            clipping_norm=cfg.initial_clipping_norm
            if cfg.clipping == "server-adaptive"
            else cfg.clipping_norm,
            target_clipped_quantile=cfg.target_clipped_quantile,
            clip_norm_lr=cfg.clip_norm_lr,
            clipped_count_stddev=cfg.clipped_count_stddev,
            distributed=distributed,
        ),
        delta=cfg.delta,
        accountant=cfg.accountant,
        sampling=sampling,
        population=population,
        sampling_rate=rate,
    )
