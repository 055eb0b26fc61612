"""Fixtures for the compression tests: digits and small models trained once per session."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from tinylarge.compress.train import TrainConfig, train_model
from tinylarge.data import Dataset, load_dataset
from tinylarge.models.zoo import build_model


@dataclass(frozen=True)
class Trained:
    dataset: Dataset
    model: nn.Module
    calibration: np.ndarray


def _train(name: str, seed: int, **options: object) -> Trained:
    ds = load_dataset("digits", seed=0)
    torch.manual_seed(seed)
    model = build_model(name, input_shape=ds.input_shape, num_classes=ds.num_classes, **options)
    train_model(
        model,
        ds.x_train,
        ds.y_train,
        config=TrainConfig(epochs=8, batch_size=32, lr=3e-3, seed=seed, schedule="cosine"),
    )
    return Trained(ds, model, ds.x_train[:256])


@pytest.fixture(scope="session")
def digits() -> Dataset:
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="session")
def trained_mlp() -> Trained:
    """An mlp with a 256-unit hidden layer on digits (about 97% test accuracy)."""
    return _train("mlp", 0, hidden=[256, 128])


@pytest.fixture(scope="session")
def trained_cnn() -> Trained:
    """cnn-tiny on the 8x8 digits."""
    return _train("cnn-tiny", 1, width=8)
