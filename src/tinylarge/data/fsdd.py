"""Free Spoken Digit Dataset (FSDD): keyword spotting on spoken digits 0-9.

Source: github.com/Jakobovski/free-spoken-digit-dataset (CC BY-SA 4.0), read
straight from ``fsdd-recordings.tar.gz`` (the repository's ``recordings/``
folder: ``{digit}_{speaker}_{index}.wav``, mono 16-bit PCM at 8 kHz). The
customary split puts indexes 0-4 in the test set (300 recordings) and the
rest in the training set (2700). ``groups_train`` is the speaker (6 speakers,
sorted by name in ``group_names``): a natural one-client-per-speaker partition.

Features: the waveform is scaled to [-1, 1] (int16 / 32768), zero-padded or
cropped at the end to a fixed length, then turned into MFCCs with librosa
(power mel spectrogram, ``power_to_db`` per recording with ``top_db``, DCT-II
with orthonormal scaling); shape ``(1, num_frames, n_mfcc)``. Finally the
usual standardization per coefficient (:mod:`tinylarge.data.contract`).

The MFCCs of all 3000 recordings are computed once and cached in the
features cache (``$TINYLARGE_CACHE`` or ``~/.cache/tinylarge/features``)
under a hash of the archive digest and :class:`MfccParams`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
import warnings
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tinylarge.data.contract import fit_stats, standardize
from tinylarge.data.dataset import DATASETS, Dataset, PathArg
from tinylarge.data.images import DIGIT_LABELS
from tinylarge.data.paths import DataFile, features_cache_dir, file_digest, find_file
from tinylarge.errors import TinylargeError

ARCHIVE = DataFile(
    dataset="fsdd",
    filename="fsdd-recordings.tar.gz",
    url="https://github.com/Jakobovski/free-spoken-digit-dataset (pack its recordings/ folder)",
    digests=("sha256:203030e04a62a0a0032629dd55799ba2576da01b07be6b985d7e80b5afc4c95a",),
)
#: Recordings with an index below this are the test set (the dataset's convention).
TEST_INDEX_LIMIT = 5
_NAME = re.compile(r"(?:^|/)(\d)_([A-Za-z]+)_(\d+)\.wav$")
_FORMAT_VERSION = 1
_CHUNK = 500


@dataclass(frozen=True, kw_only=True)
class MfccParams:
    """MFCC front end. Defaults: 13 coefficients from 40 mel bands, 32 ms windows
    every 16 ms, 64 frames (1.04 s at 8 kHz)."""

    sample_rate_hz: int = 8000
    n_mfcc: int = 13
    n_mels: int = 40
    n_fft: int = 256
    hop_length: int = 128
    num_frames: int = 64
    top_db: float = 80.0

    def __post_init__(self) -> None:
        if min(self.n_mfcc, self.n_mels, self.n_fft, self.hop_length, self.num_frames) < 1:
            raise TinylargeError(f"MFCC parameters must be positive: {self}")
        if self.n_mfcc > self.n_mels:
            raise TinylargeError(f"n_mfcc ({self.n_mfcc}) cannot exceed n_mels ({self.n_mels})")

    @property
    def num_samples(self) -> int:
        """Waveform length giving exactly ``num_frames`` frames (no centring)."""
        return self.n_fft + (self.num_frames - 1) * self.hop_length


@dataclass(frozen=True, kw_only=True, eq=False)
class Recordings:
    """Raw MFCCs of the archive: ``mfcc`` is ``(n, 1, num_frames, n_mfcc)``."""

    mfcc: NDArray[np.float32]
    digit: NDArray[np.int64]
    speaker: NDArray[np.int64]
    index: NDArray[np.int64]
    speakers: tuple[str, ...]


def read_wav(data: bytes, *, source: str) -> tuple[NDArray[np.float32], int]:
    """Mono 16-bit PCM WAV bytes -> waveform in [-1, 1] and its sample rate in Hz."""
    try:
        with wave.open(io.BytesIO(data)) as wav:
            if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
                raise TinylargeError(f"{source}: expected mono 16-bit PCM")
            rate = wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise TinylargeError(f"{source}: not a readable WAV file ({exc})") from None
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float32) / np.float32(32768.0)
    return samples, rate


def fix_length(samples: NDArray[np.float32], length: int) -> NDArray[np.float32]:
    """Zero-pad or crop at the end to ``length`` samples."""
    out = np.zeros(length, dtype=np.float32)
    n = min(length, samples.shape[0])
    out[:n] = samples[:n]
    return out


def mfcc_batch(waves: NDArray[np.float32], params: MfccParams) -> NDArray[np.float32]:
    """MFCCs ``(n, num_frames, n_mfcc)`` of equal-length waveforms ``(n, num_samples)``."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=waves,
        sr=params.sample_rate_hz,
        n_fft=params.n_fft,
        hop_length=params.hop_length,
        window="hann",
        center=False,
        power=2.0,
        n_mels=params.n_mels,
    )
    log_mel = np.stack(
        [librosa.power_to_db(m, ref=1.0, amin=1e-10, top_db=params.top_db) for m in mel]
    )
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=params.n_mfcc, dct_type=2, norm="ortho")
    return np.ascontiguousarray(np.swapaxes(mfcc, 1, 2), dtype=np.float32)


