"""Data directory resolution, missing-file errors and checksum verification."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from tinylarge.data import paths
from tinylarge.data.dataset import load_dataset
from tinylarge.data.images import FASHION_MNIST_FILES, MNIST_FILES
from tinylarge.data.paths import (
    ChecksumMismatchError,
    DataFile,
    candidate_dirs,
    data_roots,
    features_cache_dir,
    file_digest,
    find_file,
    verify_file,
)
from tinylarge.errors import DataFileMissingError, TinylargeError


def _spec(payload: bytes = b"", **kw: str) -> DataFile:
    digests = (f"sha256:{hashlib.sha256(payload).hexdigest()}",) if payload else ()
    return DataFile(
        dataset=kw.get("dataset", "toy"),
        filename=kw.get("filename", "toy.bin"),
        url="https://example.org/toy.bin",
        digests=digests,
    )


def _put(path: Path, payload: bytes = b"toy") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


def test_env_holds_several_roots_searched_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv("TINYLARGE_DATA", f"{a}{os.pathsep}{b}")
    assert data_roots() == [a, b]
    in_b = _put(b / "toy" / "toy.bin")
    assert find_file(_spec())[0] == in_b
    in_a = _put(a / "toy.bin")  # directly in the first root beats a later root
    assert find_file(_spec())[0] == in_a


def test_dataset_subfolder_beats_the_root_itself(tmp_path: Path) -> None:
    _put(tmp_path / "toy.bin")
    sub = _put(tmp_path / "toy" / "toy.bin")
    assert candidate_dirs("toy", tmp_path) == [tmp_path / "toy", tmp_path]
    assert find_file(_spec(), data_dir=tmp_path)[0] == sub


def test_default_root_is_the_user_cache_then_system_dirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TINYLARGE_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    system = tmp_path / "usr-share-datasets"
    monkeypatch.setattr(paths, "SYSTEM_DATA_DIRS", (system,))
    assert data_roots() == [tmp_path / "home" / ".cache" / "tinylarge", system]
    in_system = _put(system / "toy" / "toy.bin")
    assert find_file(_spec())[0] == in_system
    in_home = _put(tmp_path / "home" / ".cache" / "tinylarge" / "toy.bin")
    assert find_file(_spec())[0] == in_home


def test_system_dirs_are_searched_after_an_explicit_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = tmp_path / "system"
    monkeypatch.setattr(paths, "SYSTEM_DATA_DIRS", (system,))
    assert data_roots(tmp_path / "mine") == [tmp_path / "mine", system]


def test_features_cache_dir_from_env_or_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TINYLARGE_CACHE", str(tmp_path / "c"))
    assert features_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("TINYLARGE_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert features_cache_dir() == tmp_path / ".cache" / "tinylarge" / "features"


def test_missing_mnist_is_one_line_with_file_dirs_and_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # two data roots without MNIST (the shared folder has it, so it is not used here)
    first, second = tmp_path / "a", tmp_path / "b"
    _put(first / "fashion-mnist" / "unrelated.bin")
    second.mkdir()
    monkeypatch.setenv("TINYLARGE_DATA", f"{first}{os.pathsep}{second}")
    with pytest.raises(DataFileMissingError) as info:
        load_dataset("mnist")
    message = str(info.value)
    assert "\n" not in message
    assert "train-images-idx3-ubyte.gz" in message
    # every root, its dataset subfolder first, in the order they are searched
    searched = ", ".join(str(d) for d in (first / "mnist", first, second / "mnist", second))
    assert f"searched {searched};" in message
    assert "https://yann.lecun.com/exdb/mnist/train-images-idx3-ubyte.gz" in message
    assert "set TINYLARGE_DATA" in message
    assert isinstance(info.value, TinylargeError)


def test_a_missing_file_in_an_explicit_data_dir_says_check_data_dir(tmp_path: Path) -> None:
    with pytest.raises(DataFileMissingError, match=r"\(check data_dir\)$"):
        load_dataset("mnist", data_dir=tmp_path)


def test_missing_alternatives_name_every_file(tmp_path: Path) -> None:
    specs = [_spec(filename="full.txt"), _spec(filename="part.txt")]
    with pytest.raises(DataFileMissingError, match=r"full\.txt or part\.txt not found"):
        find_file(specs, data_dir=tmp_path)
    part = _put(tmp_path / "part.txt")
    assert find_file(specs, data_dir=tmp_path) == (part, specs[1])
    full = _put(tmp_path / "toy" / "full.txt")
    assert find_file(specs, data_dir=tmp_path) == (full, specs[0])


def test_checksum_mismatch_names_file_expected_and_actual(tmp_path: Path) -> None:
    spec = FASHION_MNIST_FILES["train-labels"]
    bad = _put(tmp_path / "fashion-mnist" / spec.filename, b"not the labels")
    with pytest.raises(ChecksumMismatchError) as info:
        find_file(spec, data_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert str(bad) in message
    assert "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845" in message
    assert hashlib.sha256(b"not the labels").hexdigest() in message
    assert isinstance(info.value, TinylargeError)


def test_loader_rejects_a_damaged_copy(tmp_path: Path, shared_dir: Path) -> None:
    target = tmp_path / "fashion-mnist"
    target.mkdir()
    for spec in FASHION_MNIST_FILES.values():
        (target / spec.filename).symlink_to(shared_dir / "fashion-mnist" / spec.filename)
    (target / "t10k-labels-idx1-ubyte.gz").unlink()
    damaged = bytearray((shared_dir / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes())
    damaged[-1] ^= 0xFF
    (target / "t10k-labels-idx1-ubyte.gz").write_bytes(bytes(damaged))
    with pytest.raises(ChecksumMismatchError, match=r"t10k-labels-idx1-ubyte\.gz"):
        load_dataset("fashion-mnist", data_dir=tmp_path)


def test_publisher_md5_is_accepted_too(shared_dir: Path) -> None:
    # The shared label files are the publisher's own: their md5 is the published one.
    spec = FASHION_MNIST_FILES["train-labels"]
    md5_only = DataFile(
        dataset=spec.dataset,
        filename=spec.filename,
        url=spec.url,
        digests=tuple(d for d in spec.digests if d.startswith("md5:")),
    )
    verify_file(shared_dir / "fashion-mnist" / spec.filename, md5_only)


def test_digest_is_computed_once_per_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _put(tmp_path / "once.bin", b"payload")
    calls: list[str] = []
    real_new = hashlib.new

    def counting_new(name: str, *args: object, **kwargs: object) -> hashlib._Hash:
        calls.append(name)
        return real_new(name)

    monkeypatch.setattr(paths.hashlib, "new", counting_new)
    spec = _spec(b"payload", filename="once.bin")
    for _ in range(3):
        verify_file(path, spec)
    assert calls == ["sha256"]
    assert file_digest(path) == hashlib.sha256(b"payload").hexdigest()
    assert calls == ["sha256"]


def test_a_rewritten_file_is_verified_again(tmp_path: Path) -> None:
    path = _put(tmp_path / "again.bin", b"payload")
    verify_file(path, _spec(b"payload"))
    path.write_bytes(b"payload, edited")
    with pytest.raises(ChecksumMismatchError):
        verify_file(path, _spec(b"payload"))


def test_bad_digest_spec_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="bad digest"):
        DataFile(dataset="x", filename="x", url="u", digests=("crc32:00",))


def test_mnist_specs_carry_published_digests() -> None:
    for spec in MNIST_FILES.values():
        assert {d.split(":")[0] for d in spec.digests} == {"sha256", "md5"}


def test_copies_of_shared_files_resolve_without_the_subfolder(
    tmp_path: Path, shared_dir: Path
) -> None:
    spec = FASHION_MNIST_FILES["t10k-labels"]
    shutil.copy(shared_dir / "fashion-mnist" / spec.filename, tmp_path / spec.filename)
    path, _ = find_file(FASHION_MNIST_FILES["t10k-labels"], data_dir=tmp_path)
    assert path == tmp_path / "t10k-labels-idx1-ubyte.gz"
