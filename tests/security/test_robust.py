"""Robust aggregation rules and pre-aggregators on hand-built updates."""

from __future__ import annotations

import math
from itertools import product

import numpy as np
import pytest

from tinylarge.errors import TinylargeError
from tinylarge.security.robust import (
    NEEDS_REFERENCE,
    PRE_AGGREGATORS,
    RULES,
    CenteredClipping,
    check_options,
    make_pre,
    make_rule,
)

RNG = np.random.default_rng(0)


def rows(*vectors: list[float]) -> np.ndarray:
    return np.array(vectors, dtype=np.float64)


def run(name: str, x: np.ndarray, **options: float) -> np.ndarray:
    rule = make_rule(name, options, num_clients=x.shape[0])
    return rule(x, rng=np.random.default_rng(1))


# --- Krum, Multi-Krum, Bulyan ---------------------------------------------------------------

HONEST = rows([0, 0], [1, 0], [-1, 0], [0, 1], [0, -1])  # [0, 0] has score 1+1+1 = 3, the rest 5


def test_krum_picks_the_honest_update_closest_to_its_neighbours() -> None:
    outliers = rows([100, 100], [100, 100])  # colluding: identical to each other
    x = np.vstack([outliers[:1], HONEST, outliers[1:]])
    assert run("krum", x, f=2).tolist() == [0.0, 0.0]


def test_multi_krum_averages_the_m_best() -> None:
    honest = rows([0, 0], [1, 0], [0, 1], [1, 1], [0.5, 0.5])
    x = np.vstack([honest, rows([50, -50], [60, -40])])
    # default m = n - f = 5: exactly the honest rows
    assert run("multi-krum", x, f=2) == pytest.approx([0.5, 0.5])
    # weighted by sample counts, as Flower's Multi-Krum
    rule = make_rule("multi-krum", {"f": 2}, num_clients=7)
    weights = np.array([2.0, 1, 1, 1, 1, 1000, 1000])
    out = rule(x, weights=weights, rng=RNG)
    assert out == pytest.approx([2.5 / 6, 2.5 / 6])
    # m = 1 is Krum: [0.5, 0.5] is the centre of the square
    assert run("multi-krum", x, f=2, m=1).tolist() == [0.5, 0.5]


