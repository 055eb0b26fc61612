"""Partitioners: the shared contract (Hypothesis) and each one's own behaviour."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinylarge.data import partition, partitioner_names
from tinylarge.data.partition import PARAMETERS, dirichlet, groups, options_model, quantity, shards
from tinylarge.errors import TinylargeError, UnknownNameError

FAST = settings(max_examples=40, deadline=None)


@st.composite
def tasks(draw: st.DrawFn) -> tuple[np.ndarray, int, int, np.ndarray]:
    n = draw(st.integers(1, 300))
    num_classes = draw(st.integers(1, 10))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, n).astype(np.int64)
    group_ids = rng.integers(0, draw(st.integers(1, 8)), n)
    num_groups = int(np.unique(group_ids).shape[0])
    num_clients = draw(st.integers(1, min(n, 12, num_groups)))
    return labels, num_clients, seed, group_ids


def _params(name: str, n: int, num_clients: int) -> dict[str, Any]:
    if name == "dirichlet":
        return {"alpha": 0.3, "min_size": 1 if n >= 5 * num_clients else 0}
    if name == "shards":
        return {"shards_per_client": max(1, min(2, n // num_clients))}
    return {}


def _assert_partition(parts: list[np.ndarray], n: int, num_clients: int) -> None:
    assert len(parts) == num_clients
    assert all(p.dtype == np.int64 for p in parts)
    joined = np.concatenate(parts)
    assert joined.shape == (n,)  # disjoint ...
    assert np.array_equal(np.sort(joined), np.arange(n))  # ... and covering


@pytest.mark.parametrize("name", ["iid", "dirichlet", "shards", "quantity", "groups"])
@FAST
@given(task=tasks())
def test_disjoint_covering_and_deterministic(
    name: str, task: tuple[np.ndarray, int, int, np.ndarray]
) -> None:
    labels, num_clients, seed, group_ids = task
    params = _params(name, labels.shape[0], num_clients)
    parts = partition(name, labels, num_clients=num_clients, seed=seed, groups=group_ids, **params)
    _assert_partition(parts, labels.shape[0], num_clients)
    again = partition(name, labels, num_clients=num_clients, seed=seed, groups=group_ids, **params)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))


def _mean_label_distance(alpha: float) -> float:
    """Mean total-variation distance between client and global label distributions."""
    labels = np.repeat(np.arange(10), 100)
    distances = []
    for seed in range(5):
        for part in dirichlet(labels, num_clients=10, seed=seed, alpha=alpha, min_size=5):
            local = np.bincount(labels[part], minlength=10) / part.shape[0]
            distances.append(0.5 * np.abs(local - 0.1).sum())
    return float(np.mean(distances))


def test_small_alpha_skews_labels_more_than_large_alpha() -> None:
    skewed, near_iid = _mean_label_distance(0.1), _mean_label_distance(100.0)
    assert skewed > 0.5 > 0.15 > near_iid


@FAST
@given(seed=st.integers(0, 10_000), alpha=st.floats(0.05, 5.0))
def test_dirichlet_respects_min_size(seed: int, alpha: float) -> None:
    labels = np.repeat(np.arange(5), 40)
    parts = dirichlet(labels, num_clients=8, seed=seed, alpha=alpha, min_size=10)
    assert min(p.shape[0] for p in parts) >= 10


def test_shards_give_each_client_at_most_two_labels() -> None:
    labels = np.random.default_rng(0).permutation(np.repeat(np.arange(10), 100))
    parts = shards(labels, num_clients=50, seed=1)  # 100 shards of 10, one label each
    assert all(np.unique(labels[p]).shape[0] <= 2 for p in parts)
    assert all(p.shape[0] == 20 for p in parts)
    assert any(np.unique(labels[p]).shape[0] == 2 for p in parts)


def test_quantity_skews_sizes_not_labels() -> None:
    labels = np.repeat(np.arange(4), 500)
    parts = quantity(labels, num_clients=10, seed=0, alpha=0.5, min_size=20)
    sizes = np.array([p.shape[0] for p in parts])
    assert sizes.min() >= 20
    assert sizes.max() > 3 * sizes.min()
    even = quantity(labels, num_clients=10, seed=0, distribution="lognormal", sigma=0.0)
    assert {p.shape[0] for p in even} == {200}
    big = max(parts, key=len)
    np.testing.assert_allclose(np.bincount(labels[big]) / big.shape[0], 0.25, atol=0.08)


def test_groups_keep_each_group_on_one_client() -> None:
    speaker = np.repeat(np.arange(6), 50)
    labels = np.tile(np.arange(10), 30)
    one_each = groups(labels, num_clients=6, seed=0, groups=speaker)
    assert sorted(int(np.unique(speaker[p]).item()) for p in one_each) == list(range(6))
    merged = groups(labels, num_clients=4, seed=0, groups=speaker)
    owners = [set(np.unique(speaker[p]).tolist()) for p in merged]
    assert sum(len(o) for o in owners) == 6
    assert all(owners)


def test_registry_and_errors() -> None:
    labels = np.zeros(10, dtype=np.int64)
    assert partitioner_names() == ["dirichlet", "groups", "iid", "quantity", "shards"]
    with pytest.raises(UnknownNameError, match="known: dirichlet, groups, iid, quantity, shards"):
        partition("pathological", labels, num_clients=2, seed=0)
    with pytest.raises(TinylargeError, match=r"num_clients \(11\) exceeds the number of samples"):
        partition("iid", labels, num_clients=11, seed=0)
    with pytest.raises(TinylargeError, match=r"alpha must be >= 0\.001, got 0\.0"):
        partition("dirichlet", labels, num_clients=2, seed=0, alpha=0.0, min_size=1)
    with pytest.raises(TinylargeError, match="needs groups"):
        partition("groups", labels, num_clients=2, seed=0)
    with pytest.raises(TinylargeError, match="exceeds the number of groups"):
        partition("groups", labels, num_clients=3, seed=0, groups=np.arange(10) % 2)
    with pytest.raises(TinylargeError, match="unknown option beta; allowed: alpha, min_size"):
        partition("dirichlet", labels, num_clients=2, seed=0, beta=1.0)
    with pytest.raises(TinylargeError, match="lower min_size"):
        partition("dirichlet", labels, num_clients=2, seed=0)  # default min_size 10 > 10 / 2
    with pytest.raises(TinylargeError, match="shards"):
        partition("shards", labels, num_clients=6, seed=0)
    with pytest.raises(TinylargeError, match="distribution: Input should be 'dirichlet' or"):
        partition("quantity", labels, num_clients=2, seed=0, distribution="zipf")
    with pytest.raises(TinylargeError, match="one-dimensional"):
        partition("iid", labels.reshape(2, 5), num_clients=2, seed=0)


def test_groups_argument_is_ignored_by_label_partitioners() -> None:
    labels = np.arange(20) % 4
    with_groups = partition("iid", labels, num_clients=4, seed=7, groups=np.zeros(20))
    without = partition("iid", labels, num_clients=4, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(with_groups, without, strict=True))


def _top_share(labels: np.ndarray, parts: list[np.ndarray]) -> float:
    """Mean over classes of the share of a class its largest holder has."""
    owner = np.empty(labels.shape[0], dtype=np.int64)
    for client, idx in enumerate(parts):
        owner[idx] = client
    classes = np.unique(labels)
    return float(
        np.mean([np.bincount(owner[labels == k]).max() / np.sum(labels == k) for k in classes])
    )


@pytest.mark.parametrize("alpha", [1e-3, 1e-2])
def test_the_smallest_alphas_give_each_class_to_one_client(alpha: float) -> None:
    # Dir(alpha -> 0) puts a class on one client. numpy's draws at these alphas can be all
    # zeros once full clients are masked; such a draw used to become NaN cut points and a
    # partition that looked IID. It is now redrawn.
    labels = np.repeat(np.arange(10), 50)
    parts = partition("dirichlet", labels, num_clients=4, seed=0, alpha=alpha, min_size=0)
    joined = np.concatenate(parts)
    assert np.array_equal(np.sort(joined), np.arange(500))
    assert _top_share(labels, parts) > 0.95
    iid_like = partition("dirichlet", labels, num_clients=4, seed=0, alpha=1e6, min_size=0)
    assert _top_share(labels, iid_like) < 0.35


@pytest.mark.parametrize(
    ("name", "options", "fragment"),
    [
        ("dirichlet", {"alpha": 1e-4}, "alpha must be >= 0.001"),
        ("dirichlet", {"alpha": float("inf")}, "alpha: Input should be a finite number"),
        ("dirichlet", {"min_size": -1}, "min_size must be >= 0"),
        ("dirichlet", {"min_size": 10**30}, "min_size must be <= 10000000"),
        ("dirichlet", {"min_size": 2.5}, "min_size: Input should be a valid integer"),
        ("shards", {"shards_per_client": 0}, "shards_per_client must be >= 1"),
        ("quantity", {"sigma": 11.0}, "sigma must be <= 10"),
        ("quantity", {"sigma": float("nan")}, "sigma: Input should be a finite number"),
        ("iid", {"alpha": 0.5}, "unknown option alpha; allowed: per_client"),
    ],
)
def test_every_parameter_is_bounded(name: str, options: dict[str, Any], fragment: str) -> None:
    labels = np.repeat(np.arange(10), 50)
    with pytest.raises(TinylargeError) as info:
        partition(name, labels, num_clients=4, seed=0, **options)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_every_partitioner_parameter_has_a_range() -> None:
    for name in partitioner_names():
        model = options_model(name)  # raises KeyError for a parameter without a range
        assert set(model.model_fields) <= set(PARAMETERS)


def test_the_extreme_allowed_sigma_still_partitions() -> None:
    labels = np.repeat(np.arange(10), 50)
    parts = partition("quantity", labels, num_clients=4, seed=0, distribution="lognormal", sigma=10)
    assert sum(len(p) for p in parts) == 500
    assert min(len(p) for p in parts) >= 1


def test_iid_per_client_draws_with_replacement_for_fleets_larger_than_the_data() -> None:
    labels = np.arange(50) % 10
    parts = partition("iid", labels, num_clients=200, seed=4, per_client=3)
    assert len(parts) == 200
    assert all(p.dtype == np.int64 and p.shape == (3,) for p in parts)
    assert all(np.array_equal(p, np.sort(p)) for p in parts)
    joined = np.concatenate(parts)
    assert joined.min() >= 0
    assert joined.max() < 50
    assert len(np.unique(joined)) > 40  # drawn over the whole set, not one corner of it
    again = partition("iid", labels, num_clients=200, seed=4, per_client=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
