"""FSDD: the tar reader, the MFCC front end, the official split and the feature cache."""

from __future__ import annotations

import io
import json
import tarfile
import wave
from pathlib import Path

import numpy as np
import pytest

from tinylarge.data import Dataset, MfccParams, load_dataset, load_fsdd_dataset
from tinylarge.data import fsdd as fsdd_module
from tinylarge.data.fsdd import extract_recordings, fix_length, read_wav
from tinylarge.data.paths import ChecksumMismatchError
from tinylarge.errors import TinylargeError


@pytest.fixture(scope="module")
def fsdd(shared_dir: Path, feature_cache: Path) -> Dataset:
    # Computes all 3000 MFCCs into the session's cache (module fixtures run before
    # the autouse environment fixture, hence the explicit directories).
    return load_dataset("fsdd", data_dir=shared_dir, cache_dir=feature_cache)


def _wav(samples: np.ndarray, rate: int = 8000, channels: int = 1) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.astype("<i2").tobytes())
    return buffer.getvalue()


def _tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _tone(digit: int, n: int) -> np.ndarray:
    t = np.arange(n) / 8000
    return (8000 * np.sin(2 * np.pi * (300 + 100 * digit) * t)).astype(np.int16)


def test_official_split_and_speakers(fsdd: Dataset) -> None:
    assert fsdd.num_train == 2700
    assert fsdd.num_test == 300
    assert fsdd.input_shape == (1, 64, 13)
    assert fsdd.x_train.shape == (2700, 1, 64, 13)
    assert np.bincount(fsdd.y_train).tolist() == [270] * 10
    assert np.bincount(fsdd.y_test).tolist() == [30] * 10
    assert fsdd.group_names == ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
    assert fsdd.groups_train is not None
    assert np.bincount(fsdd.groups_train).tolist() == [450] * 6  # 45 train recordings x 10


def test_contract_is_per_coefficient(fsdd: Dataset) -> None:
    pre = fsdd.preprocessing
    assert pre["axis"] == 2
    assert len(pre["mean"]) == len(pre["std"]) == 13
    assert pre["to_unit"]["kind"] == "mfcc"
    assert pre["to_unit"]["num_samples"] == 8320
    np.testing.assert_allclose(fsdd.x_train.mean(axis=(0, 1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(fsdd.x_train.std(axis=(0, 1, 2)), 1, atol=1e-3)
    assert np.isfinite(fsdd.x_test).all()
    json.dumps(pre)


def test_second_load_comes_from_the_cache(
    fsdd: Dataset, monkeypatch: pytest.MonkeyPatch, feature_cache: Path
) -> None:
    assert len(list(feature_cache.glob("fsdd-mfcc-*.npz"))) == 1

    def no_extraction(*args: object, **kwargs: object) -> None:
        raise AssertionError("features should come from the cache")

    monkeypatch.setattr(fsdd_module, "extract_recordings", no_extraction)
    again = load_dataset("fsdd", subset=100, seed=0)
    full = load_dataset("fsdd")
    np.testing.assert_array_equal(full.x_train, fsdd.x_train)
    assert again.num_train == 100
    assert again.num_test == 20
    assert again.groups_train is not None
    assert again.groups_train.shape == (100,)


def test_extraction_is_deterministic_and_follows_the_params(tmp_path: Path) -> None:
    files = {
        f"recordings/{d}_{s}_{i}.wav": _wav(_tone(d, 2000 + 900 * i))
        for d in range(2)
        for s in ("amy", "bob")
        for i in range(7)
    }
    archive = _tar(tmp_path / "toy.tar.gz", files)
    params = MfccParams(n_mfcc=20, num_frames=32)
    a = extract_recordings(archive, params)
    b = extract_recordings(archive, params)
    np.testing.assert_array_equal(a.mfcc, b.mfcc)
    assert a.mfcc.shape == (28, 1, 32, 20)
    assert a.speakers == ("amy", "bob")
    assert sorted(a.index[a.digit == 0].tolist()) == sorted(list(range(7)) * 2)
    # Different tones give different coefficients.
    assert not np.allclose(a.mfcc[a.digit == 0][0], a.mfcc[a.digit == 1][0])


def test_a_foreign_archive_fails_the_checksum(tmp_path: Path) -> None:
    folder = tmp_path / "fsdd"
    folder.mkdir()
    _tar(folder / "fsdd-recordings.tar.gz", {"recordings/0_amy_0.wav": _wav(_tone(0, 800))})
    with pytest.raises(ChecksumMismatchError, match=r"fsdd-recordings\.tar\.gz"):
        load_fsdd_dataset(data_dir=tmp_path, cache_dir=tmp_path / "cache")


def test_wav_reader_and_length_fix() -> None:
    samples, rate = read_wav(_wav(np.array([0, 16384, -32768], np.int16)), source="x")
    assert rate == 8000
    assert samples.tolist() == [0.0, 0.5, -1.0]
    assert fix_length(samples, 5).tolist() == [0.0, 0.5, -1.0, 0.0, 0.0]
    assert fix_length(samples, 2).tolist() == [0.0, 0.5]
    with pytest.raises(TinylargeError, match="mono 16-bit"):
        read_wav(_wav(np.zeros(4, np.int16), channels=2), source="stereo")
    with pytest.raises(TinylargeError, match="not a readable WAV"):
        read_wav(b"RIFF....", source="junk")


def test_wrong_sample_rate_is_reported(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "x.tar.gz", {"0_amy_0.wav": _wav(_tone(0, 800), rate=16000)})
    with pytest.raises(TinylargeError, match="16000 Hz, expected 8000 Hz"):
        extract_recordings(archive, MfccParams())


def test_bad_params() -> None:
    with pytest.raises(TinylargeError, match="cannot exceed n_mels"):
        MfccParams(n_mfcc=50, n_mels=40)
    assert MfccParams().num_samples == 256 + 63 * 128
