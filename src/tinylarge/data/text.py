"""Text datasets for intent classification (raw strings; tokenization is the model's job).

- ``ibn-nlu``: natural-language network intents for intent-based networking
  (Saha et al., IEEE CONECCT 2022, doi:10.1109/CONECCT55679.2022.9865738),
  2270 sentences in 6 intents. Read from ``ibn_intents.jsonl`` or, when only
  the publisher's file is there, from ``nlu.md`` (Rasa markdown, entity markup
  replaced by its text). No official split: a stratified 80/20 train/test
  split is drawn from the seed.
- ``clinc150``: CLINC150 "full" (Larson et al., EMNLP 2019,
  https://www.aclweb.org/anthology/D19-1131) from ``data_full.json``: 150
  intents plus ``oos`` (out of scope, the last label), official
  train/val/test splits with the oos examples of each split added.
  ``groups_train`` is the domain of each intent (``domains.json``; ``oos`` is a
  group of its own), a natural non-IID partition.

Labels are indexed in sorted order of the intent names (``oos`` last).

Tiny (zoo) models read a text as hashed bag-of-words features, the hashing
trick of Weinberger et al. (ICML 2009, https://arxiv.org/abs/0902.2206):
:func:`hashed_bag_of_words`, :func:`text_features_dataset`.
"""

from __future__ import annotations

import itertools
import json
import re
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tinylarge.data.dataset import TEXT_DATASETS, Dataset, PathArg, TextDataset
from tinylarge.data.paths import DataFile, find_file
from tinylarge.data.splits import stratified_split
from tinylarge.errors import TinylargeError

#: Fraction of ibn-nlu held out for testing.
IBN_TEST_FRACTION = 0.2
_IBN_URL = "https://github.com/barun-saha/IBNs (nlu.md)"
IBN_FILES = (
    DataFile(
        dataset="ibn-nlu",
        filename="ibn_intents.jsonl",
        url=_IBN_URL,
        digests=("sha256:d75558352f866c524f174ccb9dda1636c79ee69e24290c6a7b9ba8ca6bd797e3",),
    ),
    DataFile(
        dataset="ibn-nlu",
        filename="nlu.md",
        url=_IBN_URL,
        digests=("sha256:3f3f7d645f3efe7fd1e5d27c91fc50e8a3b00b9e67be63cfaa873f07190d09c6",),
    ),
)
_CLINC_URL = "https://github.com/clinc/oos-eval/tree/master/data"
CLINC_FILE = DataFile(
    dataset="clinc150",
    filename="data_full.json",
    url=_CLINC_URL,
    digests=("sha256:36923c3705a59e08fe9c3883d8bc2dd966ef93e22cb78ac41171782a698d56e0",),
)
CLINC_DOMAINS_FILE = DataFile(
    dataset="clinc150",
    filename="domains.json",
    url=_CLINC_URL,
    digests=("sha256:b947b579d3b8e74b06f93b01083d8efaff2888b43a3e362533bd88a6e1211b3a",),
)
OOS = "oos"

_ENTITY = re.compile(r"\[([^\]]*)\]\([^)]*\)")


def parse_rasa_markdown(text: str) -> list[tuple[str, str]]:
    """``(sentence, intent)`` pairs of a Rasa 2.x markdown NLU file, entity markup removed."""
    pairs: list[tuple[str, str]] = []
    intent: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("## "):
            kind, _, name = stripped[3:].partition(":")
            intent = name.strip() if kind.strip() == "intent" else None
        elif intent is not None and stripped.startswith("- "):
            pairs.append((_ENTITY.sub(r"\1", stripped[2:]).strip(), intent))
    return pairs


