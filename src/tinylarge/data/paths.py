"""Where dataset files live, and whether they are the files we expect.

Search order for a dataset file (first hit wins):

1. the ``data_dir`` argument if given, otherwise every entry of the
   ``TINYLARGE_DATA`` environment variable (several paths joined by
   :data:`os.pathsep`), otherwise ``~/.cache/tinylarge``;
2. Debian's ``/usr/share/datasets`` (where ``apt install dataset-fashion-mnist``
   puts its files).

In each of these roots a file is looked for first in a subfolder named after
the dataset (``<root>/fashion-mnist/train-images-idx3-ubyte.gz``, the layout of
the shared data folder and of Debian) and then directly in the root.

Files are verified against the digests their publishers (or our SOURCE.md
notes) give, once per file per process: the digest is cached under the file's
path, size and modification time.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tinylarge.errors import DataFileMissingError, TinylargeError

#: Environment variable holding data roots, separated by :data:`os.pathsep`.
DATA_ENV = "TINYLARGE_DATA"
#: Environment variable for the directory of computed features (e.g. FSDD MFCCs).
CACHE_ENV = "TINYLARGE_CACHE"
#: Directories every search ends with (Debian's dataset packages).
SYSTEM_DATA_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets"),)

_HASH_ALGORITHMS = ("sha256", "md5")
_CHUNK_BYTES = 1 << 20


class ChecksumMismatchError(TinylargeError):
    """A data file whose digest is not one of the published ones."""


@dataclass(frozen=True, kw_only=True)
class DataFile:
    """One published file of a dataset.

    ``digests`` lists accepted digests as ``"sha256:<hex>"`` or ``"md5:<hex>"``
    (several when distributors repackage a file, e.g. Debian recompressed the
    Fashion-MNIST images); empty means the file is not verified.
    """

    dataset: str
    filename: str
    url: str
    digests: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for digest in self.digests:
            algorithm, _, value = digest.partition(":")
            if algorithm not in _HASH_ALGORITHMS or not value:
                raise ValueError(f"bad digest {digest!r} for {self.filename}")


def default_data_dir() -> Path:
    """``~/.cache/tinylarge``: where downloaded dataset files go by default."""
    return Path.home() / ".cache" / "tinylarge"


def data_roots(data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The data roots searched, in order (see the module docstring)."""
    if data_dir is not None:
        roots = [Path(data_dir).expanduser()]
    else:
        env = os.environ.get(DATA_ENV, "")
        roots = [Path(p).expanduser() for p in env.split(os.pathsep) if p.strip()]
        if not roots:
            roots = [default_data_dir()]
    roots.extend(d for d in SYSTEM_DATA_DIRS if d not in roots)
    return roots


def candidate_dirs(dataset: str, data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Every directory a file of ``dataset`` is looked for in, in order."""
    dirs: list[Path] = []
    for root in data_roots(data_dir):
        dirs.extend((root / dataset, root))
    return dirs


def features_cache_dir() -> Path:
    """Directory for computed features: ``$TINYLARGE_CACHE`` or ``~/.cache/tinylarge/features``."""
    env = os.environ.get(CACHE_ENV, "").strip()
    return Path(env).expanduser() if env else default_data_dir() / "features"


def find_file(
    spec: DataFile | Sequence[DataFile],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    verify: bool = True,
) -> tuple[Path, DataFile]:
    """Locate a data file (or the first present of alternatives) and verify it.

    With alternatives, an earlier one anywhere beats a later one (the full
    NSL-KDD training file beats the 20% subset). Returns the path and the
    alternative found. Raises :class:`DataFileMissingError` (one line: the
    file, the searched directories and where it is published) or
    :class:`ChecksumMismatchError`.
    """
    specs = [spec] if isinstance(spec, DataFile) else list(spec)
    if not specs:
        raise ValueError("find_file needs at least one DataFile")
    for alternative in specs:
        for directory in candidate_dirs(alternative.dataset, data_dir):
            path = directory / alternative.filename
            if path.is_file():
                if verify:
                    verify_file(path, alternative)
                return path, alternative
    raise _missing(specs, data_dir)


def _missing(specs: Sequence[DataFile], data_dir: str | os.PathLike[str] | None) -> Exception:
    first = specs[0]
    names = " or ".join(s.filename for s in specs)
    urls = " or ".join(dict.fromkeys(s.url for s in specs))
    searched = ", ".join(str(d) for d in candidate_dirs(first.dataset, data_dir))
    how = f"set {DATA_ENV} or pass data_dir" if data_dir is None else "check data_dir"
    return DataFileMissingError(
        f"{first.dataset}: data file {names} not found; searched {searched}; "
        f"it is published at {urls} ({how})"
    )


_digest_cache: dict[tuple[str, int, int, str], str] = {}
_digest_lock = threading.Lock()


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, computed once per process per (path, size, mtime)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, algorithm)
    with _digest_lock:
        cached = _digest_cache.get(key)
    if cached is not None:
        return cached
    digest = hashlib.new(algorithm)
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            digest.update(chunk)
    value = digest.hexdigest()
    with _digest_lock:
        _digest_cache[key] = value
    return value


def verify_file(path: Path, spec: DataFile) -> None:
    """Raise :class:`ChecksumMismatchError` unless ``path`` matches one of ``spec.digests``."""
    if not spec.digests:
        return
    actual: dict[str, str] = {}
    for expected in spec.digests:
        algorithm, _, value = expected.partition(":")
        if algorithm not in actual:
            actual[algorithm] = file_digest(path, algorithm)
        if actual[algorithm] == value.lower():
            return
    wanted = " or ".join(d.replace(":", " ", 1) for d in spec.digests)
    got = ", ".join(f"{a} {v}" for a, v in actual.items())
    raise ChecksumMismatchError(
        f"checksum mismatch for {path}: expected {wanted}, got {got}; the file is damaged "
        f"or another version, fetch it again from {spec.url}"
    )