def extract_recordings(archive: Path, params: MfccParams) -> Recordings:
    """Read every WAV of the archive and compute its MFCCs (deterministic)."""
    entries: list[tuple[int, str, int, NDArray[np.float32]]] = []
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                match = _NAME.search(member.name)
                if not member.isfile() or match is None:
                    continue
                stream = tar.extractfile(member)
                if stream is None:
                    continue
                samples, rate = read_wav(stream.read(), source=f"{archive}:{member.name}")
                if rate != params.sample_rate_hz:
                    raise TinylargeError(
                        f"{archive}:{member.name}: sample rate {rate} Hz, expected "
                        f"{params.sample_rate_hz} Hz"
                    )
                digit, speaker, index = int(match[1]), match[2], int(match[3])
                entries.append((digit, speaker, index, fix_length(samples, params.num_samples)))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise TinylargeError(f"{archive}: unreadable archive ({exc})") from None
    if not entries:
        raise TinylargeError(f"{archive} holds no recordings named digit_speaker_index.wav")
    entries.sort(key=lambda e: (e[1], e[0], e[2]))  # speaker, digit, index: archive order free
    speakers = tuple(sorted({e[1] for e in entries}))
    waves = np.stack([e[3] for e in entries])
    mfcc = np.concatenate(
        [mfcc_batch(waves[s : s + _CHUNK], params) for s in range(0, len(entries), _CHUNK)]
    )
    return Recordings(
        mfcc=mfcc[:, None],
        digit=np.array([e[0] for e in entries], dtype=np.int64),
        speaker=np.array([speakers.index(e[1]) for e in entries], dtype=np.int64),
        index=np.array([e[2] for e in entries], dtype=np.int64),
        speakers=speakers,
    )


def cache_key(archive_sha256: str, params: MfccParams) -> str:
    """Hash of everything the cached features depend on."""
    blob = json.dumps(
        {"v": _FORMAT_VERSION, "archive": archive_sha256, **dataclasses.asdict(params)},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _read_cache(path: Path) -> Recordings | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return Recordings(
                mfcc=z["mfcc"].astype(np.float32, copy=False),
                digit=z["digit"].astype(np.int64, copy=False),
                speaker=z["speaker"].astype(np.int64, copy=False),
                index=z["index"].astype(np.int64, copy=False),
                speakers=tuple(str(s) for s in z["speakers"]),
            )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError) as exc:
        warnings.warn(f"ignoring unreadable feature cache {path}: {exc}", stacklevel=3)
        return None


def _write_cache(path: Path, rec: Recordings) -> None:
    """Write atomically (temporary file, then rename); a read-only cache only warns."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".fsdd-", suffix=".tmp")
        with os.fdopen(fd, "wb") as stream:
            np.savez(
                stream,
                mfcc=rec.mfcc,
                digit=rec.digit,
                speaker=rec.speaker,
                index=rec.index,
                speakers=np.array(rec.speakers),
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        warnings.warn(f"could not cache FSDD features in {path.parent}: {exc}", stacklevel=3)
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def load_recordings(
    *,
    params: MfccParams = MfccParams(),
    data_dir: PathArg | None = None,
    cache_dir: PathArg | None = None,
) -> tuple[Recordings, Path]:
    """The MFCCs of every recording, from the features cache or computed (then cached)."""
    archive, _ = find_file(ARCHIVE, data_dir=data_dir)
    directory = Path(cache_dir).expanduser() if cache_dir is not None else features_cache_dir()
    path = directory / f"fsdd-mfcc-{cache_key(file_digest(archive), params)}.npz"
    recordings = _read_cache(path)
    if recordings is None:
        recordings = extract_recordings(archive, params)
        _write_cache(path, recordings)
    return recordings, path


def load_fsdd_dataset(
    *,
    params: MfccParams = MfccParams(),
    data_dir: PathArg | None = None,
    cache_dir: PathArg | None = None,
) -> Dataset:
    """FSDD as MFCC images ``(1, num_frames, n_mfcc)`` with speakers as ``groups_train``."""
    rec, _ = load_recordings(params=params, data_dir=data_dir, cache_dir=cache_dir)
    test = rec.index < TEST_INDEX_LIMIT
    train = ~test
    mean, std = fit_stats(rec.mfcc[train], axis=2)
    preprocessing: dict[str, Any] = {
        "raw": f"mono 16-bit PCM at {params.sample_rate_hz} Hz",
        "to_unit": {
            "kind": "mfcc",
            "divisor": 32768.0,
            "library": "librosa",
            "pad_or_crop": "zeros at the end / crop the end",
            **dataclasses.asdict(params),
            "num_samples": params.num_samples,
            "window": "hann",
            "center": False,
            "log": "power_to_db(ref=1.0, amin=1e-10, top_db) per recording",
            "dct": "type 2, ortho",
        },
        "mean": mean,
        "std": std,
        "axis": 2,
        "stats_from": "full training split",
    }
    return Dataset(
        name="fsdd",
        x_train=standardize(rec.mfcc[train], mean=mean, std=std, axis=2),
        y_train=rec.digit[train],
        x_test=standardize(rec.mfcc[test], mean=mean, std=std, axis=2),
        y_test=rec.digit[test],
        num_classes=10,
        input_shape=(1, params.num_frames, params.n_mfcc),
        label_names=DIGIT_LABELS,
        preprocessing=preprocessing,
        groups_train=rec.speaker[train],
        group_names=rec.speakers,
    )


@DATASETS.register("fsdd")
def load_fsdd(
    *, data_dir: PathArg | None = None, cache_dir: PathArg | None = None, seed: int = 0
) -> Dataset:
    """FSDD with the default :class:`MfccParams` (official split, so ``seed`` is unused)."""
    del seed
    return load_fsdd_dataset(data_dir=data_dir, cache_dir=cache_dir)
