"""Threshold choice on validation data and the online update."""

from __future__ import annotations

import numpy as np
import pytest

from tinylarge.errors import TinylargeError
from tinylarge.inference.policy import (
    adapt_online,
    candidate_thresholds,
    choose_threshold,
    exit_indices,
    sweep,
)


def cascade_val(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A tiny exit right when confident, a large exit right 95% of the time."""
    rng = np.random.default_rng(seed)
    c_tiny = rng.uniform(0.2, 1.0, n)
    tiny_ok = rng.uniform(size=n) < c_tiny
    large_ok = rng.uniform(size=n) < 0.95
    conf = np.stack([c_tiny, np.ones(n)], axis=1)
    return conf, np.stack([tiny_ok, large_ok], axis=1)


ENERGY = (1e-3, 5e-2)


def test_exit_indices_first_confident_exit() -> None:
    conf = np.array([[0.9, 0.1, 1.0], [0.1, 0.8, 1.0], [0.1, 0.1, 1.0]])
    assert exit_indices(conf, 0.5).tolist() == [0, 1, 2]
    assert exit_indices(conf, 0.0).tolist() == [0, 0, 0]
    assert exit_indices(conf, np.inf).tolist() == [2, 2, 2]


@pytest.mark.parametrize(
    ("target", "value"), [("accuracy", 0.99), ("offload", 0.3), ("energy", 0.02)]
)
def test_choice_meets_its_target_and_is_best_among_candidates(target: str, value: float) -> None:
    conf, correct = cascade_val()
    choice = choose_threshold(
        conf=conf,
        correct=correct,
        first_offload_exit=1,
        energy_per_exit_j=ENERGY,
        target=target,
        target_value=value,
    )
    assert choice.met
    acc, off, joules = sweep(
        conf=conf,
        correct=correct,
        first_offload_exit=1,
        energy_per_exit_j=ENERGY,
        thresholds=candidate_thresholds(conf),
    )
    if target == "accuracy":
        assert choice.accuracy >= value * choice.reference_accuracy
        assert choice.offload_fraction == pytest.approx(off[acc >= value * acc[-1]].min())
    elif target == "offload":
        assert choice.offload_fraction == pytest.approx(off[off <= value].max())
        assert choice.offload_fraction == pytest.approx(value, abs=0.01)
        assert choice.accuracy == pytest.approx(acc[off == off[off <= value].max()].max())
    else:
        assert choice.device_energy_j <= value
        assert choice.accuracy == pytest.approx(acc[joules <= value].max())
    # the reported figures are those of the threshold
    ex = exit_indices(conf, choice.threshold)
    assert choice.offload_fraction == pytest.approx((ex >= 1).mean())


def test_offload_cap_and_unmet_target() -> None:
    conf, correct = cascade_val()
    choice = choose_threshold(
        conf=conf,
        correct=correct,
        first_offload_exit=1,
        energy_per_exit_j=ENERGY,
        target="accuracy",
        target_value=1.2,  # more than the large model: impossible
        max_offload_fraction=0.25,
    )
    assert not choice.met
    assert choice.offload_fraction <= 0.25
    with pytest.raises(TinylargeError, match="target"):
        choose_threshold(
            conf=conf,
            correct=correct,
            first_offload_exit=1,
            energy_per_exit_j=ENERGY,
            target="speed",
            target_value=1.0,
        )


def test_online_update_holds_the_offload_fraction_under_drift() -> None:
    rng = np.random.default_rng(3)
    n = 6000
    # confidences drift downwards: a fixed threshold would offload more and more
    c = np.clip(rng.uniform(0.3, 1.0, n) - np.linspace(0.0, 0.3, n), 0, 1)
    conf = np.stack([c, np.ones(n)], axis=1)
    start = float(np.quantile(c[:500], 0.2))
    fixed = exit_indices(conf, start)
    exits, final = adapt_online(
        conf, threshold=start, target_offload_fraction=0.2, rate=0.01, first_offload_exit=1
    )
    tail = slice(n // 2, n)
    assert (fixed[tail] >= 1).mean() > 0.35
    assert (exits[tail] >= 1).mean() == pytest.approx(0.2, abs=0.03)
    assert final < start
