"""Dataset containers, the loader registries and the ``load_*`` facades."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from tinylarge.data.splits import stratified_choice
from tinylarge.errors import TinylargeError
from tinylarge.registry import Registry

FloatArray = NDArray[np.float32]
IntArray = NDArray[np.int64]
PathArg = str | os.PathLike[str]


def _test_size(subset: int) -> int:
    return max(1, subset // 5)


def _check_labels(name: str, y: IntArray, num_classes: int, what: str) -> None:
    if y.dtype != np.int64 or y.ndim != 1:
        raise ValueError(f"{name}: {what} must be a 1-D int64 array, got {y.dtype} {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{name}: {what} outside 0..{num_classes - 1}")


@dataclass(frozen=True, kw_only=True, eq=False)
class Dataset:
    """A supervised dataset with normalized float32 features and int64 labels.

    ``x_*`` have shape ``(n, *input_shape)`` and already follow the input
    contract in ``preprocessing`` (see :mod:`tinylarge.data.contract`).
    ``groups_train`` is a natural partition of the training samples (e.g. the
    speaker of each FSDD recording), with ``group_names`` naming its values.
    """

    name: str
    x_train: FloatArray
    y_train: IntArray
    x_test: FloatArray
    y_test: IntArray
    num_classes: int
    input_shape: tuple[int, ...]
    label_names: tuple[str, ...]
    preprocessing: dict[str, Any] = field(default_factory=dict)
    groups_train: IntArray | None = None
    group_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for what, x, y in (
            ("train", self.x_train, self.y_train),
            ("test", self.x_test, self.y_test),
        ):
            if x.dtype != np.float32 or x.shape[1:] != self.input_shape:
                raise ValueError(
                    f"{self.name}: x_{what} must be float32 of shape (n, *{self.input_shape}), "
                    f"got {x.dtype} {x.shape}"
                )
            if x.shape[0] != y.shape[0]:
                raise ValueError(f"{self.name}: x_{what} and y_{what} lengths differ")
            _check_labels(self.name, y, self.num_classes, f"y_{what}")
        if len(self.label_names) != self.num_classes:
            raise ValueError(
                f"{self.name}: {len(self.label_names)} label names for {self.num_classes} classes"
            )
        if self.groups_train is not None and self.groups_train.shape != self.y_train.shape:
            raise ValueError(f"{self.name}: groups_train must have one entry per training sample")

    @property
    def num_train(self) -> int:
        return int(self.y_train.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.y_test.shape[0])

    def subset(self, n: int, *, seed: int = 0) -> Dataset:
        """At most ``n`` training and ``max(1, n // 5)`` test samples, stratified, from ``seed``.

        The preprocessing contract is unchanged (its statistics stay those of
        the full training split).
        """
        rng = np.random.default_rng(seed)
        train = stratified_choice(self.y_train, n, rng)
        test = stratified_choice(self.y_test, _test_size(n), rng)
        return dataclasses.replace(
            self,
            x_train=self.x_train[train],
            y_train=self.y_train[train],
            x_test=self.x_test[test],
            y_test=self.y_test[test],
            groups_train=None if self.groups_train is None else self.groups_train[train],
        )


@dataclass(frozen=True, kw_only=True, eq=False)
class TextDataset:
    """A text classification dataset: raw strings and int64 labels.

    ``texts_val``/``y_val`` exist only where the publisher defines a
    validation split (CLINC150). ``groups_train`` is a natural partition
    (CLINC150: the domain of each intent, ``oos`` its own group).
    """

    name: str
    texts_train: tuple[str, ...]
    y_train: IntArray
    texts_test: tuple[str, ...]
    y_test: IntArray
    label_names: tuple[str, ...]
    texts_val: tuple[str, ...] | None = None
    y_val: IntArray | None = None
    groups_train: IntArray | None = None
    group_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        splits = [("train", self.texts_train, self.y_train), ("test", self.texts_test, self.y_test)]
        if (self.texts_val is None) != (self.y_val is None):
            raise ValueError(f"{self.name}: texts_val and y_val go together")
        if self.texts_val is not None and self.y_val is not None:
            splits.append(("val", self.texts_val, self.y_val))
        for what, texts, y in splits:
            if len(texts) != y.shape[0]:
                raise ValueError(f"{self.name}: texts_{what} and y_{what} lengths differ")
            _check_labels(self.name, y, self.num_classes, f"y_{what}")

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def subset(self, n: int, *, seed: int = 0) -> TextDataset:
        """At most ``n`` training and ``max(1, n // 5)`` val/test samples, stratified."""
        rng = np.random.default_rng(seed)
        train = stratified_choice(self.y_train, n, rng)
        test = stratified_choice(self.y_test, _test_size(n), rng)
        val = None if self.y_val is None else stratified_choice(self.y_val, _test_size(n), rng)
        return dataclasses.replace(
            self,
            texts_train=tuple(self.texts_train[i] for i in train),
            y_train=self.y_train[train],
            texts_test=tuple(self.texts_test[i] for i in test),
            y_test=self.y_test[test],
            texts_val=None
            if val is None or self.texts_val is None
            else tuple(self.texts_val[i] for i in val),
            y_val=None if val is None or self.y_val is None else self.y_val[val],
            groups_train=None if self.groups_train is None else self.groups_train[train],
        )


class DatasetLoader(Protocol):
    """Loads the full dataset; ``seed`` only matters where there is no official split."""

    def __call__(
        self, *, data_dir: PathArg | None = None, cache_dir: PathArg | None = None, seed: int = 0
    ) -> Dataset: ...


class TextDatasetLoader(Protocol):
    """Loads the full text dataset; ``seed`` only matters where there is no official split."""

    def __call__(self, *, data_dir: PathArg | None = None, seed: int = 0) -> TextDataset: ...


#: Numeric datasets by name.
DATASETS: Registry[DatasetLoader] = Registry("dataset")
#: Text datasets by name.
TEXT_DATASETS: Registry[TextDatasetLoader] = Registry("text dataset")


def _check_subset(subset: int | None) -> None:
    if subset is not None and subset < 1:
        raise TinylargeError(f"subset must be a positive number of samples, got {subset}")


def load_dataset(
    name: str,
    *,
    data_dir: PathArg | None = None,
    subset: int | None = None,
    seed: int = 0,
    cache_dir: PathArg | None = None,
) -> Dataset:
    """Load a registered dataset by name, normalized per its input contract.

    Parameters:
        name: one of :func:`dataset_names`.
        data_dir: a data root searched before Debian's ``/usr/share/datasets``
            (default: ``$TINYLARGE_DATA`` or ``~/.cache/tinylarge``).
        subset: keep at most this many training and ``max(1, subset // 5)``
            test samples, stratified by label (for tests and quick runs).
        seed: seeds the split where the publisher has none, and the subset.
        cache_dir: where computed features are cached (default
            ``$TINYLARGE_CACHE`` or ``~/.cache/tinylarge/features``).
    """
    loader = DATASETS[name]
    _check_subset(subset)
    dataset = loader(data_dir=data_dir, cache_dir=cache_dir, seed=seed)
    return dataset if subset is None else dataset.subset(subset, seed=seed)


def load_text_dataset(
    name: str, *, data_dir: PathArg | None = None, subset: int | None = None, seed: int = 0
) -> TextDataset:
    """Load a registered text dataset by name (see :func:`load_dataset` for the arguments)."""
    loader = TEXT_DATASETS[name]
    _check_subset(subset)
    dataset = loader(data_dir=data_dir, seed=seed)
    return dataset if subset is None else dataset.subset(subset, seed=seed)


def dataset_names() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return DATASETS.names()


def text_dataset_names() -> list[str]:
    """Names accepted by :func:`load_text_dataset`."""
    return TEXT_DATASETS.names()
