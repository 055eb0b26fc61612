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
    TEST_FILE,
    category_of,
    read_records,
)
from tinylarge.data.paths import ChecksumMismatchError, verify_file
from tinylarge.errors import TinylargeError


def _folder(root: Path, shared: Path, *names: str) -> Path:
    """A data directory holding exactly ``names`` (links to the shared copies)."""
    folder = root / "nsl-kdd"
    folder.mkdir(parents=True)
    for name in names:
        (folder / name).symlink_to(shared / "nsl-kdd" / name)
    return root


@pytest.fixture(scope="module")
def binary(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """Loaded from a directory with both training files: the full one is preferred."""
    root = _folder(
        tmp_path_factory.mktemp("both"),
        shared_dir,
        "KDDTrain+.txt",
        "KDDTrain+_20Percent.txt",
        "KDDTest+.txt",
    )
    return load_dataset("nsl-kdd", data_dir=root)


@pytest.fixture(scope="module")
def binary_20(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """Loaded from a directory with only the 20% training file."""
    root = _folder(
        tmp_path_factory.mktemp("twenty"), shared_dir, "KDDTrain+_20Percent.txt", "KDDTest+.txt"
    )
    return load_dataset("nsl-kdd", data_dir=root)


def test_binary_counts_and_shapes(binary: Dataset) -> None:
    # Counts of the shared data's nsl-kdd/SOURCE.md ("Files and verified counts").
    ds = binary
    assert ds.preprocessing["train_file"] == "KDDTrain+.txt"
    assert ds.num_train == 125_973
    assert ds.num_test == 22_544
    assert ds.label_names == ("normal", "attack")
    assert int((ds.y_train == 0).sum()) == 67_343
    assert int((ds.y_test == 0).sum()) == 9_711
    assert ds.input_shape == (ds.x_train.shape[1],)
    names = ds.preprocessing["feature_names"]
    # 38 numeric columns + one-hot of the 3 protocols, 70 services and 11 flags of KDDTrain+
    assert len(names) == ds.input_shape[0] == 38 + 3 + 70 + 11
    assert names[: len(NUMERIC_COLUMNS)] == list(NUMERIC_COLUMNS)
    assert "protocol_type=tcp" in names
    assert "service=http" in names
    assert "flag=SF" in names
    json.dumps(ds.preprocessing)


def test_the_20_percent_file_when_the_full_one_is_absent(binary_20: Dataset) -> None:
    ds = binary_20
    assert ds.preprocessing["train_file"] == "KDDTrain+_20Percent.txt"
    assert ds.num_train == 25_192
    assert int((ds.y_train == 0).sum()) == 13_449
    assert ds.num_test == 22_544
    # the 20% file has 66 of the 70 services
    assert len(ds.preprocessing["feature_names"]) == 38 + 3 + 66 + 11


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


def test_test_only_services_are_all_zero(binary_20: Dataset, shared_dir: Path) -> None:
    ds = binary_20
    rows, _ = read_records(shared_dir / "nsl-kdd" / "KDDTest+.txt")
    known = next(c for c in ds.preprocessing["to_unit"]["categorical"] if c["name"] == "service")
    names = ds.preprocessing["feature_names"]
    block = [i for i, n in enumerate(names) if n.startswith("service=")]
    unit = denormalize(ds.x_test, ds.preprocessing)[:, block]
    unseen = np.array([r[2] not in known["categories"] for r in rows])
    # the 20% training file lacks a service of the test file: tftp_u (by a count of the files)
    assert {r[2] for r, u in zip(rows, unseen, strict=True) if u} == {"tftp_u"}
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


def test_a_damaged_training_file_is_refused(tmp_path: Path, shared_dir: Path) -> None:
    folder = tmp_path / "nsl-kdd"
    folder.mkdir()
    (folder / "KDDTest+.txt").symlink_to(shared_dir / "nsl-kdd" / "KDDTest+.txt")
    lines = (shared_dir / "nsl-kdd" / "KDDTrain+.txt").read_text().splitlines(keepends=True)
    (folder / "KDDTrain+.txt").write_text("".join(lines[:300]))  # truncated
    with pytest.raises(ChecksumMismatchError, match=r"KDDTrain\+\.txt"):
        load_dataset("nsl-kdd", data_dir=tmp_path)


def test_lf_and_crlf_copies_are_both_accepted(tmp_path: Path, shared_dir: Path) -> None:
    # SOURCE.md: the shared KDDTest+.txt is a CRLF copy without a final newline; the
    # publisher's is LF with one. Both must verify, and read to the same records.
    crlf = shared_dir / "nsl-kdd" / "KDDTest+.txt"
    lf = tmp_path / "KDDTest+.txt"
    lf.write_bytes(crlf.read_bytes().replace(b"\r\n", b"\n") + b"\n")
    verify_file(crlf, TEST_FILE)
    verify_file(lf, TEST_FILE)
    assert read_records(lf) == read_records(crlf)


def test_malformed_line_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "KDDTrain+.txt"
    bad.write_text("0,tcp,http,SF,1,2\n")
    with pytest.raises(TinylargeError, match=r"KDDTrain\+\.txt:1: expected 43"):
        read_records(bad)
