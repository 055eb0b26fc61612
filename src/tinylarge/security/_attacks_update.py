"""Update attacks: what a round's malicious clients send instead of their honest update.

Every attack is called with the round's honest updates ``honest`` (``h x d``), the
malicious clients' own honestly trained updates ``own`` (``b x d``), the number of
Byzantine clients ``b`` and a generator, and returns the ``b x d`` updates they send
(in ``own``'s dtype). Omniscient attacks (ALIE, IPM, mimic) read ``honest``, as in their
papers; sign flipping and Gaussian noise do not.
"""

from __future__ import annotations

import dataclasses
import math
from statistics import NormalDist

import numpy as np

from tinylarge.errors import TinylargeError
from tinylarge.security._attacks_base import AttackOptions, integer, number, option

#: ALIE's rules for ``z``: the paper's Algorithm 1, or the honest-count variant of the
#: byzantine-robust-noniid-optimizer code (Karimireddy et al.).
Z_RULES = ("paper", "honest")


def _shapes(honest: np.ndarray, own: np.ndarray) -> None:
    if honest.ndim != 2 or own.ndim != 2 or honest.shape[1] != own.shape[1]:
        raise ValueError(
            f"honest (h x d) and own (b x d) updates expected, got {honest.shape}, {own.shape}"
        )


def _rows(vector: np.ndarray, own: np.ndarray) -> np.ndarray:
    """``vector`` sent by every malicious client, in ``own``'s dtype."""
    return np.tile(vector.astype(own.dtype), (own.shape[0], 1))


def alie_z(num_clients: int, num_byzantine: int, *, rule: str = "paper") -> float:
    """ALIE's ``z_max`` for ``n`` clients of which ``f`` are Byzantine.

    Baruch et al. 2019 (https://arxiv.org/abs/1902.06156), Algorithm 1: the attackers
    need ``s = floor(n/2 + 1) - f`` honest "supporters" farther from the mean than their
    update, and take ``z_max = Phi^-1((n - s) / n)`` (``rule="paper"``). The
    byzantine-robust-noniid-optimizer code (``codes/attacks/alittle.py``, used by
    Karimireddy et al.'s bench) counts the supporters among the honest clients only:
    ``Phi^-1((n - f - s) / (n - f))`` (``rule="honest"``). For n = 25, f = 5: s = 8, the
    paper gives ``Phi^-1(17/25 = 0.68) = 0.4677``, the code ``Phi^-1(12/20 = 0.6) = 0.2533``.

    When the attackers hold a majority (``s <= 0``) the formula is undefined; ``s`` is
    taken as 1 (:func:`check_options` refuses such a configuration up front).

    >>> round(alie_z(25, 5), 4), round(alie_z(25, 5, rule="honest"), 4)
    (0.4677, 0.2533)
    """
    n, f = num_clients, num_byzantine
    if not 0 < f < n:
        raise ValueError(f"alie_z needs 0 < num_byzantine < num_clients, got {f}, {n}")
    s = max(math.floor(n / 2 + 1) - f, 1)
    if rule == "paper":
        p = (n - s) / n
    elif rule == "honest":
        p = (n - f - s) / (n - f)
    else:
        raise ValueError(f"unknown z rule {rule!r}; known: {', '.join(Z_RULES)}")
    return NormalDist().inv_cdf(p)


@dataclasses.dataclass
class SignFlip(AttackOptions):
    """Send ``-scale`` times the own update.

    The bit-flipping worker of the byzantine-robust-noniid-optimizer code
    (``codes/attacks/bitflipping.py``) sends ``-g`` (scale 1). ByzFL's ``SignFlipping``
    sends minus the honest mean instead (omniscient); here each attacker flips its own.
    """

    NAME = "sign-flip"
    scale: float = option(1.0)

    def __post_init__(self) -> None:
        self.scale = number(self.NAME, "scale", self.scale, low=0.0, low_open=True)

    def __call__(
        self, honest: np.ndarray, own: np.ndarray, *, num_byzantine: int, rng: np.random.Generator
    ) -> np.ndarray:
        _shapes(honest, own)
        return (-self.scale * own.astype(np.float64)).astype(own.dtype)


@dataclasses.dataclass
class Gaussian(AttackOptions):
    """Send ``N(0, sigma^2)`` noise, drawn independently per client and coordinate.

    ByzFL's ``Gaussian`` attack; ``sigma`` defaults to 1.0 (the unit normal).
    """

    NAME = "gaussian"
    sigma: float = option(1.0)

    def __post_init__(self) -> None:
        self.sigma = number(self.NAME, "sigma", self.sigma, low=0.0)

    def __call__(
        self, honest: np.ndarray, own: np.ndarray, *, num_byzantine: int, rng: np.random.Generator
    ) -> np.ndarray:
        _shapes(honest, own)
        return rng.normal(0.0, self.sigma, size=own.shape).astype(own.dtype)


