"""The data of a run: the numeric dataset every zoo model trains on, and a text task's texts."""

from __future__ import annotations

from tinylarge.data.dataset import (
    DATASETS,
    TEXT_DATASETS,
    Dataset,
    PathArg,
    TextDataset,
    load_dataset,
    load_text_dataset,
)
from tinylarge.data.text import text_features_dataset
from tinylarge.errors import UnknownNameError


def load_task_data(
    name: str, *, data_dir: PathArg | None = None, subset: int | None = None, seed: int = 0
) -> tuple[Dataset, TextDataset | None]:
    """``(dataset, texts)``: a text dataset's raw texts come with their hashed bag-of-words view
    (what tiny models read; schemes with their own tokenizer, ffm, read the texts), any other
    dataset with ``None``."""
    if name in TEXT_DATASETS:
        texts = load_text_dataset(name, data_dir=data_dir, subset=subset, seed=seed)
        return text_features_dataset(texts), texts
    if name in DATASETS:
        return load_dataset(name, data_dir=data_dir, subset=subset, seed=seed), None
    raise UnknownNameError("dataset", name, [*DATASETS.names(), *TEXT_DATASETS.names()])
