"""The IDX parser and the image loaders (digits, Fashion-MNIST, MNIST)."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from tinylarge.data import denormalize, load_dataset, read_idx, write_idx
from tinylarge.data.idx import parse_idx
from tinylarge.data.images import FASHION_MNIST_FILES, MNIST_FILES, load_idx_dataset
from tinylarge.errors import TinylargeError


def _idx_bytes(code: int, shape: tuple[int, ...], body: bytes) -> bytes:
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + body


def test_parser_reads_a_hand_written_file(tmp_path: Path) -> None:
    # 2x3 big-endian int16: the parser must swap bytes and keep C order.
    values = [1, -2, 300, 4, 5, -32768]
    raw = _idx_bytes(0x0B, (2, 3), struct.pack(">6h", *values))
    (tmp_path / "plain-idx2-short").write_bytes(raw)
    (tmp_path / "zipped.gz").write_bytes(gzip.compress(raw))
    for name in ("plain-idx2-short", "zipped.gz"):
        array = read_idx(tmp_path / name)
        assert array.dtype == np.int16
        assert array.dtype.isnative
        assert array.tolist() == [[1, -2, 300], [4, 5, -32768]]


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_write_then_read_round_trips(tmp_path: Path, dtype: type[np.generic]) -> None:
    array = (np.arange(24).reshape(2, 3, 4) * 3 - 20).astype(dtype)
    if dtype is np.uint8:
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", array)
    write_idx(tmp_path / "a", array, compress=False)
    for name in ("a.gz", "a"):
        back = read_idx(tmp_path / name)
        assert back.dtype == array.dtype
        assert back.shape == array.shape
        np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "bad magic"),
        (_idx_bytes(0x07, (1,), b"\x05"), "type code"),
        (_idx_bytes(0x08, (2, 2), b"\x01\x02\x03"), "needs 4 data bytes, found 3"),
        (b"\x00\x00\x08\x03\x00", "truncated"),
        (b"\x1f\x8b\x08garbage", "corrupt gzip"),
    ],
)
def test_parser_rejects_broken_files(data: bytes, match: str) -> None:
    with pytest.raises(TinylargeError, match=match):
        parse_idx(data, source="broken")


def test_parser_on_the_fashion_label_files(shared_dir: Path) -> None:
    folder = shared_dir / "fashion-mnist"
    train = read_idx(folder / "train-labels-idx1-ubyte.gz")
    test = read_idx(folder / "t10k-labels-idx1-ubyte.gz")
    assert train.shape == (60000,)
    assert test.shape == (10000,)
    assert np.bincount(train).tolist() == [6000] * 10
    assert np.bincount(test).tolist() == [1000] * 10


def test_fashion_mnist_full(shared_dir: Path) -> None:
    ds = load_dataset("fashion-mnist")
    assert ds.x_train.shape == (60000, 1, 28, 28)
    assert ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.x_train.dtype == np.float32
    assert ds.y_train.dtype == np.int64
    assert ds.input_shape == (1, 28, 28)
    assert ds.num_classes == 10
    assert ds.label_names[0] == "T-shirt/top"
    assert ds.label_names[9] == "Ankle boot"
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    pre = ds.preprocessing
    assert pre["to_unit"] == {"kind": "divide", "divisor": 255.0}
    assert pre["axis"] == 0
    assert len(pre["mean"]) == len(pre["std"]) == 1
    # The published Fashion-MNIST statistics: mean 0.2860, std 0.3530 (pixels / 255).
    assert pre["mean"][0] == pytest.approx(0.2860, abs=1e-3)
    assert pre["std"][0] == pytest.approx(0.3530, abs=1e-3)
    assert float(ds.x_train.mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(ds.x_train.std()) == pytest.approx(1.0, abs=1e-3)
    unit = denormalize(ds.x_test[:500], pre)
    assert unit.min() >= -1e-5
    assert unit.max() <= 1 + 1e-5
    # Pixels came back: multiples of 1/255.
    np.testing.assert_allclose(unit * 255, np.round(unit * 255), atol=2e-3)
    json.dumps(pre)


def test_idx_loader_checks_images_against_labels(tmp_path: Path) -> None:
    folder = tmp_path / "toy"
    folder.mkdir()
    names = {
        "train-images": np.zeros((4, 2, 2), np.uint8),
        "train-labels": np.zeros(3, np.uint8),  # one label short
        "t10k-images": np.zeros((2, 2, 2), np.uint8),
        "t10k-labels": np.zeros(2, np.uint8),
    }
    files = {
        part: type(spec)(dataset="toy", filename=spec.filename, url=spec.url)
        for part, spec in MNIST_FILES.items()
    }
    for part, array in names.items():
        write_idx(folder / files[part].filename, array)
    with pytest.raises(TinylargeError, match="do not match"):
        load_idx_dataset(name="toy", files=files, label_names=("a",), data_dir=tmp_path)


def test_idx_loader_on_a_tiny_mnist_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "toy"
    folder.mkdir()
    arrays = {
        "train-images": rng.integers(0, 256, (20, 5, 5), dtype=np.uint8),
        "train-labels": np.arange(20, dtype=np.uint8) % 2,
        "t10k-images": rng.integers(0, 256, (6, 5, 5), dtype=np.uint8),
        "t10k-labels": np.arange(6, dtype=np.uint8) % 2,
    }
    files = {
        part: type(spec)(dataset="toy", filename=spec.filename, url=spec.url)
        for part, spec in FASHION_MNIST_FILES.items()
    }
    for part, array in arrays.items():
        write_idx(folder / files[part].filename, array)
    ds = load_idx_dataset(name="toy", files=files, label_names=("a", "b"), data_dir=tmp_path)
    assert ds.x_train.shape == (20, 1, 5, 5)
    assert ds.input_shape == (1, 5, 5)
    unit = arrays["train-images"] / 255.0
    assert ds.preprocessing["mean"][0] == pytest.approx(unit.mean())
    np.testing.assert_allclose(
        ds.x_train[:, 0], (unit - unit.mean()) / unit.std(), rtol=1e-5, atol=1e-5
    )


def test_digits_is_embedded_and_split_75_25_by_seed() -> None:
    a = load_dataset("digits", seed=1)
    b = load_dataset("digits", seed=1)
    c = load_dataset("digits", seed=2)
    assert a.x_train.shape == (1347, 1, 8, 8)
    assert a.x_test.shape == (450, 1, 8, 8)
    assert a.preprocessing["to_unit"] == {"kind": "divide", "divisor": 16.0}
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.y_train, c.y_train)
    # Stratified: every class keeps about a quarter of its samples for the test set.
    total = np.bincount(a.y_train) + np.bincount(a.y_test)
    np.testing.assert_allclose(np.bincount(a.y_test) / total, 0.25, atol=0.01)
    # No sample is in both splits: the split partitions the 1797 images.
    rows = {r.tobytes() for r in np.concatenate([a.x_train, a.x_test]).reshape(1797, -1)}
    assert len(rows) > 1700  # digits has a few duplicate images, never many
    assert a.num_train + a.num_test == 1797
