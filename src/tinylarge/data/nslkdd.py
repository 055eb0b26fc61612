"""NSL-KDD network intrusion detection (Tavallaee et al., IEEE CISDA 2009).

Files: ``KDDTrain+.txt`` (125,973 records; preferred when present) or
``KDDTrain+_20Percent.txt`` (25,192 of them), and ``KDDTest+.txt`` (22,544);
43 comma-separated fields per line: 41 features, the label (``normal`` or an
attack name) and a difficulty level (dropped). Each file is checked against
its SHA-256; the publisher's files have LF line endings, some mirrors CRLF,
and both are accepted (the sums of both forms are listed in the shared data's
nsl-kdd/SOURCE.md).

Features (input shape ``(F,)``, F = 38 numeric + the one-hot categories seen
in the training file: 122 with the full training file (3 protocols, 70
services, 11 flags), 118 with the 20% file, which lacks four services):

- the 38 numeric columns, in file order. Heavy-tailed counts (bytes,
  durations, connection counts; :data:`LOG1P_COLUMNS`) go through
  ``log1p`` first; then every numeric column is min-max scaled with the
  training minimum and maximum and clipped to [0, 1] (test values outside the
  training range are clipped).
- one-hot blocks for ``protocol_type``, ``service`` and ``flag``, categories
  fitted on the training file in sorted order; a category first seen in the
  test file is all zeros.

Then the usual standardization per feature (:mod:`tinylarge.data.contract`).

Labels: ``nsl-kdd`` is binary (0 normal, 1 attack); ``nsl-kdd-5`` has five
classes (normal, DoS, Probe, R2L, U2R) by the attack-to-category map of
Dhanabal and Shantharajah, IJARCCE 4(6) 2015, Table 1, which covers the
attacks that appear only in the test file.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tinylarge.data.contract import fit_stats, standardize
from tinylarge.data.dataset import DATASETS, Dataset, PathArg
from tinylarge.data.paths import DataFile, find_file
from tinylarge.errors import TinylargeError

_URL = "https://www.unb.ca/cic/datasets/nsl.html"
TRAIN_FILES = (
    DataFile(
        dataset="nsl-kdd",
        filename="KDDTrain+.txt",
        url=_URL,
        digests=("sha256:1b86d2f957b33082081bba410fe129b475efebcc13c9014c3f447c8271aadf95",),
    ),
    DataFile(
        dataset="nsl-kdd",
        filename="KDDTrain+_20Percent.txt",
        url=_URL,
        digests=(
            "sha256:7ea86479faab5ca2190b7f18b4982fb058ce5bf2b46e0e1017d0d9ef90f9c16e",  # LF
            "sha256:5bf25df3ec1544eb3297b9a90b56736ba11e31f429df20e5aa0cfd49ca0fc896",  # CRLF
        ),
    ),
)
TEST_FILE = DataFile(
    dataset="nsl-kdd",
    filename="KDDTest+.txt",
    url=_URL,
    digests=(
        "sha256:fa46b0935342616aa83b7c2578db355b6a7aaabbc492248172c7a1e8b7ab8f84",  # LF
        "sha256:6ff4e09deee2c50c4877bbfe84f926dffafe3ef33d24f9dcfe0e425f4a8df5a2",  # CRLF
    ),
)

COLUMNS = (
    "duration", "protocol_type", "service", "flag", "src_bytes", "dst_bytes", "land",
    "wrong_fragment", "urgent", "hot", "num_failed_logins", "logged_in", "num_compromised",
    "root_shell", "su_attempted", "num_root", "num_file_creations", "num_shells",
    "num_access_files", "num_outbound_cmds", "is_host_login", "is_guest_login", "count",
    "srv_count", "serror_rate", "srv_serror_rate", "rerror_rate", "srv_rerror_rate",
    "same_srv_rate", "diff_srv_rate", "srv_diff_host_rate", "dst_host_count",
    "dst_host_srv_count", "dst_host_same_srv_rate", "dst_host_diff_srv_rate",
    "dst_host_same_src_port_rate", "dst_host_srv_diff_host_rate", "dst_host_serror_rate",
    "dst_host_srv_serror_rate", "dst_host_rerror_rate", "dst_host_srv_rerror_rate",
)  # fmt: skip
CATEGORICAL_COLUMNS = ("protocol_type", "service", "flag")
#: Heavy-tailed counts that are log1p-transformed before min-max scaling.
LOG1P_COLUMNS = (
    "duration", "src_bytes", "dst_bytes", "wrong_fragment", "urgent", "hot",
    "num_failed_logins", "num_compromised", "su_attempted", "num_root", "num_file_creations",
    "num_shells", "num_access_files", "num_outbound_cmds", "count", "srv_count",
    "dst_host_count", "dst_host_srv_count",
)  # fmt: skip
NUMERIC_COLUMNS = tuple(c for c in COLUMNS if c not in CATEGORICAL_COLUMNS)

CATEGORIES = ("normal", "DoS", "Probe", "R2L", "U2R")
#: Attack name -> category (Dhanabal and Shantharajah 2015), including test-only attacks.
ATTACK_CATEGORY: dict[str, str] = {
    **dict.fromkeys(
        ("back", "land", "neptune", "pod", "smurf", "teardrop", "apache2", "mailbomb",
         "processtable", "udpstorm", "worm"),
        "DoS",
    ),
    **dict.fromkeys(("ipsweep", "nmap", "portsweep", "satan", "mscan", "saint"), "Probe"),
    **dict.fromkeys(
        ("ftp_write", "guess_passwd", "imap", "multihop", "phf", "spy", "warezclient",
         "warezmaster", "xlock", "xsnoop", "snmpguess", "snmpgetattack", "httptunnel",
         "sendmail", "named"),
        "R2L",
    ),
    **dict.fromkeys(
        ("buffer_overflow", "loadmodule", "perl", "rootkit", "ps", "sqlattack", "xterm"), "U2R"
    ),
}  # fmt: skip


def read_records(path: Path) -> tuple[list[list[str]], list[str]]:
    """The 41 feature fields and the label of every line of an NSL-KDD file."""
    features: list[list[str]] = []
    labels: list[str] = []
    text = path.read_text(encoding="ascii", errors="strict")
    for line_no, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row:
            continue
        if len(row) not in (42, 43):
            raise TinylargeError(
                f"{path}:{line_no}: expected 43 comma-separated fields, found {len(row)}"
            )
        features.append(row[:41])
        labels.append(row[41].strip().rstrip("."))
    if not labels:
        raise TinylargeError(f"{path} holds no records")
    return features, labels


def category_of(label: str) -> int:
    """Index into :data:`CATEGORIES` of a label (``normal`` or an attack name)."""
    if label == "normal":
        return 0
    try:
        return CATEGORIES.index(ATTACK_CATEGORY[label])
    except KeyError:
        raise TinylargeError(
            f"nsl-kdd: unknown attack name {label!r}; known: {', '.join(sorted(ATTACK_CATEGORY))}"
        ) from None


def _numeric(rows: list[list[str]], path: Path) -> NDArray[np.float64]:
    idx = [COLUMNS.index(c) for c in NUMERIC_COLUMNS]
    try:
        return np.array([[float(r[i]) for i in idx] for r in rows], dtype=np.float64)
    except ValueError as exc:
        raise TinylargeError(f"{path}: non-numeric value in a numeric column ({exc})") from None


def _one_hot(values: list[str], categories: list[str]) -> NDArray[np.float64]:
    lookup = {c: i for i, c in enumerate(categories)}
    out = np.zeros((len(values), len(categories)))
    for row, value in enumerate(values):
        col = lookup.get(value)
        if col is not None:
            out[row, col] = 1.0
    return out


def fit_tabular(
    rows: list[list[str]], path: Path, *, numeric: NDArray[np.float64] | None = None
) -> dict[str, Any]:
    """Fit the scaler of the module docstring on training rows; returns the ``to_unit`` dict.

    ``numeric``: the rows' numeric columns if already parsed (:func:`_numeric`)."""
    numeric = _numeric(rows, path) if numeric is None else numeric
    log_mask = np.array([c in LOG1P_COLUMNS for c in NUMERIC_COLUMNS])
    if (numeric[:, log_mask] < 0).any():
        raise TinylargeError(f"{path}: negative value in a count column")
    transformed = np.where(log_mask, np.log1p(np.abs(numeric)), numeric)
    lo, hi = transformed.min(axis=0), transformed.max(axis=0)
    categorical = {c: sorted({r[COLUMNS.index(c)] for r in rows}) for c in CATEGORICAL_COLUMNS}
    return {
        "kind": "tabular",
        "numeric": [
            {"name": c, "log1p": bool(log), "min": float(a), "max": float(b)}
            for c, log, a, b in zip(NUMERIC_COLUMNS, log_mask, lo, hi, strict=True)
        ],
        "categorical": [{"name": c, "categories": categorical[c]} for c in CATEGORICAL_COLUMNS],
        "clip": [0.0, 1.0],
    }