def _read_ibn(path: Path) -> list[tuple[str, str]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".md":
        return parse_rasa_markdown(text)
    pairs: list[tuple[str, str]] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            pairs.append((str(record["text"]), str(record["intent"])))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise TinylargeError(
                f"{path}:{line_no}: not a {{text, intent}} object ({exc})"
            ) from None
    return pairs


@TEXT_DATASETS.register("ibn-nlu")
def load_ibn_nlu(*, data_dir: PathArg | None = None, seed: int = 0) -> TextDataset:
    """ibn-nlu: 6 network intents, stratified 80/20 split from ``seed``."""
    path, _ = find_file(IBN_FILES, data_dir=data_dir)
    pairs = _read_ibn(path)
    if not pairs:
        raise TinylargeError(f"{path} holds no examples")
    names = tuple(sorted({intent for _, intent in pairs}))
    labels = np.array([names.index(intent) for _, intent in pairs], dtype=np.int64)
    train, test = stratified_split(
        labels, test_fraction=IBN_TEST_FRACTION, rng=np.random.default_rng(seed)
    )
    return TextDataset(
        name="ibn-nlu",
        texts_train=tuple(pairs[i][0] for i in train),
        y_train=labels[train],
        texts_test=tuple(pairs[i][0] for i in test),
        y_test=labels[test],
        label_names=names,
    )


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TinylargeError(f"{path}: invalid JSON ({exc})") from None


@TEXT_DATASETS.register("clinc150")
def load_clinc150(*, data_dir: PathArg | None = None, seed: int = 0) -> TextDataset:
    """CLINC150 full: 151 classes (150 intents + ``oos``), official train/val/test."""
    del seed  # official split
    path, _ = find_file(CLINC_FILE, data_dir=data_dir)
    domains_path, _ = find_file(CLINC_DOMAINS_FILE, data_dir=data_dir)
    data = _load_json(path)
    domains: dict[str, list[str]] = _load_json(domains_path)
    try:
        splits = {
            split: [(str(t), str(y)) for t, y in data[split] + data[f"oos_{split}"]]
            for split in ("train", "val", "test")
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise TinylargeError(f"{path}: not the CLINC150 data_full layout ({exc})") from None
    intents = sorted({y for pairs in splits.values() for _, y in pairs} - {OOS})
    names = (*intents, OOS)
    index = {name: i for i, name in enumerate(names)}
    domain_names = (*sorted(domains), OOS)
    domain_of = {intent: d for d, members in domains.items() for intent in members}
    domain_of[OOS] = OOS

    def encode(split: str) -> tuple[tuple[str, ...], np.ndarray[Any, np.dtype[np.int64]]]:
        pairs = splits[split]
        return tuple(t for t, _ in pairs), np.array([index[y] for _, y in pairs], dtype=np.int64)

    texts_train, y_train = encode("train")
    texts_val, y_val = encode("val")
    texts_test, y_test = encode("test")
    try:
        groups = np.array(
            [domain_names.index(domain_of[y]) for _, y in splits["train"]], dtype=np.int64
        )
    except KeyError as exc:
        raise TinylargeError(f"{domains_path}: intent {exc} has no domain") from None
    return TextDataset(
        name="clinc150",
        texts_train=texts_train,
        y_train=y_train,
        texts_test=texts_test,
        y_test=y_test,
        texts_val=texts_val,
        y_val=y_val,
        label_names=names,
        groups_train=groups,
        group_names=domain_names,
    )


# -- the numeric view tiny models train on ----------------------------------------------------
#: Width of the hashed bag-of-words features of text datasets (tiny models' input).
TEXT_HASH_FEATURES = 512
_WORD = re.compile(r"[a-z0-9]+")


def hashed_bag_of_words(texts: Sequence[str], *, num_features: int) -> np.ndarray:
    """Hashed unigram + bigram counts, ``log1p``-scaled and L2-normalized, float32 ``(n, F)``.

    The bucket of a term is ``crc32(term) % num_features`` (stable across
    processes, unlike Python's ``hash``), so a microcontroller can compute the
    same features from the text.

    >>> x = hashed_bag_of_words(["open port 80", "open port 80"], num_features=64)
    >>> x.shape, bool((x[0] == x[1]).all()), round(float((x[0] ** 2).sum()), 5)
    ((2, 64), True, 1.0)
    """
    if num_features < 1:
        raise TinylargeError(f"num_features must be >= 1, got {num_features}")
    out = np.zeros((len(texts), num_features), dtype=np.float32)
    for row, text in enumerate(texts):
        words = _WORD.findall(text.lower())
        terms = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
        for term in terms:
            out[row, zlib.crc32(term.encode()) % num_features] += 1.0
    scaled: np.ndarray = np.log1p(out)
    norms = np.linalg.norm(scaled, axis=1, keepdims=True)
    scaled /= np.where(norms > 0, norms, 1.0)
    return scaled


def text_features_dataset(text: TextDataset, *, num_features: int = TEXT_HASH_FEATURES) -> Dataset:
    """The numeric view of a text dataset that tiny (zoo) models train on."""
    return Dataset(
        name=text.name,
        x_train=hashed_bag_of_words(text.texts_train, num_features=num_features),
        y_train=text.y_train,
        x_test=hashed_bag_of_words(text.texts_test, num_features=num_features),
        y_test=text.y_test,
        num_classes=text.num_classes,
        input_shape=(num_features,),
        label_names=text.label_names,
        preprocessing={"kind": "hashed-bow", "num_features": num_features, "ngrams": [1, 2]},
        groups_train=text.groups_train,
        group_names=text.group_names,
    )
