"""Temperature scaling and confidence scores."""

from __future__ import annotations

import numpy as np
import pytest

from tinylarge.inference.calibration import (
    CONFIDENCES,
    confidence,
    expected_calibration_error,
    fit_temperature,
    nll,
    softmax,
)


def sample(
    temperature: float, n: int = 4000, k: int = 5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose labels are drawn from softmax(logits / temperature)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, size=(n, k))
    probs = softmax(logits, temperature)
    labels = np.array([rng.choice(k, p=p) for p in probs])
    return logits, labels


@pytest.mark.parametrize("true_t", [0.5, 2.0])
def test_fit_recovers_the_generating_temperature(true_t: float) -> None:
    logits, labels = sample(true_t)
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(true_t, rel=0.1)
    assert nll(logits, labels, t) <= nll(logits, labels, 1.0)


def test_calibration_lowers_ece_of_an_overconfident_model() -> None:
    logits, labels = sample(3.0, seed=1)  # raw logits are 3x too sharp
    t = fit_temperature(logits, labels)
    before = expected_calibration_error(softmax(logits), labels)
    after = expected_calibration_error(softmax(logits, t), labels)
    assert after < before / 2


def test_confidences_are_in_unit_interval_and_ordered() -> None:
    logits = np.array([[10.0, 0.0, 0.0], [1.0, 1.0, 1.0], [2.0, 1.0, 0.0]])
    for kind in CONFIDENCES.names():
        c = confidence(logits, kind=kind)
        assert np.all((c >= 0) & (c <= 1 + 1e-12))
        assert c[0] > c[2] > c[1]
    assert confidence(logits[1:2], kind="entropy")[0] == pytest.approx(0.0, abs=1e-12)
    # temperature keeps the prediction, flattens the scores
    assert confidence(logits, temperature=5.0)[0] < confidence(logits)[0]


def test_empty_set_keeps_temperature_one() -> None:
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=np.int64)) == 1.0
