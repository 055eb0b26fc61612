"""Sample-level DP-SGD on a fleet's devices: what each device spends, and the run's epsilon.

Each device trains its local model with DP-SGD (Abadi et al. 2016,
https://arxiv.org/abs/1607.00133; :mod:`tinylarge.security.dpsgd`): every step is a
Poisson sample of its ``N_c`` records at rate ``q_c = batch_size / N_c``, each record's
gradient clipped to ``max_grad_norm``, Gaussian noise of ``noise_multiplier *
max_grad_norm`` added to the sum. The unit protected is one *record* (record-level DP):
neighbouring fleets differ by adding or removing one record on one device.

Accounting (:mod:`tinylarge.security.accounting`, Poisson sampling, add-or-remove-one):

- A record on device ``c`` is touched only by ``c``'s steps, so its privacy loss composes
  the subsampled Gaussian mechanism ``(sigma, q_c)`` over every step ``c`` took, in every
  round it trained (RDP and PLD compose). Everything the device sends is computed from
  those steps (post-processing), and the other devices' steps never see the record.
- The run's epsilon is the largest device's: every record of the fleet has that guarantee
  (each record lives on one device, so the devices' accounts do not add up).
- Rounds a device sat out cost it nothing; a device that trained counts its steps whether
  or not its update arrived (a straggler's upload was still sent). The sampling of devices
  into rounds is not used to amplify the guarantee (a conservative account).
- ``delta`` must be below ``1 / N`` for the ``N`` records of all devices that train: a
  mechanism publishing each record with probability ``delta`` is ``(0, delta)``-DP, and
  the server sees every device.

With ``target_epsilon`` the noise multiplier is solved for before the run, for the worst
case: every device taking part in every round (``rounds * epochs * floor(1 / q_c)`` steps
each); the largest multiplier any device needs is used by all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tinylarge.errors import TinylargeError
from tinylarge.security.accounting import DpSpec, epsilon, solve_noise_multiplier
from tinylarge.security.dpsgd import DpSgdSpec, poisson_sample_rate, steps_per_epoch


@dataclass
class FleetDpSgd:
    """DP-SGD on every device of a run, and its account.

    Attributes:
        spec: the noise multiplier and clipping bound every device trains with.
        delta: the delta epsilon is given at.
        accountant: ``"rdp"`` or ``"pld"``.
        sample_rates: each training device's Poisson rate ``q_c`` (by client id).
        records: each training device's number of records ``N_c``.
        steps: DP-SGD steps each device has taken so far (by client id).
        solved: the noise multiplier was solved for a ``target_epsilon``.
    """

    spec: DpSgdSpec
    delta: float
    accountant: str
    sample_rates: dict[int, float]
    records: dict[int, int]
    steps: dict[int, int] = field(default_factory=dict)
    solved: bool = False
    _cache: dict[tuple[float, int], float] = field(default_factory=dict, repr=False)

    # -- the account -------------------------------------------------------------------------
    def spend(self, steps: Mapping[int, int]) -> None:
        """Compose each device's DP-SGD steps of a round into its account."""
        for client, count in steps.items():
            if count < 0:
                raise ValueError(f"client {client}: {count} steps")
            if count and client not in self.sample_rates:
                raise ValueError(f"client {client} trained with DP-SGD but is not in the fleet")
            if count:
                self.steps[client] = self.steps.get(client, 0) + count

    def device_epsilon(self, client: int) -> float:
        """Epsilon at :attr:`delta` of ``client``'s records so far (0 before any step)."""
        return self._epsilon(self.sample_rates[client], self.steps.get(client, 0))

    def epsilon(self) -> float:
        """The run's epsilon so far: the largest over the devices."""
        return max((self.device_epsilon(c) for c in self.steps), default=0.0)

    def worst_device(self) -> int | None:
        """The device whose records have spent the most (None before any step)."""
        if not self.steps:
            return None
        return max(sorted(self.steps), key=self.device_epsilon)

    def _epsilon(self, rate: float, steps: int) -> float:
        if steps == 0:
            return 0.0
        key = (rate, steps)
        if key not in self._cache:
            self._cache[key] = epsilon(
                DpSpec(
                    noise_multiplier=self.spec.noise_multiplier,
                    sampling_rate=rate,
                    steps=steps,
                    delta=self.delta,
                    accountant=self.accountant,
                    sampling="poisson",
                )
            )
        return self._cache[key]

    # -- reports and resume ------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """summary.json's privacy keys."""
        worst = self.worst_device()
        return {
            "epsilon": self.epsilon(),
            "delta": self.delta,
            "noise_multiplier": self.spec.noise_multiplier,
            "noise_multiplier_solved": self.solved,
            "accountant": self.accountant,
            "max_grad_norm": self.spec.max_grad_norm,
            "dpsgd_sampling": "poisson",
            "dpsgd_worst_device": None
            if worst is None
            else {
                "client": worst,
                "records": self.records[worst],
                "sample_rate": self.sample_rates[worst],
                "steps": self.steps[worst],
            },
        }

    def state(self) -> dict[str, Any]:
        return {"steps": {str(c): n for c, n in sorted(self.steps.items())}}

    def load_state(self, state: dict[str, Any]) -> None:
        self.steps = {int(c): int(n) for c, n in state["steps"].items()}


