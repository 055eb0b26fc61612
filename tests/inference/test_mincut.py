"""Min-cut against brute force over every source/sink split of small random graphs."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from tinylarge.inference.mincut import min_cut


def brute_force(n: int, edges: list[tuple[int, int, float]], s: int, t: int) -> float:
    others = [v for v in range(n) if v not in (s, t)]
    best = math.inf
    for bits in itertools.product((0, 1), repeat=len(others)):
        side = {s} | {v for v, b in zip(others, bits, strict=True) if b}
        best = min(best, sum(c for u, v, c in edges if u in side and v not in side))
    return best


@pytest.mark.parametrize("seed", range(25))
def test_min_cut_equals_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 9))
    edges = [
        (int(u), int(v), float(rng.choice([rng.uniform(0, 5), math.inf], p=[0.85, 0.15])))
        for u, v in rng.integers(0, n, size=(int(rng.integers(n, 3 * n)), 2))
        if u != v
    ]
    expected = brute_force(n, edges, 0, n - 1)
    if math.isinf(expected):
        with pytest.raises(ValueError, match="infinite"):
            min_cut(n, edges, 0, n - 1)
        return
    value, side = min_cut(n, edges, 0, n - 1)
    assert value == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert 0 in side
    assert n - 1 not in side
    # the returned side realises the value
    assert sum(c for u, v, c in edges if u in side and v not in side) == pytest.approx(value)


def test_min_cut_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="differ"):
        min_cut(2, [], 0, 0)
    with pytest.raises(ValueError, match="negative"):
        min_cut(2, [(0, 1, -1.0)], 0, 1)
    with pytest.raises(ValueError, match="outside"):
        min_cut(2, [(0, 5, 1.0)], 0, 1)
