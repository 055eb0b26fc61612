"""Differential-privacy accounting: the epsilon of a repeated, subsampled Gaussian mechanism.

DP-SGD and DP federated averaging add Gaussian noise of standard deviation
``noise_multiplier * clip`` to a sum of clipped contributions from a random
sample of the records (or clients), once per step or round. This module turns
that description into the (epsilon, delta) it guarantees, with Google's
dp-accounting library (https://github.com/google/differential-privacy, the
``privacy`` extra: ``pip install 'tinylarge[privacy]'``). The core imports
without it; the functions import it when called and raise
:class:`~tinylarge.errors.TinylargeError` with the install command when it is
missing.

Two accountants, both upper bounds on the true epsilon:

- ``rdp``: Rényi DP (Mironov, https://arxiv.org/abs/1702.07476; the subsampled
  Gaussian of Mironov, Talwar and Zhang, https://arxiv.org/abs/1908.10530),
  converted to (epsilon, delta) with Proposition 12 of Canonne, Kamath and
  Steinke / Balle et al. (https://arxiv.org/abs/2004.00010). Fast; what Opacus
  and TF Privacy report.
- ``pld``: privacy loss distributions (Koskela et al.,
  https://arxiv.org/abs/1906.03049; Doroshenko et al.,
  https://arxiv.org/abs/2207.04380), composed numerically on a grid of width
  1e-4. Tighter (0.83 against RDP's 0.92 for the MNIST row below), and
  slower: its grid grows with epsilon, so it is refused where the RDP bound
  exceeds ``PLD_MAX_EPSILON``.

The noise multiplier is always the noise's standard deviation over the clipping
norm ``C`` (DP-SGD's and DP-FedAvg's convention): ``C`` bounds how far adding or
removing one record moves the clipped sum. Two ways to draw the sample, each
with the neighbouring relation dp-accounting accounts it under (an epsilon
holds for that relation only):

- ``poisson``: every record joins each step independently with probability
  ``sampling_rate``; datasets are neighbours when one *adds or removes* a record
  (sensitivity ``C``).
- ``fixed``: each step draws ``round(sampling_rate * population)`` records
  without replacement (fixed-size batches), accounted with Theorem 27 of Wang,
  Balle and Kasiviswanathan (https://arxiv.org/abs/1808.00087); dp-accounting
  accounts it only under the *replace-one* relation (datasets of the same size,
  one record replaced by another), and the epsilon is for that relation.
  Replacing a record moves the clipped sum by up to ``2 C``, and dp-accounting's
  event takes the noise over that sensitivity, so it is given
  ``noise_multiplier / 2``. Hence a larger figure than Poisson's: 7.01 against
  0.92 for the row below with 60,000 records (halving the noise alone makes the
  Poisson figure 5.00; the rest is the looser bound). Only the ``rdp``
  accountant supports it: dp-accounting 0.6's PLD accountant has no sampling
  without replacement, and ``pld`` with ``fixed`` is refused.

Example, the row of Opacus's DP-SGD MNIST example (noise 1.3, batches of 0.4 % of
the data, 15 epochs = 3,750 steps, delta 1e-5)::

    >>> spec = DpSpec(noise_multiplier=1.3, sampling_rate=0.004, steps=3750, delta=1e-5)
    >>> round(epsilon(spec), 2)
    0.92
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from tinylarge.errors import TinylargeError, UnknownNameError

INSTALL_HINT = "pip install 'tinylarge[privacy]' (dp-accounting)"

Sampling = Literal["poisson", "fixed"]
SAMPLINGS: tuple[Sampling, ...] = ("poisson", "fixed")
ACCOUNTANTS = ("rdp", "pld")

#: The neighbouring relation each sampling is accounted under.
NEIGHBOURING: dict[str, str] = {"poisson": "add-or-remove-one", "fixed": "replace-one"}

#: Range :func:`solve_noise_multiplier` searches, and its relative tolerance on sigma.
MIN_NOISE_MULTIPLIER = 0.01
MAX_NOISE_MULTIPLIER = 1e4
SOLVE_RTOL = 1e-3

#: Largest epsilon (by the RDP bound) the PLD accountant is asked for. Its grid grows with
#: epsilon: measured at q = 0.004 and 3,750 steps, 0.2 M points and 0.1 GB at epsilon 1,
#: 1.4 M and 0.26 GB at 70, 26 M and 2 GB at 1,500; at sigma 0.01 it asks for 44 GB.
PLD_MAX_EPSILON = 100.0


class _PldTooLargeError(TinylargeError):
    """The RDP bound is above ``PLD_MAX_EPSILON``: the PLD grid would be too large."""


@dataclass(frozen=True)
class DpSpec:
    """One Gaussian mechanism, subsampled and repeated ``steps`` times.

    Args:
        noise_multiplier: sigma, the noise's standard deviation over the clipping norm (the
            add-or-remove sensitivity; ``fixed`` accounts ``sigma / 2`` over the replace-one
            sensitivity, twice the norm); >= 0 (0 means no privacy: epsilon is infinite).
        sampling_rate: q in (0, 1], the probability a record joins a step (``poisson``), or
            the sampled fraction of the population (``fixed``).
        steps: compositions (DP-SGD steps, federated rounds); >= 1.
        delta: in (0, 1); when ``population`` is given, below ``1 / population``.
        accountant: ``"rdp"`` or ``"pld"``.
        sampling: ``"poisson"`` (add-or-remove-one neighbours) or ``"fixed"``
            (``round(sampling_rate * population)`` records without replacement, replace-one
            neighbours).
        population: the number of records (or clients) sampled from; needed by ``fixed``.
    """

    noise_multiplier: float
    sampling_rate: float
    steps: int
    delta: float
    accountant: str = "rdp"
    sampling: Sampling = "poisson"
    population: int | None = None

    def __post_init__(self) -> None:
        _check_setting(self.delta, self.accountant, self.sampling, self.population)
        _check_step(self.noise_multiplier, self.sampling_rate, self.population, self.sampling)
        _check_count("steps", self.steps)


def epsilon(spec: DpSpec) -> float:
    """The epsilon at ``spec.delta`` of ``spec`` (``inf`` when the noise multiplier is 0)."""
    return _epsilon(
        [(spec.noise_multiplier, spec.sampling_rate, spec.steps)],
        delta=spec.delta,
        accountant=spec.accountant,
        sampling=spec.sampling,
        population=spec.population,
    )


def solve_noise_multiplier(
    target_epsilon: float,
    *,
    sampling_rate: float,
    steps: int,
    delta: float,
    accountant: str = "rdp",
    sampling: Sampling = "poisson",
    population: int | None = None,
) -> float:
    """The smallest noise multiplier whose epsilon is at most ``target_epsilon``.

    Bisection on ``log(sigma)`` (epsilon falls as sigma grows) to a relative tolerance of
    ``SOLVE_RTOL``, within [``MIN_NOISE_MULTIPLIER``, ``MAX_NOISE_MULTIPLIER``]. The sigma
    returned is the upper end of the final bracket, so ``epsilon`` at it is <= the target
    (never above it) and, sigma being within 0.1 % of the boundary, close to it. A target no
    sigma in the range reaches, or one met already at the smallest, is refused.
    """
    if not (math.isfinite(target_epsilon) and target_epsilon > 0):
        raise TinylargeError(f"target_epsilon {target_epsilon}: must be a finite number > 0")
    spec = DpSpec(1.0, sampling_rate, steps, delta, accountant, sampling, population)
    if accountant == "pld" and target_epsilon > PLD_MAX_EPSILON:
        raise TinylargeError(
            f"target_epsilon {target_epsilon:g}: the pld accountant is limited to epsilon <= "
            f"{PLD_MAX_EPSILON:g}; use accountant 'rdp'"
        )

    def eps_at(sigma: float) -> float:
        try:
            return epsilon(dataclasses.replace(spec, noise_multiplier=sigma))
        except _PldTooLargeError:
            return math.inf  # above PLD_MAX_EPSILON >= target by the RDP bound

    start, factor = 1.0, 2.0
    if accountant == "pld":
        # PLD is tighter than RDP, and each PLD epsilon costs 0.1 to a few seconds: start at
        # RDP's answer (an upper end, found in milliseconds) and bracket in steps of 10 %.
        try:
            start = solve_noise_multiplier(
                target_epsilon,
                sampling_rate=sampling_rate,
                steps=steps,
                delta=delta,
                sampling=sampling,
                population=population,
            )
            factor = 1.1
        except TinylargeError:
            pass
    lo: float | None = None
    hi, eps_hi = start, eps_at(start)
    while eps_hi > target_epsilon:
        if hi >= MAX_NOISE_MULTIPLIER:
            raise TinylargeError(
                f"target_epsilon {target_epsilon:g} is not reachable: noise_multiplier "
                f"{MAX_NOISE_MULTIPLIER:g} still gives epsilon {eps_hi:.4g} ({accountant}, "
                f"{sampling} sampling_rate {sampling_rate:g}, {steps} steps, delta {delta:g})"
            )
        lo, hi = hi, min(factor * hi, MAX_NOISE_MULTIPLIER)
        eps_hi = eps_at(hi)
    while lo is None:
        if hi <= MIN_NOISE_MULTIPLIER:
            raise TinylargeError(
                f"target_epsilon {target_epsilon:g} is met already at noise_multiplier "
                f"{MIN_NOISE_MULTIPLIER:g} (epsilon {eps_hi:.4g}), the smallest searched; "
                "ask for a smaller target"
            )
        candidate = max(hi / factor, MIN_NOISE_MULTIPLIER)
        eps_candidate = eps_at(candidate)
        if eps_candidate > target_epsilon:
            lo = candidate
        else:
            hi, eps_hi = candidate, eps_candidate
    while hi / lo > 1 + SOLVE_RTOL:
        mid = math.sqrt(lo * hi)
        if eps_at(mid) <= target_epsilon:
            hi = mid
        else:
            lo = mid
    return hi


class Accountant:
    """A running account for a training run: compose one step or round at a time.

    Consecutive steps with the same noise multiplier and sampling rate are kept as one
    self-composition (as Opacus's accountants do), so :meth:`epsilon` costs the same after
    10 steps as after 10,000; it is computed when asked and kept until the next step.
    """

    def __init__(
        self,
        *,
        delta: float,
        accountant: str = "rdp",
        sampling: Sampling = "poisson",
        population: int | None = None,
    ) -> None:
        _check_setting(delta, accountant, sampling, population)
        self.delta = delta
        self.accountant = accountant
        self.sampling: Sampling = sampling
        self.population = population
        self._parts: list[tuple[float, float, int]] = []
        self._epsilon: float | None = 0.0

    @property
    def steps(self) -> int:
        """Steps composed so far."""
        return sum(count for _, _, count in self._parts)

    def step(self, noise_multiplier: float, sampling_rate: float, count: int = 1) -> None:
        """Compose ``count`` steps of the mechanism with these parameters."""
        _check_step(noise_multiplier, sampling_rate, self.population, self.sampling)
        _check_count("count", count)
        if self._parts and self._parts[-1][:2] == (noise_multiplier, sampling_rate):
            self._parts[-1] = (noise_multiplier, sampling_rate, self._parts[-1][2] + count)
        else:
            self._parts.append((noise_multiplier, sampling_rate, count))
        self._epsilon = None

    def epsilon(self) -> float:
        """Epsilon so far at ``delta``: 0.0 before any step, ``inf`` once a step had no noise."""
        if self._epsilon is None:
            self._epsilon = _epsilon(
                self._parts,
                delta=self.delta,
                accountant=self.accountant,
                sampling=self.sampling,
                population=self.population,
            )
        return self._epsilon

    def to_dict(self) -> dict[str, Any]:
        """The account for summary.json (``noise_multiplier`` is the last step's, or None)."""
        return {
            "epsilon": self.epsilon(),
            "delta": self.delta,
            "noise_multiplier": self._parts[-1][0] if self._parts else None,
            "accountant": self.accountant,
            "sampling": self.sampling,
            "steps": self.steps,
        }


def check_delta(delta: float, population: int) -> None:
    """Refuse a delta that is not in (0, 1 / population).

    At ``delta >= 1 / n`` the guarantee allows publishing a random record of the ``n`` in
    the clear, so a meaningful delta is well below ``1 / n``.
    """
    _check_population(population)
    _check_delta_range(delta)
    if delta >= 1 / population:
        raise TinylargeError(
            f"delta {delta:g} must be below 1/n = {1 / population:.3g} for n = {population} "
            f"records (at delta >= 1/n, publishing one record in the clear is "
            f"(0, delta)-DP)"
        )


def steps_for_epochs(epochs: float, sampling_rate: float) -> int:
    """Steps of ``epochs`` passes over the data at ``sampling_rate``: ``ceil(epochs / q)``.

    As TF Privacy's ``compute_dp_sgd_privacy`` counts them (``ceil(epochs * n / batch)``);
    a ratio within 1e-9 of an integer is that integer (``0.9 / 0.03`` is 30.000000000000004
    in floating point: 30 steps, not 31).
    """
    _check_rate(sampling_rate)
    if not (math.isfinite(epochs) and epochs > 0):
        raise TinylargeError(f"epochs {epochs}: must be a finite number > 0")
    ratio = epochs / sampling_rate
    if not math.isfinite(ratio):
        raise TinylargeError(
            f"epochs {epochs:g} at sampling_rate {sampling_rate:g}: too many steps"
        )
    nearest = round(ratio)
    return max(1, nearest if abs(ratio - nearest) <= 1e-9 * ratio else math.ceil(ratio))


def _is_positive_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= 1


def _check_count(name: str, value: object) -> None:
    if not _is_positive_int(value):
        raise TinylargeError(f"{name} {value!r}: must be an integer >= 1")


def _check_population(population: object) -> None:
    if not _is_positive_int(population):
        raise TinylargeError(f"population {population!r}: must be an integer >= 1 (records)")


def _check_delta_range(delta: float) -> None:
    if not (math.isfinite(delta) and 0 < delta < 1):
        raise TinylargeError(f"delta {delta}: must be in (0, 1), and below 1/n for n records")


def _check_setting(delta: float, accountant: str, sampling: str, population: int | None) -> None:
    """What holds for a whole account: delta, the accountant, the sampling, the population."""
    _check_delta_range(delta)
    if accountant not in ACCOUNTANTS:
        raise UnknownNameError("accountant", accountant, ACCOUNTANTS)
    if sampling not in SAMPLINGS:
        raise UnknownNameError("sampling", sampling, SAMPLINGS)
    if sampling == "fixed":
        if population is None:
            raise TinylargeError(
                "fixed sampling needs population, the number of records sampled from"
            )
        if accountant == "pld":
            raise TinylargeError(
                "the pld accountant cannot account for fixed sampling (dp-accounting has no "
                "PLD for sampling without replacement); use accountant 'rdp'"
            )
    if population is not None:
        check_delta(delta, population)


def _check_rate(sampling_rate: float) -> None:
    if not (math.isfinite(sampling_rate) and 0 < sampling_rate <= 1):
        raise TinylargeError(f"sampling_rate {sampling_rate}: must be in (0, 1]")


def _check_step(
    noise_multiplier: float, sampling_rate: float, population: int | None, sampling: str
) -> None:
    if not (math.isfinite(noise_multiplier) and noise_multiplier >= 0):
        raise TinylargeError(f"noise_multiplier {noise_multiplier}: must be a finite number >= 0")
    _check_rate(sampling_rate)
    if sampling == "fixed" and population is not None:
        _sample_size(sampling_rate, population)


def _sample_size(sampling_rate: float, population: int) -> int:
    """Records per step of fixed sampling: ``round(sampling_rate * population)``, at least 1."""
    size = round(sampling_rate * population)
    if size < 1:
        raise TinylargeError(
            f"sampling_rate {sampling_rate:g} of population {population} is a sample of 0 "
            f"records; fixed sampling needs sampling_rate >= {0.5 / population:.3g}"
        )
    return size


def _dp() -> Any:
    """The dp_accounting module, or a TinylargeError naming the extra."""
    try:
        import dp_accounting  # type: ignore[import-untyped]
    except ImportError as exc:
        raise TinylargeError(f"DP accounting needs the privacy extra: {INSTALL_HINT}") from exc
    return dp_accounting


@contextmanager
def _quiet_absl() -> Iterator[None]:
    """Silence dp-accounting's warnings that it skipped an RDP order whose series did not
    converge: the bound over the remaining orders still holds (it is the minimum over them)."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _epsilon(
    parts: Sequence[tuple[float, float, int]],
    *,
    delta: float,
    accountant: str,
    sampling: str,
    population: int | None,
) -> float:
    """Epsilon at ``delta`` of the composition of ``(sigma, q, count)`` parts."""
    if not parts:
        return 0.0
    dp = _dp()
    if any(noise_multiplier == 0 for noise_multiplier, _, _ in parts):
        return math.inf  # no noise, no privacy (dp-accounting's fixed-size bound divides by 0)
    events = []
    for noise_multiplier, sampling_rate, count in parts:
        if sampling == "fixed":
            assert population is not None
            # Noise over the replace-one sensitivity, 2 * clip (see the module docstring).
            gaussian = dp.GaussianDpEvent(noise_multiplier / 2)
            sampled = dp.SampledWithoutReplacementDpEvent(
                population, _sample_size(sampling_rate, population), gaussian
            )
        else:
            sampled = dp.PoissonSampledDpEvent(sampling_rate, dp.GaussianDpEvent(noise_multiplier))
        events.append(dp.SelfComposedDpEvent(sampled, count))
    event = dp.ComposedDpEvent(events)
    relation = (
        dp.NeighboringRelation.REPLACE_ONE
        if sampling == "fixed"
        else dp.NeighboringRelation.ADD_OR_REMOVE_ONE
    )
    with _quiet_absl():
        rdp = dp.rdp.RdpAccountant(neighboring_relation=relation)
        rdp.compose(event)
        eps = float(rdp.get_epsilon(delta))
        if accountant == "rdp" or not math.isfinite(eps):
            return eps
        if eps > PLD_MAX_EPSILON:
            raise _PldTooLargeError(
                f"epsilon is {eps:.4g} by the RDP bound; the pld accountant is limited to "
                f"epsilon <= {PLD_MAX_EPSILON:g} (its grid would need gigabytes beyond); "
                "use accountant 'rdp'"
            )
        pld = dp.pld.PLDAccountant(neighboring_relation=relation)
        pld.compose(event)
        return float(pld.get_epsilon(delta))
