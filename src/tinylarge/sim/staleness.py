"""Staleness weights of asynchronous federated learning: how much a late update counts.

An update trained from server model version ``tau`` that arrives when the server is
at version ``t`` has staleness ``s = t - tau`` (server updates since it downloaded
its model). A staleness function maps ``s`` to a weight in (0, 1]:

- ``constant``: 1, whatever the staleness.
- ``polynomial``: ``(1 + s) ** -a``. With ``a = 0.5`` this is FedBuff's
  ``1 / sqrt(1 + s)`` (Nguyen et al. 2022, https://arxiv.org/abs/2106.06639,
  section 5); FedAsync's polynomial ``(t - tau + 1) ** -a`` is the same function
  (Xie et al. 2019, https://arxiv.org/abs/1903.03934, section 5.2).
- ``hinge``: 1 while ``s <= b``, then ``1 / (a (s - b) + 1)`` (Xie et al. 2019).

>>> staleness_weight("polynomial", 3, a=0.5)
0.5
>>> staleness_weight("hinge", 14, a=0.5, b=10)
0.3333333333333333
"""

from __future__ import annotations

from collections.abc import Callable

from tinylarge.registry import Registry

#: ``f(staleness, a, b) -> weight``.
StalenessFn = Callable[[int, float, float], float]

STALENESS: Registry[StalenessFn] = Registry("staleness function")


@STALENESS.register("constant")
def constant(s: int, a: float, b: float) -> float:
    """Every update counts fully."""
    return 1.0


@STALENESS.register("polynomial")
def polynomial(s: int, a: float, b: float) -> float:
    """``(1 + s) ** -a``."""
    return float((1.0 + s) ** -a)


@STALENESS.register("hinge")
def hinge(s: int, a: float, b: float) -> float:
    """1 up to ``b`` server updates late, then ``1 / (a (s - b) + 1)``."""
    return 1.0 if s <= b else 1.0 / (a * (s - b) + 1.0)


def staleness_weight(name: str, s: int, *, a: float = 0.5, b: float = 4.0) -> float:
    """The weight of an update ``s`` server updates stale under staleness function ``name``."""
    if s < 0:
        raise ValueError(f"staleness {s} < 0: an update cannot come from a future model")
    return STALENESS[name](s, a, b)
