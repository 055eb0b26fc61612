"""Malicious devices and robust aggregation in a run: where attacks and defenses meet the round.

An attacker is a device like the others (a catalogue profile, a link, a bill): the
config marks ``topology.devices[].malicious`` of a group, and :func:`malicious_clients`
picks which (seeded, so every backend and a resumed run agree). What they do is the
run's ``attack`` (:mod:`tinylarge.security.attacks`):

- a *data* attack (label flipping, the pixel-pattern backdoor) poisons the malicious
  device's training data inside its local training (:attr:`Adversary.poison`), and
  the backdoor's model replacement scales its update by ``boost``;
- an *update* attack (sign flipping, Gaussian noise, A Little Is Enough, Inner
  Product Manipulation, mimic) replaces what the device sends; omniscient attacks read
  the round's honest updates, as in their papers (:meth:`Adversary.corrupt`).

A ``defense`` (:mod:`tinylarge.security.robust`) replaces the sample-weighted mean in
:meth:`tinylarge.sim.rounds.Round.aggregate` with a robust rule over the updates
(trained weights minus the global weights), after an optional pre-aggregator;
FLTrust's reference update is the server's own training on its root data, billed to
the server.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tinylarge.models.weights import Weights
from tinylarge.sim.aggregation import Update, flatten, unflatten

if TYPE_CHECKING:
    from tinylarge.config import AttackConfig, DefenseConfig, ExperimentConfig

#: ``ctx.rng(-1, _PICK_STREAM)`` picks the malicious devices; ``ctx.rng(rnd, ...)`` the rest.
_PICK_STREAM = 61
ATTACK_STREAM = 62
DEFENSE_STREAM = 63


def malicious_clients(cfg: ExperimentConfig, rng: np.random.Generator) -> frozenset[int]:
    """Which client ids are malicious: ``num_malicious`` of each group, drawn by ``rng``."""
    bad: list[int] = []
    first = 0
    for group in cfg.topology.devices:
        k = group.num_malicious
        if k:
            bad += [first + int(i) for i in rng.choice(group.count, size=k, replace=False)]
        first += group.count
    return frozenset(bad)


class Adversary:
    """The run's attack and the devices that carry it out."""

    def __init__(
        self,
        cfg: AttackConfig,
        bad: frozenset[int],
        *,
        num_classes: int,
        input_shape: Any,
        num_clients: int,
        num_devices: int,
        data_range: tuple[float, float],
    ) -> None:
        from tinylarge.security import attacks

        self.name = cfg.name
        self.malicious = bad
        self.data = cfg.name in attacks.DATA_ATTACKS
        self.options = dict(cfg.options)
        if cfg.name == "backdoor":
            # one trigger for training and testing: the training set's extremes
            self.options.setdefault("trigger_low", float(data_range[0]))
            self.options.setdefault("trigger_high", float(data_range[1]))
            # model replacement (Bagdasaryan et al.: gamma = n / eta) shared by the colluding
            # attackers of a round, so that together they replace the average, not overshoot it
            colluding = max(1, round(len(bad) * num_clients / max(1, num_devices)))
            self.options.setdefault("boost", float(num_clients) / colluding)
        self._input_shape = tuple(input_shape)
        if self.data:
            self.data_attack = attacks.make_data_attack(
                cfg.name, self.options, num_classes=num_classes, input_shape=self._input_shape,
                num_clients=num_clients,
            )  # fmt: skip
            self.update_attack = None
        else:
            self.update_attack = attacks.make_update_attack(cfg.name, self.options)

    def poison(self, client: int) -> tuple[str, dict[str, Any]] | None:
        """The data attack a client's local training applies (``None``: it trains honestly)."""
        if self.data and client in self.malicious:
            return (self.name, self.options)
        return None

    def corrupt(
        self, updates: Sequence[Update], *, base: Weights, rng: np.random.Generator
    ) -> list[Update]:
        """What the round's devices send: the malicious ones' updates replaced by the update
        attack (or boosted, for the backdoor's model replacement); honest ones unchanged."""
        bad = [i for i, u in enumerate(updates) if u.client in self.malicious]
        if not bad or (self.update_attack is None and float(self.data_attack.boost) == 1.0):
            return list(updates)  # nobody attacks, or the poison is in the training only
        deltas = flatten(updates, base)
        honest = [i for i in range(len(updates)) if i not in bad]
        if self.update_attack is not None:
            # with no honest update this round, the attackers only know their own
            seen = deltas[honest] if honest else deltas[bad]
            sent = self.update_attack(seen, deltas[bad], num_byzantine=len(bad), rng=rng)
        else:
            sent = deltas[bad] * float(self.data_attack.boost)
        out = list(updates)
        for row, i in enumerate(bad):
            u = updates[i]
            weights = unflatten(sent[row], base)
            carried = [
                w if t is not None else None for w, t in zip(weights, u.tensors, strict=True)
            ]
            out[i] = Update(u.client, carried, u.num_samples)
        return out

    def backdoor_success(
        self, predict: Callable[[np.ndarray], np.ndarray], x: Any, y: Any
    ) -> float:
        """The backdoor's success rate on the test set (inputs not of the target class that
        the model classifies as the target once stamped)."""
        from tinylarge.security.attacks import backdoor_success

        return float(
            backdoor_success(
                predict, x, y,
                target_label=int(getattr(self.data_attack, "target_label", 0)),
                input_shape=self._input_shape,
                high=self.options.get("trigger_high"),
                low=self.options.get("trigger_low"),
            )
        )  # fmt: skip


