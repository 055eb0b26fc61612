"""Rayleigh / Rician power gains and shadowing: unit mean, right spread, reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from tinylarge.network.fading import (
    FADING_MODELS,
    rayleigh_power_gain,
    rician_power_gain,
    shadowing_db,
)

N = 200_000


def test_rayleigh_mean_gain_is_one() -> None:
    g = rayleigh_power_gain(np.random.default_rng(0), size=N)
    assert g.mean() == pytest.approx(1.0, abs=0.01)
    assert g.var() == pytest.approx(1.0, abs=0.03)  # exponential: variance = mean^2
    assert (g >= 0).all()


def test_rician_mean_is_one_and_large_k_has_low_variance() -> None:
    rng = np.random.default_rng(1)
    low = rician_power_gain(rng, k_factor_db=0.0, size=N)
    high = rician_power_gain(rng, k_factor_db=30.0, size=N)
    assert low.mean() == pytest.approx(1.0, abs=0.01)
    assert high.mean() == pytest.approx(1.0, abs=0.005)
    # var of |h|^2 for Rician is (2K + 1) / (K + 1)^2: 0.75 at K = 1, ~0.002 at K = 1000
    assert low.var() == pytest.approx(0.75, abs=0.02)
    assert high.var() < 0.003


def test_rician_small_k_approaches_rayleigh() -> None:
    g = rician_power_gain(np.random.default_rng(2), k_factor_db=-40.0, size=N)
    assert g.var() == pytest.approx(1.0, abs=0.03)


def test_samplers_are_reproducible_from_the_seed() -> None:
    a = rician_power_gain(np.random.default_rng(7), k_factor_db=9.0, size=10)
    b = rician_power_gain(np.random.default_rng(7), k_factor_db=9.0, size=10)
    c = rician_power_gain(np.random.default_rng(8), k_factor_db=9.0, size=10)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_shadowing_statistics() -> None:
    rng = np.random.default_rng(3)
    x = np.array([shadowing_db(rng, sigma_db=6.0) for _ in range(20_000)])
    assert x.mean() == pytest.approx(0.0, abs=0.15)
    assert x.std() == pytest.approx(6.0, abs=0.15)
    assert shadowing_db(rng, sigma_db=0.0) == 0.0


def test_registry_names() -> None:
    assert FADING_MODELS.names() == ["rayleigh", "rician"]
    g = FADING_MODELS["rician"](np.random.default_rng(0), 60.0)
    assert g == pytest.approx(1.0, abs=0.01)