def test_krum_scores_against_the_definition() -> None:
    """Multi-Krum's choice equals the m smallest sums over the n - f - 2 nearest, written out."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(9, 4))
    f, m = 2, 3
    scores = []
    for i in range(9):
        d = sorted(float(np.sum((x[i] - x[j]) ** 2)) for j in range(9) if j != i)
        scores.append(sum(d[: 9 - f - 2]))
    best = sorted(range(9), key=lambda i: scores[i])[:m]
    assert run("multi-krum", x, f=f, m=m) == pytest.approx(x[best].mean(axis=0))


def test_bulyan_discards_the_outlier() -> None:
    honest = np.random.default_rng(4).normal(size=(6, 3))
    far = run("bulyan", np.vstack([honest, np.full((1, 3), 1e3)]), f=1)
    farther = run("bulyan", np.vstack([honest, rows([-1e6, 5e5, 7e4])]), f=1)
    assert far == pytest.approx(farther, abs=0)  # the outlier never counts
    assert np.all(far >= honest.min(axis=0))
    assert np.all(far <= honest.max(axis=0))


def test_bulyan_of_equal_honest_updates_is_that_update() -> None:
    x = np.vstack([np.tile([1.0, -2.0], (8, 1)), rows([9, 9], [-9, 30], [1e5, 0])])
    assert run("bulyan", x, f=2).tolist() == [1.0, -2.0]  # n = 11 = 4f + 3


# --- coordinate-wise rules --------------------------------------------------------------------


def test_coordinate_median() -> None:
    assert run("median", rows([1, 5, -1], [3, 2, 0], [2, 9, 10])).tolist() == [2, 5, 0]
    assert run("median", rows([1], [2], [3], [10])).tolist() == [2.5]


def test_trimmed_mean_drops_exactly_beta_n_from_each_tail() -> None:
    col0 = [4, 9, 1, 7, 3, 10, 2, 8, 6, 5]  # drop 1, 2 and 9, 10: mean of 3..8
    col1 = [100, -100, 0, 0, 0, 0, 0, 0, 50, -50]  # drop +-100 and +-50
    col2 = [1, 2, 3, 4, 5, 6, 7, 8, 9, 1000]  # drop 1, 2 and 9, 1000
    x = np.array([col0, col1, col2], dtype=np.float64).T
    assert run("trimmed-mean", x, beta=0.2).tolist() == [5.5, 0.0, 5.5]
    assert run("trimmed-mean", x, beta=0.25).tolist() == [5.5, 0.0, 5.5]  # int(2.5) = 2
    assert run("trimmed-mean", x, beta=0.1).tolist() == [5.5, 0.0, 5.5]  # one from each tail
    assert run("trimmed-mean", x, beta=0.0) == pytest.approx(x.mean(axis=0))


# --- geometric median ---------------------------------------------------------------------------


def _distance_sum(points: np.ndarray, z: np.ndarray) -> float:
    return float(np.linalg.norm(points - z, axis=1).sum())


def test_geometric_median_against_brute_force() -> None:
    points = rows([0, 0], [4, 0], [0, 3], [5, 5], [3, -2])
    centre, step = np.array([2.5, 1.5]), 0.05
    for _ in range(6):  # grids around the best point, each 10x finer
        grid = [centre + step * np.array([i, j]) for i, j in product(range(-60, 61), repeat=2)]
        centre = min(grid, key=lambda z: _distance_sum(points, z))
        step /= 10
    found = run("geometric-median", points)
    assert np.linalg.norm(found - centre) < 1e-5
    assert _distance_sum(points, found) <= _distance_sum(points, centre) + 1e-9


def test_geometric_median_resists_one_huge_outlier() -> None:
    honest = np.random.default_rng(5).normal(loc=1.0, scale=0.1, size=(6, 2))
    x = np.vstack([honest, rows([1e6, 1e6])])
    out = run("geometric-median", x)
    assert np.linalg.norm(out - honest.mean(axis=0)) < 0.1  # the mean moves by 2e5
    assert np.linalg.norm(x.mean(axis=0) - honest.mean(axis=0)) > 1e5


# --- centered clipping ------------------------------------------------------------------------


def test_centered_clipping_returns_equal_honest_updates() -> None:
    h = np.array([3.0, 4.0])  # norm 5
    x = np.tile(h, (5, 1))
    assert run("centered-clipping", x).tolist() == h.tolist()  # within tau of the zero start
    # tau = 1 below |h|: each step walks 1 towards h, reaching it after 5
    out = run("centered-clipping", x, tau=1.0, L=5)
    assert out == pytest.approx(h, abs=1e-12)
    assert run("centered-clipping", x, tau=1.0, L=2) == pytest.approx(0.4 * h)


def test_centered_clipping_bounds_an_outliers_pull_by_tau() -> None:
    h = np.array([1.0, -1.0, 2.0])
    n, tau = 10, 0.5
    x = np.vstack([np.tile(h, (n - 1, 1)), np.full((1, 3), 1e9)])
    rule = make_rule("centered-clipping", {"tau": tau, "L": 3}, num_clients=n)
    assert isinstance(rule, CenteredClipping)
    rule.load_state({"center": h})  # the previous round's aggregate
    out = rule(x, rng=RNG)
    # first step: exactly tau / n towards the outlier; later steps add at most tau / n each
    assert tau / n <= np.linalg.norm(out - h) <= 3 * tau / n + 1e-12


def test_centered_clipping_state_resumes_the_same_centre() -> None:
    x1, x2 = np.random.default_rng(6).normal(size=(2, 5, 4)) * 10
    one = make_rule("centered-clipping", {"tau": 2.0}, num_clients=5)
    assert isinstance(one, CenteredClipping)
    assert one.state() == {}
    one(x1, rng=RNG)
    resumed = CenteredClipping(tau=2.0)
    resumed.load_state(one.state())
    assert resumed(x2, rng=RNG).tolist() == one(x2, rng=RNG).tolist()
    assert CenteredClipping(tau=2.0)(x2, rng=RNG).tolist() != one.state()["center"].tolist()


# --- FLTrust ----------------------------------------------------------------------------------


def test_fltrust_zeroes_opposite_clients_and_rescales_to_the_reference() -> None:
    assert "fltrust" in NEEDS_REFERENCE
    rule = make_rule("fltrust", {}, num_clients=3)
    ref = np.array([2.0, 0.0])
    # a scaled-up client becomes the reference's norm; the opposite one gets weight 0
    out = rule(rows([100, 0], [-3, 0], [0, 5]), rng=RNG, reference=ref)
    assert out.tolist() == [2.0, 0.0]
    # cos 0.6 and 1: (0.6 * [0.6, 0.8] + 1 * [1, 0]) / 1.6 for a unit reference
    out = rule(rows([3, 4], [10, 0]), rng=RNG, reference=np.array([1.0, 0.0]))
    assert out == pytest.approx([0.85, 0.3])
    # nobody trusted: the model does not move
    assert rule(rows([-1, 0], [0, 1]), rng=RNG, reference=ref).tolist() == [0.0, 0.0]


def test_fltrust_without_reference_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="reference"):
        make_rule("fltrust", {}, num_clients=2)(rows([1, 0], [0, 1]), rng=RNG)


# --- pre-aggregators ----------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "s"), [(10, 2), (10, 3), (7, 7), (5, 1)])
def test_bucketing_averages_disjoint_buckets_of_s(n: int, s: int) -> None:
    pre = make_pre("bucketing", {"s": s}, num_clients=n)
    out = pre(np.eye(n), np.random.default_rng(7))  # row i marks client i
    assert out.shape == (math.ceil(n / s), n) == (pre.output_rows(n), n)
    members = [set(np.flatnonzero(row).tolist()) for row in out]
    assert sorted(len(m) for m in members) == sorted([s] * (n // s) + ([n % s] if n % s else []))
    assert set().union(*members) == set(range(n))  # disjoint and covering: sizes sum to n
    for row, m in zip(out, members, strict=True):
        assert row[list(m)] == pytest.approx(1 / len(m))


def test_bucketing_groups_follow_the_rng() -> None:
    pre = make_pre("bucketing", {"s": 2}, num_clients=8)
    a = pre(np.eye(8), np.random.default_rng(1))
    assert a.tolist() == pre(np.eye(8), np.random.default_rng(1)).tolist()
    others = [pre(np.eye(8), np.random.default_rng(seed)).tolist() for seed in range(2, 6)]
    assert any(o != a.tolist() for o in others)


def test_nnm_replaces_each_row_by_the_mean_of_its_n_minus_f_nearest() -> None:
    x = rows([0], [1], [3], [10])  # f = 1: three nearest, self included
    out = make_pre("nnm", {"f": 1}, num_clients=4)(x, RNG)
    assert out[:, 0] == pytest.approx([4 / 3, 4 / 3, 4 / 3, 14 / 3])
    y = np.random.default_rng(8).normal(size=(7, 3))
    mixed = make_pre("nnm", {"f": 2}, num_clients=7)(y, RNG)
    for i in range(7):
        nearest = sorted(range(7), key=lambda j: float(np.linalg.norm(y[i] - y[j])))[:5]
        assert mixed[i] == pytest.approx(y[nearest].mean(axis=0))


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options", "n", "message"),
    [
        (
            "krum",
            {"f": 5},
            10,
            "krum: f=5 Byzantine of n=10 clients needs n > 2f + 2; allowed f <= 3",
        ),
        ("multi-krum", {"f": 4}, 10, "multi-krum: f=4 Byzantine of n=10 clients needs n > 2f + 2"),
        ("multi-krum", {"f": 1, "m": 11}, 10, "allowed 1 <= m <= 10"),
        (
            "bulyan",
            {"f": 3},
            14,
            "bulyan: f=3 Byzantine of n=14 clients needs n >= 4f + 3; allowed f <= 2",
        ),
        (
            "trimmed-mean",
            {"beta": 0.5},
            10,
            "beta=0.5 cut from each tail must satisfy 0 <= beta < 0.5",
        ),
        ("krum", {"f": -1}, 10, "non-negative"),
        ("krum", {"f": 1.5}, 10, "krum: option f=1.5 must be an integer"),
        (
            "krum",
            {"num_malicious_clients": 1},
            10,
            "unknown option 'num_malicious_clients'; allowed: f",
        ),
        ("centered-clipping", {"tau": 0}, 10, "tau=0 must be > 0"),
        ("geometric-median", {"T": 0}, 10, "T=0 must be an integer >= 1"),
        ("nnm", {"f": 5}, 10, "nnm: f=5 Byzantine of n=10 clients needs n > 2f; allowed f <= 4"),
        ("bucketing", {"s": 11}, 10, "allowed 1 <= s <= 10"),
    ],
)
def test_bad_settings_get_one_line(
    name: str, options: dict[str, float], n: int, message: str
) -> None:
    with pytest.raises(TinylargeError) as info:
        check_options(name, options, num_clients=n)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    build = make_pre if name in PRE_AGGREGATORS else make_rule
    with pytest.raises(TinylargeError):
        build(name, options, num_clients=n)


def test_good_settings_pass() -> None:
    check_options("krum", {"f": 3}, num_clients=10)
    check_options("bulyan", {"f": 2}, num_clients=11)
    check_options("trimmed-mean", {"beta": 0.49}, num_clients=10)
    check_options("krum", {"f": 2.0}, num_clients=10)  # an integral float from YAML


def test_unknown_rule_lists_the_known_ones() -> None:
    with pytest.raises(TinylargeError) as info:
        make_rule("krumm", {}, num_clients=10)
    assert str(info.value) == (
        "unknown robust aggregation rule 'krumm'; known: bulyan, centered-clipping, fltrust, "
        "geometric-median, krum, median, multi-krum, trimmed-mean"
    )
    with pytest.raises(TinylargeError, match=r"known: .*bucketing.*krum.*nnm"):
        check_options("krumm", {}, num_clients=10)


def test_a_round_with_too_few_updates_for_f_is_refused_at_call_time() -> None:
    rule = make_rule("krum", {"f": 3}, num_clients=10)
    with pytest.raises(TinylargeError, match="n=7 clients"):
        rule(np.zeros((7, 2)), rng=RNG)


# --- no attack: every rule near the mean --------------------------------------------------------

#: How many updates each rule effectively averages on i.i.d. data (n = 60, defaults, f = 5).
EFFECTIVE = {
    "krum": 1,  # one update
    "multi-krum": 55,  # n - f
    "bulyan": 30,  # per coordinate n - 4f = 40 values around the median, less efficient
    "median": 38,  # 2n / pi, the median's asymptotic efficiency
    "trimmed-mean": 36,  # n - 2 int(0.2 n)
    "geometric-median": 38,
    "centered-clipping": 60,  # every update within tau of the zero start: the mean itself
    "fltrust": 30,
}


def test_without_attackers_every_rule_is_close_to_the_mean() -> None:
    """N(mu, I) updates in d = 20, mu = 5: a rule averaging k updates sits about
    sqrt(d / k) from the true mean, and the sample mean sqrt(d / n) from it, so
    |rule - mean| <= 3 sqrt(d / k) holds with wide margin (chi with d degrees of freedom
    concentrates within ~1 of its mean sqrt(d/k)); returning zeros (|mean| ~ 22) fails."""
    assert set(EFFECTIVE) == set(RULES)
    n, d = 60, 20
    x = np.random.default_rng(9).normal(loc=5.0, size=(n, d))
    mean = x.mean(axis=0)
    for name in RULES:
        options = {"f": 5} if name in {"krum", "multi-krum", "bulyan"} else {}
        rule = make_rule(name, options, num_clients=n)
        reference = np.full(d, 5.0) if name in NEEDS_REFERENCE else None
        out = rule(x, rng=np.random.default_rng(1), reference=reference)
        assert np.linalg.norm(out - mean) <= 3 * math.sqrt(d / EFFECTIVE[name]), name
    for pre in PRE_AGGREGATORS:
        mixed = make_pre(pre, {}, num_clients=n)(x, np.random.default_rng(1))
        # defaults (s = 2 divides n; f = 0 mixes every row with all) keep the mean exactly
        assert mixed.mean(axis=0) == pytest.approx(mean), pre
