"""Attacks by malicious clients: what they send, and how they poison their data.

Two kinds, one registry each (issue 13; names and parameters after ByzFL,
https://byzfl.epfl.ch, and the byzantine-robust-noniid-optimizer code of Karimireddy
et al., https://github.com/epfml/byzantine-robust-noniid-optimizer):

*Update attacks* (:data:`UPDATE_ATTACKS`) replace the update a malicious client sends.
Called as ``attack(honest, own, num_byzantine=b, rng=rng)`` with the round's honest
updates (``h x d``) and the attackers' own honestly trained ones (``b x d``); they
return the ``b x d`` updates sent. Options and defaults:

================  ======================================================================
``sign-flip``     ``-scale * own``; ``scale`` 1.0 (the bit-flipping worker of the epfml
                  code; ByzFL's ``SignFlipping`` flips the honest mean instead)
``gaussian``      ``N(0, sigma^2)`` per value; ``sigma`` 1.0
``alie``          ``mean - z * std`` of the honest updates per coordinate (Baruch et al.
                  2019); ``z`` from :func:`alie_z` of ``n = h + b`` and ``f = b`` unless
                  given; ``z_rule`` ``"paper"`` (Algorithm 1) or ``"honest"`` (the epfml
                  code, for Karimireddy et al.'s bench)
``ipm``           ``-epsilon * mean`` of the honest updates (Xie et al. 2019);
                  ``epsilon`` 0.1, the paper's small-epsilon setting
``mimic``         a copy of one honest update, chosen on the first call and kept:
                  ``target`` (row of ``honest``) if given, else ``choose`` ``"variance"``
                  (the paper's: farthest out along the top principal direction) or
                  ``"random"``
================  ======================================================================

*Data attacks* (:data:`DATA_ATTACKS`) poison a malicious client's training data before
its local training (``poison(x, y, rng=rng)``) and scale its update by ``boost``:

================  ======================================================================
``label-flip``    ``y -> num_classes - 1 - y``; ``boost`` (1) scales the update sent
``backdoor``      Bagdasaryan et al. 2020: the pixel-pattern trigger of
                  :func:`stamp_trigger` on a share ``poison_fraction`` (20/64) of the
                  inputs, relabelled ``target_label`` (0); model replacement ``boost``
                  ``n / server_lr`` (n = ``num_clients``; ``server_lr`` 1.0) unless
                  given; ``trigger_high``/``trigger_low`` fix the trigger's values
================  ======================================================================

:func:`check_options` refuses bad settings in one line (exit 2 on the command line);
:func:`backdoor_success` is the backdoor's success rate on a test set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, cast

import numpy as np

from tinylarge.errors import TinylargeError
from tinylarge.registry import Registry
from tinylarge.security._attacks_base import AttackOptions
from tinylarge.security._attacks_data import (
    TRIGGER_SIZE,
    Backdoor,
    LabelFlip,
    backdoor_success,
    stamp_trigger,
    trigger_mask,
)
from tinylarge.security._attacks_update import (
    Z_RULES,
    Alie,
    Gaussian,
    Ipm,
    Mimic,
    SignFlip,
    alie_z,
    most_spread,
)

__all__ = [
    "DATA_ATTACKS",
    "TRIGGER_SIZE",
    "UPDATE_ATTACKS",
    "Z_RULES",
    "DataAttack",
    "UpdateAttack",
    "alie_z",
    "backdoor_success",
    "check_options",
    "make_data_attack",
    "make_update_attack",
    "most_spread",
    "stamp_trigger",
    "trigger_mask",
]


class UpdateAttack(Protocol):
    """``(honest h x d, own b x d) -> b x d``: what the malicious clients send."""

    def __call__(
        self, honest: np.ndarray, own: np.ndarray, *, num_byzantine: int, rng: np.random.Generator
    ) -> np.ndarray: ...


class DataAttack(Protocol):
    """Poisons a malicious client's data; ``boost`` scales the update it then sends."""

    @property
    def boost(self) -> float: ...

    def poison(
        self, x: np.ndarray, y: np.ndarray, *, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]: ...


UPDATE_ATTACKS: Registry[type[AttackOptions]] = Registry("update attack")
DATA_ATTACKS: Registry[type[AttackOptions]] = Registry("data attack")
_update: list[type[AttackOptions]] = [SignFlip, Gaussian, Alie, Ipm, Mimic]
_data: list[type[AttackOptions]] = [LabelFlip, Backdoor]
for _cls in _update:
    UPDATE_ATTACKS.add(_cls.NAME, _cls)
for _cls in _data:
    DATA_ATTACKS.add(_cls.NAME, _cls)

_KINDS = {"update": UPDATE_ATTACKS, "data": DATA_ATTACKS}


def _lookup(name: str) -> type[AttackOptions]:
    """An attack of either kind; an unknown name lists both kinds' names."""
    for registry in (UPDATE_ATTACKS, DATA_ATTACKS):
        if name in registry:
            return registry[name]
    known = sorted([*UPDATE_ATTACKS, *DATA_ATTACKS])
    raise TinylargeError(f"unknown attack {name!r}; known: {', '.join(known)}")


def make_update_attack(name: str, options: Mapping[str, Any] | None = None) -> UpdateAttack:
    """The update attack ``name`` with its ``options`` (see the module doc)."""
    return cast(UpdateAttack, UPDATE_ATTACKS[name].from_options(options or {}))


def make_data_attack(
    name: str,
    options: Mapping[str, Any] | None = None,
    *,
    num_classes: int,
    input_shape: Sequence[int],
    num_clients: int | None = None,
) -> DataAttack:
    """The data attack ``name`` for a dataset of ``num_classes`` and ``input_shape``.

    ``num_clients`` (the clients averaged per round) gives the backdoor's default boost
    ``n / server_lr``; without it, reading ``boost`` raises unless the option is given.
    """
    attack = DATA_ATTACKS[name].from_options(
        options or {},
        num_classes=num_classes,
        input_shape=tuple(int(d) for d in input_shape),
        num_clients=num_clients,
    )
    return cast(DataAttack, attack)


def check_options(
    kind: str,
    name: str,
    options: Mapping[str, Any] | None,
    *,
    num_clients: int,
    num_byzantine: int,
    num_classes: int | None = None,
) -> None:
    """Raise a one-line :class:`TinylargeError` for a bad attack setting.

    ``kind`` is ``"update"``, ``"data"`` or ``"any"`` (either registry). Checks the name,
    each option's name and range, and the client counts (``0 < num_byzantine <=
    num_clients``; the omniscient attacks need an honest client; ALIE's ``z`` formula
    needs ``num_byzantine <= num_clients / 2``); ``target_label`` against
    ``num_classes`` when given.
    """
    if kind == "any":
        cls = _lookup(name)
    elif kind in _KINDS:
        cls = _KINDS[kind][name]
    else:
        raise TinylargeError(f"unknown attack kind {kind!r}; known: any, data, update")
    if not 0 < num_byzantine <= num_clients:
        raise TinylargeError(
            f"attack {name!r}: malicious clients must be between 1 and the {num_clients} "
            f"clients, got {num_byzantine}"
        )
    if cls in (Alie, Ipm, Mimic) and num_byzantine == num_clients:
        raise TinylargeError(
            f"attack {name!r} reads the honest updates and needs at least one honest client; "
            f"all {num_clients} are malicious"
        )
    context: dict[str, Any] = {}
    if cls in (LabelFlip, Backdoor):
        context = {"num_classes": num_classes, "num_clients": num_clients}
    attack = cls.from_options(options or {}, **context)
    attack.check(num_clients=num_clients, num_byzantine=num_byzantine)
