"""Bandwidth sharing among concurrent devices of one cell."""

from __future__ import annotations

import pytest

from tinylarge.errors import TinylargeError, UnknownNameError
from tinylarge.network import Link, equal_shares, share_bandwidth


def test_equal_shares() -> None:
    assert share_bandwidth(4) == (0.25, 0.25, 0.25, 0.25)
    assert equal_shares(3) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert share_bandwidth(1) == (1.0,)


def test_weighted_shares() -> None:
    assert share_bandwidth(3, policy="weighted", weights=[1, 1, 2]) == (0.25, 0.25, 0.5)


def test_min_makespan_makes_every_device_finish_together() -> None:
    near = Link.from_preset("nr-sub6", distance_m=100.0)
    far = Link.from_preset("nr-sub6", distance_m=400.0)
    sizes = [2_000_000, 500_000]
    rates = [near.budget().rate_bps, far.budget().rate_bps]
    shares = share_bandwidth(2, policy="min-makespan", num_bytes=sizes, rate_bps=rates)
    assert sum(shares) == pytest.approx(1.0)
    t = [
        link.transfer(n, share=s).airtime_s
        for link, n, s in zip((near, far), sizes, shares, strict=True)
    ]
    assert t[0] == pytest.approx(t[1])
    # and it beats equal shares for the last device to finish
    eq = [link.transfer(n, share=0.5).airtime_s for link, n in zip((near, far), sizes, strict=True)]
    assert max(t) < max(eq)


def test_min_makespan_gives_nothing_to_devices_in_outage() -> None:
    shares = share_bandwidth(
        3, policy="min-makespan", num_bytes=[100, 100, 100], rate_bps=[1e6, 0.0, 1e6]
    )
    assert shares == (0.5, 0.0, 0.5)


@pytest.mark.parametrize(
    ("args", "kwargs", "fragment"),
    [
        ((0,), {}, "num_devices"),
        ((2,), {"policy": "weighted"}, "needs weights"),
        ((2,), {"policy": "weighted", "weights": [1.0]}, "expected 2"),
        ((2,), {"policy": "weighted", "weights": [0.0, 0.0]}, "at least one"),
        ((2,), {"policy": "min-makespan", "num_bytes": [1, 1]}, "rate_bps"),
    ],
)
def test_bad_inputs(args: tuple[int], kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(TinylargeError, match=fragment):
        share_bandwidth(*args, **kwargs)  # type: ignore[arg-type]


def test_unknown_policy_lists_known() -> None:
    with pytest.raises(UnknownNameError, match="equal, min-makespan, weighted"):
        share_bandwidth(2, policy="round-robin")
