"""DP-FedAvg: clipping, noise and adaptive clipping on hand-built updates."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tinylarge.errors import TinylargeError
from tinylarge.security.dp import UserDp, adaptive_noise_multiplier, clip, l2_norm
from tinylarge.sim.aggregation import Update


def update(cid: int, *values: float) -> Update:
    return Update.full(cid, [np.array(values, dtype=np.float32)], num_samples=10 * (cid + 1))


def test_clip_scales_to_the_bound_and_leaves_short_updates_alone() -> None:
    long, within = clip([np.array([3.0, 4.0]), None], 2.5)
    assert not within
    assert l2_norm(long) == pytest.approx(2.5)
    assert long[1] is None
    short, within = clip([np.array([0.3, 0.4])], 2.5)
    assert within
    assert short[0].tolist() == [0.3, 0.4]


def test_without_noise_the_average_is_unweighted_over_the_expected_count() -> None:
    """Sample counts must not weigh in (one client's share is at most C/m) and the denominator
    is the expected number per round, not the number that arrived."""
    dp = UserDp("server-fixed", noise_multiplier=0.0, num_sampled=4, clipping_norm=10.0)
    base = [np.zeros(2, np.float32)]
    out = dp.aggregate(
        [update(0, 1.0, 0.0), update(1, 0.0, 2.0)], base=base, rng=np.random.default_rng(0)
    )
    assert out[0].tolist() == pytest.approx([0.25, 0.5])


def test_server_clips_each_update_before_averaging() -> None:
    dp = UserDp("server-fixed", noise_multiplier=0.0, num_sampled=2, clipping_norm=1.0)
    base = [np.ones(2, np.float32)]
    # deltas (3, 4) -> (0.6, 0.8) and (0, 0.5) unchanged
    out = dp.aggregate(
        [update(0, 4.0, 5.0), update(1, 1.0, 1.5)], base=base, rng=np.random.default_rng(0)
    )
    assert out[0].tolist() == pytest.approx([1 + 0.3, 1 + 0.65])
    assert dp.last_unclipped == 0.5


def test_noise_has_the_promised_standard_deviation() -> None:
    z, c, m = 1.5, 0.5, 5
    dp = UserDp("server-fixed", noise_multiplier=z, num_sampled=m, clipping_norm=c)
    base = [np.zeros(200_000, np.float32)]
    zero = Update.full(0, [np.zeros(200_000, np.float32)], 1)
    out = dp.aggregate([zero], base=base, rng=np.random.default_rng(1))[0]
    assert out.std() == pytest.approx(z * c / m, rel=0.01)
    assert abs(out.mean()) < 3 * z * c / m / math.sqrt(out.size) * 2


def test_client_side_clipping_happens_on_the_device() -> None:
    dp = UserDp("client-fixed", noise_multiplier=0.0, num_sampled=1, clipping_norm=1.0)
    base = [np.zeros(2, np.float32)]
    sent = dp.on_device(update(0, 30.0, 40.0), base)
    assert sent.tensors[0] is not None
    assert l2_norm(sent.tensors) == pytest.approx(1.0, rel=1e-6)
    assert dp.device_work(sent) == 4
    # the server does not clip again: the clipped update passes through
    out = dp.aggregate([sent], base=base, rng=np.random.default_rng(0))
    assert out[0].tolist() == pytest.approx([0.6, 0.8])
    server_side = UserDp("server-fixed", noise_multiplier=0.0, num_sampled=1, clipping_norm=1.0)
    assert server_side.on_device(update(0, 30.0, 40.0), base).tensors[0].tolist() == [30.0, 40.0]
    assert server_side.device_work(sent) == 0


def test_adaptive_clipping_moves_the_norm_towards_the_target_quantile() -> None:
    """All updates within the norm: it shrinks by exp(-lr * (1 - q)); all clipped: it grows."""
    base = [np.zeros(2, np.float32)]
    small = [update(i, 0.01, 0.0) for i in range(4)]
    big = [update(i, 100.0, 0.0) for i in range(4)]
    for ups, factor in ((small, math.exp(-0.2 * 0.5)), (big, math.exp(0.2 * 0.5))):
        dp = UserDp(
            "server-adaptive",
            noise_multiplier=0.0,
            num_sampled=4,
            clipping_norm=1.0,
            clipped_count_stddev=1.0,
        )
        dp.aggregate(ups, base=base, rng=np.random.default_rng(0))
        assert dp.clipping_norm == pytest.approx(factor)
        assert dp.last_clip == 1.0  # this round clipped (and would noise) with the old norm


def test_adaptive_clipping_takes_its_share_of_the_noise() -> None:
    assert adaptive_noise_multiplier(1.0, 5.0) == pytest.approx((1 - 0.01) ** -0.5)
    assert adaptive_noise_multiplier(0.0, 1.0) == 0.0
    with pytest.raises(TinylargeError, match="clipped_count_stddev above 1"):
        # 20 clients a round: default count noise 1.0 < z/2
        UserDp("server-adaptive", noise_multiplier=2.0, num_sampled=20, clipping_norm=0.1)


def test_integer_buffers_are_not_noised() -> None:
    dp = UserDp("server-fixed", noise_multiplier=1.0, num_sampled=2, clipping_norm=1.0)
    base = [np.zeros(3, np.float32), np.array(5, dtype=np.int64)]
    ups = [
        Update.full(0, [np.zeros(3, np.float32), np.array(7, dtype=np.int64)], 1),
        Update.full(1, [np.zeros(3, np.float32), np.array(9, dtype=np.int64)], 1),
    ]
    out = dp.aggregate(ups, base=base, rng=np.random.default_rng(0))
    assert int(out[1]) == 9
    assert np.any(out[0] != 0)
