"""Threshold choice on validation data and the online update."""

from __future__ import annotations

import numpy as np
import pytest

from tinylarge.errors import TinylargeError
from tinylarge.inference.policy import (
    adapt_online,
    choose_threshold,
    exit_indices,
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


# A two-exit cascade worked by hand: tiny confidences, which exit is right, device joules.
HAND_CONF = np.array([[0.9, 1.0], [0.6, 1.0], [0.3, 1.0], [0.8, 1.0]])
HAND_CORRECT = np.array([[1, 1], [0, 1], [0, 1], [1, 0]], dtype=bool)
HAND_ENERGY = (1.0, 10.0)
# threshold -> (accuracy, offload fraction, mean device joules), sample by sample:
#   0.3: every sample on the device: right 1,0,0,1 -> 0.50; nothing offloaded; 1 J each
#   0.6: sample 2 (0.3) offloaded and right -> 0.75; 1/4 offloaded; (3 x 1 + 10) / 4
#   0.8: samples 1, 2 offloaded, both right -> 1.00; 2/4; (2 x 1 + 2 x 10) / 4
#   0.9: samples 1, 2, 3 offloaded, 3 wrong there -> 0.75; 3/4; (1 + 3 x 10) / 4
#   inf: everything offloaded, the large model's own accuracy -> 0.75; 1; 10
HAND_TABLE = {
    0.3: (0.50, 0.00, 1.00),
    0.6: (0.75, 0.25, 3.25),
    0.8: (1.00, 0.50, 5.50),
    0.9: (0.75, 0.75, 7.75),
    np.inf: (0.75, 1.00, 10.0),
}


@pytest.mark.parametrize(
    ("target", "value", "threshold"),
    [
        ("accuracy", 1.0, 0.6),  # >= 0.75 (the large model's): the least offloading is 0.6
        ("accuracy", 4 / 3, 0.8),  # >= 1.0: only 0.8
        ("offload", 0.5, 0.8),  # at most half offloaded: the most offloading is 0.8
        ("offload", 0.3, 0.6),
        ("energy", 4.0, 0.6),  # at most 4 J: 0.3 and 0.6, the better accuracy is 0.6's
    ],
)
def test_choice_worked_by_hand(target: str, value: float, threshold: float) -> None:
    choice = choose_threshold(
        conf=HAND_CONF,
        correct=HAND_CORRECT,
        first_offload_exit=1,
        energy_per_exit_j=HAND_ENERGY,
        target=target,
        target_value=value,
    )
    assert choice.met
    assert choice.threshold == threshold
    accuracy, offload, joules = HAND_TABLE[threshold]
    assert choice.accuracy == pytest.approx(accuracy)
    assert choice.offload_fraction == pytest.approx(offload)
    assert choice.device_energy_j == pytest.approx(joules)
    assert choice.reference_accuracy == pytest.approx(0.75)


def _one_threshold(
    conf: np.ndarray, correct: np.ndarray, energy: tuple[float, float], t: float
) -> tuple[float, float, float]:
    """Accuracy, offload fraction and mean device joules at ``t``, one sample at a time."""
    right = offloaded = 0
    joules = 0.0
    for c, ok in zip(conf, correct, strict=True):
        exit_ = 0 if c[0] >= t else 1  # the tiny model answers when it is confident enough
        right += bool(ok[exit_])
        offloaded += exit_ == 1
        joules += energy[exit_]
    n = len(conf)
    return right / n, offloaded / n, joules / n


@pytest.mark.parametrize(
    ("target", "value"), [("accuracy", 0.99), ("offload", 0.3), ("energy", 0.02)]
)
def test_choice_is_the_best_threshold_by_exhaustive_search(target: str, value: float) -> None:
    conf, correct = cascade_val(n=300)
    choice = choose_threshold(
        conf=conf,
        correct=correct,
        first_offload_exit=1,
        energy_per_exit_j=ENERGY,
        target=target,
        target_value=value,
    )
    reference = float(np.mean([ok[1] for ok in correct]))
    # every distinct tiny confidence is a threshold worth trying, and +inf (offload all)
    thresholds = [*sorted(set(conf[:, 0].tolist())), np.inf]
    table = {t: _one_threshold(conf, correct, ENERGY, t) for t in thresholds}
    if target == "accuracy":  # enough accuracy; then least offloading, energy, threshold
        ok = [t for t, (a, _, _) in table.items() if a >= value * reference - 1e-12]
        best = min(ok, key=lambda t: (table[t][1], table[t][2], t))
    elif target == "offload":  # within the budget; then most offloading, best accuracy
        ok = [t for t, (_, o, _) in table.items() if o <= value + 1e-12]
        best = min(ok, key=lambda t: (-table[t][1], -table[t][0], t))
    else:  # within the joules; then best accuracy, least joules
        ok = [t for t, (_, _, j) in table.items() if j <= value * (1 + 1e-12)]
        best = min(ok, key=lambda t: (-table[t][0], table[t][2], t))
    assert choice.met
    assert choice.threshold == best
    accuracy, offload, joules = table[best]
    assert choice.accuracy == pytest.approx(accuracy)
    assert choice.offload_fraction == pytest.approx(offload)
    assert choice.device_energy_j == pytest.approx(joules)
    assert choice.reference_accuracy == pytest.approx(reference)


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
