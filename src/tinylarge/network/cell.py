"""Sharing one cell's bandwidth among devices that transmit at the same time.

:func:`share_bandwidth` returns each device's fraction ``s_i`` of the cell
(``sum s_i = 1``); pass ``s_i`` as ``share`` to
:meth:`tinylarge.network.link.Link.transfer`. Policies (a registry, so a new one is
one function):

- ``"equal"`` (default): ``s_i = 1/N``, round-robin / equal resource blocks. For
  static channels this is also what proportional-fair scheduling converges to:
  ``max sum log(s_i R_i)`` subject to ``sum s_i = 1`` gives ``s_i = 1/N`` whatever the
  rates ``R_i`` (Kelly 1997; the PF metric of Jalali et al., VTC 2000).
- ``"weighted"``: ``s_i = w_i / sum w`` for given priorities ``weights``.
- ``"min-makespan"``: ``s_i`` proportional to ``bits_i / R_i`` (``num_bytes`` and each
  device's full-band ``rate_bps``, e.g. ``link.budget().rate_bps``). Every device then
  finishes at the same moment ``T = sum bits_i / R_i``, the shortest possible time
  for the last one: what a synchronous federated round waits for. Devices with
  nothing to send or in outage (rate 0) get share 0.

The equal share is the engine's default; the other two need per-device inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tinylarge.errors import TinylargeError
from tinylarge.registry import Registry


@dataclass(frozen=True)
class SharingRequest:
    """The inputs a sharing policy may look at; the optional columns have one entry per device."""

    num_devices: int
    weights: Sequence[float] | None = None
    num_bytes: Sequence[int] | None = None
    rate_bps: Sequence[float] | None = None


SharingPolicy = Callable[[SharingRequest], tuple[float, ...]]

SHARING_POLICIES: Registry[SharingPolicy] = Registry("bandwidth sharing policy")


def _normalise(values: Sequence[float], what: str) -> tuple[float, ...]:
    total = math.fsum(values)
    if not total > 0:
        raise TinylargeError(f"{what} sum to {total:g}; at least one must be > 0")
    return tuple(v / total for v in values)


@SHARING_POLICIES.register("equal")
def _equal(req: SharingRequest) -> tuple[float, ...]:
    return tuple(1.0 / req.num_devices for _ in range(req.num_devices))


@SHARING_POLICIES.register("weighted")
def _weighted(req: SharingRequest) -> tuple[float, ...]:
    if req.weights is None:
        raise TinylargeError("policy 'weighted' needs weights=[...] (one per device)")
    for i, w in enumerate(req.weights):
        if not (math.isfinite(w) and w >= 0):
            raise TinylargeError(f"weights[{i}]={w!r} must be a finite number >= 0")
    return _normalise([float(w) for w in req.weights], "weights")


@SHARING_POLICIES.register("min-makespan")
def _min_makespan(req: SharingRequest) -> tuple[float, ...]:
    if req.num_bytes is None or req.rate_bps is None:
        raise TinylargeError("policy 'min-makespan' needs num_bytes=[...] and rate_bps=[...]")
    need = []
    for i, (n, rate) in enumerate(zip(req.num_bytes, req.rate_bps, strict=True)):
        if n < 0 or not (math.isfinite(rate) and rate >= 0):
            raise TinylargeError(
                f"device {i}: num_bytes={n!r} and rate_bps={rate!r} must be >= 0 and finite"
            )
        need.append(8.0 * n / rate if rate > 0 else 0.0)
    return _normalise(need, "bits/rate of the devices")


def equal_shares(num_devices: int) -> tuple[float, ...]:
    """``num_devices`` equal shares ``1/N`` (the ``"equal"`` policy)."""
    return share_bandwidth(num_devices)


def share_bandwidth(
    num_devices: int,
    *,
    policy: str = "equal",
    weights: Sequence[float] | None = None,
    num_bytes: Sequence[int] | None = None,
    rate_bps: Sequence[float] | None = None,
) -> tuple[float, ...]:
    """Each device's fraction of the cell bandwidth when ``num_devices`` transmit at once.

    >>> share_bandwidth(4)
    (0.25, 0.25, 0.25, 0.25)
    >>> share_bandwidth(2, policy="min-makespan", num_bytes=[1000, 1000], rate_bps=[1e6, 3e6])
    (0.75, 0.25)
    """
    if isinstance(num_devices, bool) or not isinstance(num_devices, int) or num_devices < 1:
        raise TinylargeError(f"num_devices={num_devices!r} must be an integer >= 1")
    sharer = SHARING_POLICIES[policy]
    columns = {"weights": weights, "num_bytes": num_bytes, "rate_bps": rate_bps}
    for field, column in columns.items():
        if column is not None and len(column) != num_devices:
            raise TinylargeError(f"{field} has {len(column)} entries, expected {num_devices}")
    return sharer(
        SharingRequest(
            num_devices=num_devices, weights=weights, num_bytes=num_bytes, rate_bps=rate_bps
        )
    )
