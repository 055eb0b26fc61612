"""NSL-KDD: counts, feature contract, one-hot of unseen categories, label maps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tinylarge.data import Dataset, denormalize, load_dataset
from tinylarge.data.nslkdd import (
    ATTACK_CATEGORY,
    CATEGORIES,
    LOG1P_COLUMNS,
    NUMERIC_COLUMNS,
    category_of,
    read_records,
)
from tinylarge.errors import TinylargeError


@pytest.fixture(scope="module")
def binary(shared_dir: Path) -> Dataset:
    return load_dataset("nsl-kdd", data_dir=shared_dir)


def test_binary_counts_and_shapes(binary: Dataset, shared_dir: Path) -> None:
    ds = binary
    assert ds.num_train == 25192
    assert ds.num_test == 22544
    assert ds.label_names == ("normal", "attack")
    assert int((ds.y_train == 0).sum()) == 13449
    assert int((ds.y_test == 0).sum()) == 9711
    assert ds.input_shape == (ds.x_train.shape[1],)
    assert ds.preprocessing["train_file"] == "KDDTrain+_20Percent.txt"
    names = ds.preprocessing["feature_names"]
    assert len(names) == ds.input_shape[0] == 118
    assert names[: len(NUMERIC_COLUMNS)] == list(NUMERIC_COLUMNS)
    assert "protocol_type=tcp" in names
    assert "service=http" in names
    assert "flag=SF" in names
    json.dumps(ds.preprocessing)


def test_unit_features_are_in_0_1_and_standardized(binary: Dataset) -> None:
    ds = binary
    unit_train = denormalize(ds.x_train, ds.preprocessing)
    unit_test = denormalize(ds.x_test, ds.preprocessing)
    for unit in (unit_train, unit_test):
        assert unit.min() >= -1e-5
        assert unit.max() <= 1 + 1e-5
    std = np.asarray(ds.preprocessing["std"])
    varying = std != 1.0
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(ds.x_train.std(axis=0)[varying], 1, atol=1e-3)
    log_cols = {s["name"] for s in ds.preprocessing["to_unit"]["numeric"] if s["log1p"]}
    assert log_cols == set(LOG1P_COLUMNS)
    # src_bytes spans many decades: after log1p and min-max its median is mid-range.
    col = NUMERIC_COLUMNS.index("src_bytes")
    nonzero = unit_train[:, col][unit_train[:, col] > 0]
    assert 0.2 < float(np.median(nonzero)) < 0.8


def test_test_only_services_are_all_zero(binary: Dataset, shared_dir: Path) -> None:
    ds = binary
    rows, _ = read_records(shared_dir / "nsl-kdd" / "KDDTest+.txt")
    known = next(c for c in ds.preprocessing["to_unit"]["categorical"] if c["name"] == "service")
    names = ds.preprocessing["feature_names"]
    block = [i for i, n in enumerate(names) if n.startswith("service=")]
    unit = denormalize(ds.x_test, ds.preprocessing)[:, block]
    unseen = np.array([r[2] not in known["categories"] for r in rows])
    assert unseen.any()  # the 20% training file lacks a few services of the test file
    np.testing.assert_allclose(unit[unseen].sum(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(unit[~unseen].sum(axis=1), 1, atol=1e-5)


def test_five_classes_cover_test_only_attacks(shared_dir: Path) -> None:
    ds = load_dataset("nsl-kdd-5", subset=500)
    assert ds.label_names == CATEGORIES
    assert ds.num_classes == 5
    _, labels = read_records(shared_dir / "nsl-kdd" / "KDDTest+.txt")
    codes = np.array([category_of(label) for label in labels])
    # KDDTest+ per category, counted from the file's labels with the map.
    assert np.bincount(codes).tolist() == [9711, 7460, 2421, 2885, 67]
    for attack in ("mailbomb", "apache2", "processtable", "snmpgetattack", "udpstorm", "worm"):
        assert attack in ATTACK_CATEGORY
    assert CATEGORIES[category_of("mscan")] == "Probe"
    assert CATEGORIES[category_of("httptunnel")] == "R2L"
    assert CATEGORIES[category_of("sqlattack")] == "U2R"
    with pytest.raises(TinylargeError, match="unknown attack name 'zeroday'"):
        category_of("zeroday")


def test_full_training_file_is_preferred(tmp_path: Path, shared_dir: Path) -> None:
    folder = tmp_path / "nsl-kdd"
    folder.mkdir()
    src = shared_dir / "nsl-kdd"
    (folder / "KDDTest+.txt").symlink_to(src / "KDDTest+.txt")
    (folder / "KDDTrain+_20Percent.txt").symlink_to(src / "KDDTrain+_20Percent.txt")
    lines = (src / "KDDTrain+_20Percent.txt").read_text().splitlines(keepends=True)
    (tmp_path / "KDDTrain+.txt").write_text("".join(lines[:300]))
    ds = load_dataset("nsl-kdd", data_dir=tmp_path)
    assert ds.preprocessing["train_file"] == "KDDTrain+.txt"
    assert ds.num_train == 300


def test_malformed_line_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "KDDTrain+.txt"
    bad.write_text("0,tcp,http,SF,1,2\n")
    with pytest.raises(TinylargeError, match=r"KDDTrain\+\.txt:1: expected 43"):
        read_records(bad)