def fleet_dpsgd(
    cfg: Any, *, records: Mapping[int, int], batch_size: int, epochs: int, rounds: int
) -> FleetDpSgd:
    """The run's :class:`FleetDpSgd` from ``privacy.dpsgd`` (``cfg``) and the training devices'
    record counts (``records``: client id -> ``N_c``), solving for the noise multiplier first
    when the config gives ``target_epsilon``. Devices without records never train and are left
    out. Raises a one-line :class:`TinylargeError` for a ``delta`` of ``1 / N`` or more."""
    sizes = {c: n for c, n in sorted(records.items()) if n > 0}
    if not sizes:
        raise TinylargeError("privacy.dpsgd: no device that trains has any training record")
    total = sum(sizes.values())
    if cfg.delta >= 1 / total:
        raise TinylargeError(
            f"privacy.dpsgd.delta {cfg.delta:g} must be below 1/N = {1 / total:.3g} for the "
            f"N = {total:,} training records of the devices that train (record-level DP: at "
            "delta >= 1/N, publishing one record in the clear is (0, delta)-DP); "
            f"use delta <= {_round_down(1 / total):g}"
        )
    rates = {c: poisson_sample_rate(n, batch_size) for c, n in sizes.items()}
    sigma = cfg.noise_multiplier
    if sigma is None:
        per_round = {c: epochs * steps_per_epoch(q) for c, q in rates.items()}
        sigma = _solve_worst_case(
            cfg.target_epsilon,
            {(q, rounds * per_round[c]) for c, q in rates.items()},
            delta=cfg.delta,
            accountant=cfg.accountant,
        )
    return FleetDpSgd(
        spec=DpSgdSpec(float(sigma), cfg.max_grad_norm, poisson_sampling=True),
        delta=cfg.delta,
        accountant=cfg.accountant,
        sample_rates=rates,
        records=sizes,
        solved=cfg.noise_multiplier is None,
    )


def _round_down(x: float) -> float:
    """``x`` rounded down to one significant digit (a delta to suggest)."""
    scale = 10.0 ** math.floor(math.log10(x))
    return float(math.floor(x / scale) * scale)


def _solve_worst_case(
    target: float, devices: set[tuple[float, int]], *, delta: float, accountant: str
) -> float:
    """The smallest noise multiplier at which every ``(q, steps)`` of ``devices`` stays within
    ``target``: solve for the device with the largest epsilon, check the others at that
    multiplier, and re-solve for any still above it (the multiplier only grows)."""
    settings = sorted(devices)

    def eps(sigma: float, q: float, steps: int, how: str = accountant) -> float:
        try:
            return epsilon(DpSpec(sigma, q, steps, delta, how))
        except TinylargeError:  # PLD refuses an epsilon beyond its grid: far above any target
            return math.inf

    def solve(q: float, steps: int) -> float:
        return solve_noise_multiplier(
            target, sampling_rate=q, steps=steps, delta=delta, accountant=accountant
        )

    # the device to start from: the largest epsilon at sigma 1 by RDP (milliseconds each)
    q, steps = max(settings, key=lambda s: eps(1.0, s[0], s[1], how="rdp"))
    sigma = solve(q, steps)
    while True:
        above = [s for s in settings if eps(sigma, *s) > target]
        if not above:
            return sigma
        sigma = max(solve(*s) for s in above)
