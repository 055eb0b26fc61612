"""The load_dataset facade, subsets and the Dataset container."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tinylarge.data import Dataset, dataset_names, load_dataset, normalize, text_dataset_names
from tinylarge.data.contract import denormalize, fit_stats, standardize
from tinylarge.data.splits import stratified_choice, stratified_split
from tinylarge.errors import TinylargeError, UnknownNameError


def test_registered_names() -> None:
    assert dataset_names() == ["digits", "fashion-mnist", "fsdd", "mnist", "nsl-kdd", "nsl-kdd-5"]
    assert text_dataset_names() == ["clinc150", "ibn-nlu"]


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match="unknown dataset 'cifar'; known: digits, "):
        load_dataset("cifar")


@pytest.mark.parametrize("bad", [0, -3])
def test_subset_must_be_positive(bad: int) -> None:
    with pytest.raises(TinylargeError, match="subset must be a positive"):
        load_dataset("digits", subset=bad)


def test_subset_is_stratified_bounded_and_deterministic() -> None:
    full = load_dataset("digits", seed=0)
    small = load_dataset("digits", subset=200, seed=0)
    again = load_dataset("digits", subset=200, seed=0)
    other = load_dataset("digits", subset=200, seed=5)
    assert small.num_train == 200
    assert small.num_test == 40
    proportional = np.bincount(full.y_train) * 200 / full.num_train
    assert np.all(np.abs(np.bincount(small.y_train, minlength=10) - proportional) < 1)
    np.testing.assert_array_equal(small.x_train, again.x_train)
    assert not np.array_equal(small.x_test, other.x_test)
    # The contract is the full training split's, whatever the subset.
    assert small.preprocessing == full.preprocessing
    assert load_dataset("digits", subset=10_000).num_train == full.num_train


def test_stratified_choice_keeps_proportions() -> None:
    labels = np.repeat(np.arange(3), [600, 300, 100]).astype(np.int64)
    idx = stratified_choice(labels, 100, np.random.default_rng(0))
    assert np.bincount(labels[idx]).tolist() == [60, 30, 10]
    assert np.all(np.diff(idx) > 0)
    odd = stratified_choice(labels, 7, np.random.default_rng(0))
    assert odd.shape == (7,)
    assert np.unique(odd).shape == (7,)


def test_stratified_split_partitions() -> None:
    labels = np.repeat(np.arange(4), 25).astype(np.int64)
    train, test = stratified_split(labels, test_fraction=0.2, rng=np.random.default_rng(3))
    assert np.bincount(labels[test]).tolist() == [5] * 4
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(100))


def test_contract_round_trip() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(50, 3, 4)).astype(np.float32)
    x[:, 1] = 0.5  # a constant feature: std 1, no division by zero
    mean, std = fit_stats(x, axis=0)
    # the definition, written out: one mean and std per index of the sample's axis 0
    for c in range(3):
        values = x[:, c, :].astype(np.float64).ravel()
        assert mean[c] == pytest.approx(values.sum() / values.size, rel=1e-12)
        by_hand = np.sqrt(((values - values.mean()) ** 2).sum() / values.size)
        assert std[c] == pytest.approx(1.0 if by_hand < 1e-6 else by_hand, rel=1e-9)
    assert std[1] == 1.0
    pre = {"mean": mean, "std": std, "axis": 0}
    z = normalize(x, pre)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z[:, 0].mean(), 0, atol=1e-6)
    np.testing.assert_allclose(z[:, 2].std(), 1, atol=1e-5)
    np.testing.assert_allclose(denormalize(z, pre), x, atol=1e-6)
    # normalize is (x - mean) / std per index of the axis, element by element
    for i, c, j in [(0, 0, 0), (7, 1, 3), (49, 2, 2)]:
        assert z[i, c, j] == pytest.approx((float(x[i, c, j]) - mean[c]) / std[c], abs=1e-6)
    np.testing.assert_array_equal(z[:, 1], 0.0)  # a constant feature centres to zero


def test_normalize_along_the_last_axis() -> None:
    # per-coefficient statistics of (T, n_mfcc) samples: axis 1 of the sample
    x = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    pre = {"mean": [10.0, 20.0], "std": [2.0, 4.0], "axis": 1}
    z = normalize(x, pre)
    expected = np.empty_like(x)
    for n, t, k in np.ndindex(*x.shape):
        expected[n, t, k] = (x[n, t, k] - pre["mean"][k]) / pre["std"][k]
    np.testing.assert_allclose(z, expected, rtol=1e-6)
    inplace = x.copy()
    out = standardize(inplace, mean=pre["mean"], std=pre["std"], axis=1, inplace=True)
    assert out is inplace
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_dataset_validates_its_arrays() -> None:
    ds = load_dataset("digits", subset=20)
    with pytest.raises(ValueError, match="float32"):
        dataclasses.replace(ds, x_train=ds.x_train.astype(np.float64))
    with pytest.raises(ValueError, match="outside"):
        dataclasses.replace(ds, y_test=ds.y_test + 10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "other"  # type: ignore[misc]
    assert isinstance(ds, Dataset)


def test_docstring_examples_run() -> None:
    import doctest

    import tinylarge.data

    result = doctest.testmod(tinylarge.data, raise_on_error=False)
    assert result.attempted > 0
    assert result.failed == 0