def apply_tabular(
    rows: list[list[str]],
    to_unit: dict[str, Any],
    path: Path,
    *,
    numeric: NDArray[np.float64] | None = None,
) -> NDArray[Any]:
    """Unit features in [0, 1] of rows under a fitted ``to_unit`` dict."""
    numeric = _numeric(rows, path) if numeric is None else numeric
    spec = to_unit["numeric"]
    log_mask = np.array([s["log1p"] for s in spec])
    lo = np.array([s["min"] for s in spec])
    span = np.array([s["max"] - s["min"] for s in spec])
    transformed = np.where(log_mask, np.log1p(np.maximum(numeric, 0.0)), numeric)
    scaled = np.clip((transformed - lo) / np.where(span > 0, span, 1.0), 0.0, 1.0)
    blocks = [scaled]
    for cat in to_unit["categorical"]:
        col = COLUMNS.index(cat["name"])
        blocks.append(_one_hot([r[col] for r in rows], cat["categories"]))
    return np.concatenate(blocks, axis=1)


def feature_names(to_unit: dict[str, Any]) -> list[str]:
    """Names of the F unit features, e.g. ``src_bytes`` or ``service=http``."""
    names = [s["name"] for s in to_unit["numeric"]]
    for cat in to_unit["categorical"]:
        names.extend(f"{cat['name']}={value}" for value in cat["categories"])
    return names