class Defense:
    """The run's robust aggregation rule, after its optional pre-aggregator."""

    def __init__(self, cfg: DefenseConfig, *, num_clients: int) -> None:
        from tinylarge.security import robust

        self.name = cfg.name
        self.cfg = cfg
        self.pre = (
            robust.make_pre(cfg.pre, dict(cfg.pre_options), num_clients=num_clients)
            if cfg.pre
            else None
        )
        rows = num_clients if self.pre is None else self.pre.output_rows(num_clients)
        self.rule = robust.make_rule(cfg.name, dict(cfg.options), num_clients=rows)
        self.needs_reference = cfg.name in robust.NEEDS_REFERENCE

    def aggregate(
        self,
        updates: Sequence[Update],
        *,
        base: Weights,
        rng: np.random.Generator,
        reference: Weights | None = None,
    ) -> Weights:
        deltas = flatten(updates, base)
        weights: np.ndarray | None = np.array([u.num_samples for u in updates], np.float64)
        if self.pre is not None:
            deltas = self.pre(deltas, rng=rng)
            weights = None
        kwargs: dict[str, Any] = {}
        if reference is not None:
            kwargs["reference"] = flatten([Update.full(-1, reference, 1)], base)[0]
        agg = self.rule(deltas, weights=weights, rng=rng, **kwargs)
        return unflatten(np.asarray(agg, np.float64), base)

    def work_factor(self, n: int) -> float:
        """The server's element-wise work over the ``n`` updates' values, relative to plain
        averaging (one pass), as an estimate by the rule's algorithm: a per-coordinate sort for
        the median and trimmed mean (``log2 n``), all pairwise distances for Krum, Multi-Krum,
        Bulyan and NNM (``n``), ``T`` Weiszfeld passes at most for the geometric median,
        ``2 L + 1`` for centered clipping, norms, cosines and the weighted sum for FLTrust
        (its root training is billed on its own)."""
        from tinylarge.security.robust import RULES

        o = {**RULES[self.name].defaults, **self.cfg.options}
        log_n = math.log2(max(2, n))
        rule = {
            "median": log_n,
            "trimmed-mean": log_n,
            "krum": float(n),
            "multi-krum": float(n) + 1,
            "bulyan": float(n) + log_n,
            "geometric-median": float(o.get("T") or 1),
            "centered-clipping": 2.0 * float(o.get("L") or 1) + 1,
            "fltrust": 4.0,
        }.get(self.name, 1.0)
        pre = {"bucketing": 1.0, "nnm": float(n)}.get(self.cfg.pre or "", 0.0)
        return rule + pre

    def state(self) -> dict[str, Any]:
        state = getattr(self.rule, "state", None)
        return dict(state()) if callable(state) else {}

    def load_state(self, state: dict[str, Any]) -> None:
        load = getattr(self.rule, "load_state", None)
        if callable(load) and state:
            load(state)
