"""Distance correlation against a slow reference, its invariances, and leakage per cut."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tinylarge.errors import TinylargeError
from tinylarge.models.zoo import build_model
from tinylarge.security.leakage import distance_correlation, leakage_by_cut


def slow_dcor(x: np.ndarray, z: np.ndarray) -> float:
    """Székely, Rizzo and Bakirov (2007), Definition 4, written out with loops."""
    n = len(x)
    a = [[float(np.linalg.norm(x[k] - x[j])) for j in range(n)] for k in range(n)]
    b = [[float(np.linalg.norm(z[k] - z[j])) for j in range(n)] for k in range(n)]

    def centred(d: list[list[float]]) -> list[list[float]]:
        row = [sum(r) / n for r in d]
        col = [sum(d[k][j] for k in range(n)) / n for j in range(n)]
        tot = sum(row) / n
        return [[d[k][j] - row[k] - col[j] + tot for j in range(n)] for k in range(n)]

    ca, cb = centred(a), centred(b)

    def v2(p: list[list[float]], q: list[list[float]]) -> float:
        return sum(p[k][j] * q[k][j] for k in range(n) for j in range(n)) / n**2

    denom = math.sqrt(v2(ca, ca) * v2(cb, cb))
    return 0.0 if denom == 0 else math.sqrt(max(v2(ca, cb), 0.0) / denom)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 12),
    dx=st.integers(1, 4),
    dz=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_matches_the_definition(n: int, dx: int, dz: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, z = rng.normal(size=(n, dx)), rng.normal(size=(n, dz))
    assert distance_correlation(x, z) == pytest.approx(slow_dcor(x, z), abs=1e-9)


def test_invariances_and_range() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 6))
    rotation, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert distance_correlation(x, 2.5 * x @ rotation + 7.0) == pytest.approx(1.0)
    z = np.tanh(x[:, :2]) + 0.1 * rng.normal(size=(100, 2))
    assert distance_correlation(x, z) == pytest.approx(distance_correlation(z, x))
    assert 0.0 < distance_correlation(x, z) < 1.0
    # constant smashed data reveals nothing
    assert distance_correlation(x, np.ones((100, 3))) == 0.0
    # independence: the dependence measured shrinks as samples grow
    small = distance_correlation(x[:20], rng.normal(size=(20, 6)))
    large = distance_correlation(rng.normal(size=(800, 6)), rng.normal(size=(800, 6)))
    assert large < small


def test_needs_paired_samples() -> None:
    with pytest.raises(TinylargeError, match="paired"):
        distance_correlation(np.zeros((3, 2)), np.zeros((4, 2)))
    with pytest.raises(TinylargeError, match="at least 2"):
        distance_correlation(np.zeros((1, 2)), np.zeros((1, 2)))


def test_leakage_by_cut_reads_the_smashed_data() -> None:
    torch.manual_seed(0)
    model = build_model("cnn-tiny", input_shape=(1, 8, 8), num_classes=10, width=4)
    x = np.random.default_rng(0).normal(size=(64, 1, 8, 8)).astype(np.float32)
    out = leakage_by_cut(model, x, [6, 2])
    assert list(out) == [6, 2]
    with torch.no_grad():
        h = model[:2](torch.from_numpy(x)).numpy()
    assert out[2] == pytest.approx(distance_correlation(x, h))
    assert all(0 < v <= 1 for v in out.values())
    assert model.training  # left as it was found