def load_nsl_kdd_dataset(*, five_class: bool, data_dir: PathArg | None = None) -> Dataset:
    """NSL-KDD with binary (``five_class=False``) or five-class labels."""
    train_path, train_spec = find_file(TRAIN_FILES, data_dir=data_dir)
    test_path, _ = find_file(TEST_FILE, data_dir=data_dir)
    train_rows, train_labels = read_records(train_path)
    test_rows, test_labels = read_records(test_path)
    train_numeric = _numeric(train_rows, train_path)
    to_unit = fit_tabular(train_rows, train_path, numeric=train_numeric)
    x_train = apply_tabular(train_rows, to_unit, train_path, numeric=train_numeric)
    x_test = apply_tabular(test_rows, to_unit, test_path)
    mean, std = fit_stats(x_train, axis=0)

    def encode(labels: list[str]) -> NDArray[np.int64]:
        codes = np.array([category_of(label) for label in labels], dtype=np.int64)
        return codes if five_class else (codes > 0).astype(np.int64)

    names = CATEGORIES if five_class else ("normal", "attack")
    preprocessing: dict[str, Any] = {
        "raw": "the 41 NSL-KDD feature fields of a connection record, in file order",
        "to_unit": to_unit,
        "feature_names": feature_names(to_unit),
        "mean": mean,
        "std": std,
        "axis": 0,
        "stats_from": "full training split",
        "train_file": train_spec.filename,
    }
    return Dataset(
        name="nsl-kdd-5" if five_class else "nsl-kdd",
        x_train=standardize(x_train, mean=mean, std=std, axis=0),
        y_train=encode(train_labels),
        x_test=standardize(x_test, mean=mean, std=std, axis=0),
        y_test=encode(test_labels),
        num_classes=len(names),
        input_shape=(x_train.shape[1],),
        label_names=names,
        preprocessing=preprocessing,
    )


@DATASETS.register("nsl-kdd")
def load_nsl_kdd(
    *, data_dir: PathArg | None = None, cache_dir: PathArg | None = None, seed: int = 0
) -> Dataset:
    """NSL-KDD, binary labels: 0 normal, 1 attack."""
    del cache_dir, seed
    return load_nsl_kdd_dataset(five_class=False, data_dir=data_dir)


@DATASETS.register("nsl-kdd-5")
def load_nsl_kdd_5(
    *, data_dir: PathArg | None = None, cache_dir: PathArg | None = None, seed: int = 0
) -> Dataset:
    """NSL-KDD, five classes: normal, DoS, Probe, R2L, U2R."""
    del cache_dir, seed
    return load_nsl_kdd_dataset(five_class=True, data_dir=data_dir)
