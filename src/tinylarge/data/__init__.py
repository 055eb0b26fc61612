"""Datasets and federated partitions.

Loaders read the publishers' formats from a data directory (see
:mod:`tinylarge.data.paths`), verify checksums, and return normalized arrays
with their input contract (:mod:`tinylarge.data.contract`):

>>> from tinylarge.data import load_dataset, partition
>>> ds = load_dataset("digits", subset=100, seed=0)
>>> ds.input_shape, ds.num_classes, ds.num_train, ds.num_test
((1, 8, 8), 10, 100, 20)
>>> parts = partition("dirichlet", ds.y_train, num_clients=4, seed=0, alpha=0.5, min_size=5)
>>> sum(len(p) for p in parts)
100
"""

from tinylarge.data import fsdd, images, nslkdd, text  # noqa: F401  (register the loaders)
from tinylarge.data.contract import denormalize, normalize
from tinylarge.data.dataset import (
    DATASETS,
    TEXT_DATASETS,
    Dataset,
    TextDataset,
    dataset_names,
    load_dataset,
    load_text_dataset,
    text_dataset_names,
)
from tinylarge.data.fsdd import MfccParams, load_fsdd_dataset
from tinylarge.data.idx import read_idx, write_idx
from tinylarge.data.partition import PARTITIONERS, partition, partitioner_names
from tinylarge.data.paths import (
    ChecksumMismatchError,
    DataFile,
    data_roots,
    features_cache_dir,
    find_file,
)

__all__ = [
    "DATASETS",
    "PARTITIONERS",
    "TEXT_DATASETS",
    "ChecksumMismatchError",
    "DataFile",
    "Dataset",
    "MfccParams",
    "TextDataset",
    "data_roots",
    "dataset_names",
    "denormalize",
    "features_cache_dir",
    "find_file",
    "load_dataset",
    "load_fsdd_dataset",
    "load_text_dataset",
    "normalize",
    "partition",
    "partitioner_names",
    "read_idx",
    "text_dataset_names",
    "write_idx",
]