@dataclasses.dataclass
class Alie(AttackOptions):
    """A Little Is Enough (Baruch et al. 2019, https://arxiv.org/abs/1902.06156).

    Every attacker sends ``mu - z * sigma``, with ``mu`` and ``sigma`` the per-coordinate
    mean and sample standard deviation (``ddof=1``, as ``torch.std`` in the
    byzantine-robust-noniid-optimizer code and ByzFL) of the round's honest updates.
    ``z`` is the option if given, else :func:`alie_z` of ``n = h + b`` and ``f = b`` under
    ``z_rule`` (``"paper"``, default, or ``"honest"`` to reproduce Karimireddy et al.).
    With a single honest update ``sigma`` is 0.
    """

    NAME = "alie"
    z: float | None = option(None)
    z_rule: str = option("paper")

    def __post_init__(self) -> None:
        if self.z is not None:
            self.z = number(self.NAME, "z", self.z, low=-math.inf)
        if self.z_rule not in Z_RULES:
            raise TinylargeError(
                f"attack 'alie': option z_rule must be one of {', '.join(Z_RULES)}, "
                f"got {self.z_rule!r}"
            )

    def check(self, *, num_clients: int, num_byzantine: int) -> None:
        if self.z is None and num_byzantine > num_clients // 2:
            raise TinylargeError(
                f"attack 'alie': z from n={num_clients} and f={num_byzantine} needs "
                f"f <= n/2 (Baruch et al.'s s = floor(n/2 + 1) - f >= 1); give option z"
            )

    def z_for(self, num_clients: int, num_byzantine: int) -> float:
        if self.z is not None:
            return self.z
        return alie_z(num_clients, num_byzantine, rule=self.z_rule)

    def __call__(
        self, honest: np.ndarray, own: np.ndarray, *, num_byzantine: int, rng: np.random.Generator
    ) -> np.ndarray:
        _shapes(honest, own)
        h = honest.shape[0]
        x = honest.astype(np.float64)
        mu = x.mean(axis=0)
        sigma = x.std(axis=0, ddof=1) if h > 1 else np.zeros_like(mu)
        return _rows(mu - self.z_for(h + num_byzantine, num_byzantine) * sigma, own)


@dataclasses.dataclass
class Ipm(AttackOptions):
    """Inner Product Manipulation (Xie et al. 2019, https://arxiv.org/abs/1903.03936).

    Every attacker sends ``-epsilon`` times the mean of the honest updates, so the inner
    product of the aggregate with the true gradient turns negative. ``epsilon`` defaults
    to 0.1, the paper's small-epsilon setting that defeats median and Krum-type rules
    (large epsilon, e.g. 100, targets the plain mean), also the value of the
    byzantine-robust-noniid-optimizer bench.
    """

    NAME = "ipm"
    epsilon: float = option(0.1)

    def __post_init__(self) -> None:
        self.epsilon = number(self.NAME, "epsilon", self.epsilon, low=0.0, low_open=True)

    def __call__(
        self, honest: np.ndarray, own: np.ndarray, *, num_byzantine: int, rng: np.random.Generator
    ) -> np.ndarray:
        _shapes(honest, own)
        return _rows(-self.epsilon * honest.astype(np.float64).mean(axis=0), own)


MIMIC_CHOICES = ("variance", "random")


def most_spread(honest: np.ndarray) -> int:
    """The row of ``honest`` farthest from their mean along their top principal direction:
    ``argmax_i |<z, x_i - mu>|`` with ``z`` the leading right singular vector of the centred
    rows (Karimireddy et al. 2022, section 4: mimicking that worker over-weights the
    direction of largest heterogeneity). Ties go to the lowest index."""
    x = honest.astype(np.float64)
    centred = x - x.mean(axis=0)
    if not np.any(centred):
        return 0
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return int(np.argmax(np.abs(centred @ vt[0])))


@dataclasses.dataclass
class Mimic(AttackOptions):
    """Every attacker sends a copy of one honest client's update (Karimireddy et al. 2022,
    "Byzantine-robust learning on heterogeneous datasets via bucketing",
    https://arxiv.org/abs/2006.09365), over-weighting that client's data.

    Which one: the row ``target`` of ``honest`` if given (ByzFL's ``epsilon``); else, on
    the first call, the paper's choice (``choose: variance``, :func:`most_spread`: the
    honest update farthest out along the top principal direction of the round's honest
    updates) or a uniform draw by ``rng`` (``choose: random``). The choice is kept for the
    run, as the paper fixes it after its warm-up; redrawn only if a later round has fewer
    honest updates than it.
    """

    NAME = "mimic"
    target: int | None = option(None)
    choose: str = option("variance")

    def __post_init__(self) -> None:
        if self.target is not None:
            self.target = integer(self.NAME, "target", self.target, low=0)
        if self.choose not in MIMIC_CHOICES:
            raise TinylargeError(
                f"attack 'mimic': option choose must be one of {', '.join(MIMIC_CHOICES)}, "
                f"got {self.choose!r}"
            )
        self._chosen: int | None = self.target

    def check(self, *, num_clients: int, num_byzantine: int) -> None:
        honest = num_clients - num_byzantine
        if self.target is not None and self.target >= honest:
            raise TinylargeError(
                f"attack 'mimic': option target must be < {honest} (the honest clients), "
                f"got {self.target}"
            )

    def __call__(
        self, honest: np.ndarray, own: np.ndarray, *, num_byzantine: int, rng: np.random.Generator
    ) -> np.ndarray:
        _shapes(honest, own)
        h = honest.shape[0]
        if h == 0:
            raise ValueError("mimic needs at least one honest update")
        if self._chosen is None or self._chosen >= h:
            self._chosen = (
                most_spread(honest) if self.choose == "variance" else int(rng.integers(h))
            )
        return _rows(honest[self._chosen], own)
