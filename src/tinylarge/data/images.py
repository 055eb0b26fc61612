"""Image datasets: scikit-learn's digits (embedded), MNIST and Fashion-MNIST (IDX gzip).

Contract: pixels are divided by their maximum (255, or 16 for digits) into
[0, 1], then standardized with one mean and std per channel fitted on the full
training split. Shapes are channels first, ``(1, H, W)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from tinylarge.data.contract import fit_stats, standardize
from tinylarge.data.dataset import DATASETS, Dataset, PathArg
from tinylarge.data.idx import read_idx
from tinylarge.data.paths import DataFile, find_file
from tinylarge.data.splits import stratified_split
from tinylarge.errors import TinylargeError

#: Fraction of the digits set held out for testing (it has no official split).
DIGITS_TEST_FRACTION = 0.25

_MNIST_URL = "https://yann.lecun.com/exdb/mnist/"
_MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_IDX_PARTS = ("train-images", "train-labels", "t10k-images", "t10k-labels")
_IDX_NAMES = {
    "train-images": "train-images-idx3-ubyte.gz",
    "train-labels": "train-labels-idx1-ubyte.gz",
    "t10k-images": "t10k-images-idx3-ubyte.gz",
    "t10k-labels": "t10k-labels-idx1-ubyte.gz",
}

# MNIST: sha256 and md5 of the publisher's gzip files (as used by torchvision and TFDS).
_MNIST_DIGESTS: dict[str, tuple[str, ...]] = {
    "train-images": (
        "sha256:440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873",
    ),
    "train-labels": (
        "sha256:3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "md5:d53e105ee54ea40749a09fcbcd1e9432",
    ),
    "t10k-images": (
        "sha256:8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "md5:9fb629c4189551a2d022fa330f9573f3",
    ),
    "t10k-labels": (
        "sha256:f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        "md5:ec29112dd5afa0611ce80d1b7f02629c",
    ),
}
# Fashion-MNIST: sha256 from datasets/fashion-mnist/SOURCE.md (Debian recompressed the
# image files) and the publisher's md5 of its own gzip files (its README, torchvision).
_FASHION_DIGESTS: dict[str, tuple[str, ...]] = {
    "train-images": (
        "sha256:b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
        "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    ),
    "train-labels": (
        "sha256:a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "md5:25c81989df183df01b3e8a0aad5dffbe",
    ),
    "t10k-images": (
        "sha256:cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
        "md5:bef4ecab320f06d8554ea6380940ec79",
    ),
    "t10k-labels": (
        "sha256:67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        "md5:bb300cfdad3c16e7a12a480ee83cd310",
    ),
}
FASHION_LABELS = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DIGIT_LABELS = tuple(str(d) for d in range(10))


def image_dataset(
    *,
    name: str,
    raw_train: NDArray[Any],
    y_train: NDArray[Any],
    raw_test: NDArray[Any],
    y_test: NDArray[Any],
    divisor: float,
    label_names: tuple[str, ...],
    raw: str,
) -> Dataset:
    """Build a :class:`Dataset` from raw ``(n, H, W)`` pixel arrays (contract in the module doc)."""
    x_train = np.divide(raw_train[:, None], divisor, dtype=np.float32)
    x_test = np.divide(raw_test[:, None], divisor, dtype=np.float32)
    mean, std = fit_stats(x_train, axis=0)
    preprocessing: dict[str, Any] = {
        "raw": raw,
        "to_unit": {"kind": "divide", "divisor": float(divisor)},
        "mean": mean,
        "std": std,
        "axis": 0,
        "stats_from": "full training split",
    }
    return Dataset(
        name=name,
        x_train=standardize(x_train, mean=mean, std=std, axis=0, inplace=True),
        y_train=np.asarray(y_train, dtype=np.int64),
        x_test=standardize(x_test, mean=mean, std=std, axis=0, inplace=True),
        y_test=np.asarray(y_test, dtype=np.int64),
        num_classes=len(label_names),
        input_shape=tuple(int(d) for d in x_train.shape[1:]),
        label_names=label_names,
        preprocessing=preprocessing,
    )


def idx_files(
    dataset: str, *, url: str, digests: dict[str, tuple[str, ...]], mirror: str | None = None
) -> dict[str, DataFile]:
    """The four IDX gzip files of an MNIST-style dataset."""

    def where(name: str) -> str:
        return url + name if mirror is None else f"{url}{name} (mirror {mirror}{name})"

    return {
        part: DataFile(
            dataset=dataset,
            filename=_IDX_NAMES[part],
            url=where(_IDX_NAMES[part]),
            digests=digests[part],
        )
        for part in _IDX_PARTS
    }


MNIST_FILES = idx_files("mnist", url=_MNIST_URL, digests=_MNIST_DIGESTS, mirror=_MNIST_MIRROR)
FASHION_MNIST_FILES = idx_files("fashion-mnist", url=_FASHION_URL, digests=_FASHION_DIGESTS)


def load_idx_dataset(
    *,
    name: str,
    files: dict[str, DataFile],
    label_names: tuple[str, ...],
    data_dir: PathArg | None = None,
) -> Dataset:
    """Load an MNIST-style dataset (28x28 uint8 images) from its four IDX gzip files."""
    arrays = {part: read_idx(find_file(spec, data_dir=data_dir)[0]) for part, spec in files.items()}
    for split in ("train", "t10k"):
        images, labels = arrays[f"{split}-images"], arrays[f"{split}-labels"]
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise TinylargeError(
                f"{name}: {split} images {images.shape} and labels {labels.shape} do not match"
            )
    return image_dataset(
        name=name,
        raw_train=arrays["train-images"],
        y_train=arrays["train-labels"],
        raw_test=arrays["t10k-images"],
        y_test=arrays["t10k-labels"],
        divisor=255.0,
        label_names=label_names,
        raw="uint8 grayscale pixels 0..255, shape (28, 28)",
    )


@DATASETS.register("mnist")
def load_mnist(
    *, data_dir: PathArg | None = None, cache_dir: PathArg | None = None, seed: int = 0
) -> Dataset:
    """MNIST handwritten digits (LeCun et al. 1998): 60000 + 10000 images, (1, 28, 28)."""
    del cache_dir, seed  # official split, nothing computed
    return load_idx_dataset(
        name="mnist", files=MNIST_FILES, label_names=DIGIT_LABELS, data_dir=data_dir
    )


@DATASETS.register("fashion-mnist")
def load_fashion_mnist(
    *, data_dir: PathArg | None = None, cache_dir: PathArg | None = None, seed: int = 0
) -> Dataset:
    """Fashion-MNIST (Xiao et al. 2017, arXiv:1708.07747): 60000 + 10000 images, (1, 28, 28)."""
    del cache_dir, seed
    return load_idx_dataset(
        name="fashion-mnist",
        files=FASHION_MNIST_FILES,
        label_names=FASHION_LABELS,
        data_dir=data_dir,
    )


@DATASETS.register("digits")
def load_digits(
    *, data_dir: PathArg | None = None, cache_dir: PathArg | None = None, seed: int = 0
) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1797 images, no files needed), (1, 8, 8).

    There is no official split: a stratified 75/25 train/test split is drawn
    from ``seed``. Pixels are 0..16.
    """
    del data_dir, cache_dir
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = np.asarray(bunch.images, dtype=np.float64)
    labels = np.asarray(bunch.target, dtype=np.int64)
    train, test = stratified_split(
        labels, test_fraction=DIGITS_TEST_FRACTION, rng=np.random.default_rng(seed)
    )
    return image_dataset(
        name="digits",
        raw_train=images[train],
        y_train=labels[train],
        raw_test=images[test],
        y_test=labels[test],
        divisor=16.0,
        label_names=DIGIT_LABELS,
        raw="integer pixel intensities 0..16, shape (8, 8)",
    )
