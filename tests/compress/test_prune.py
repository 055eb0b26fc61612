"""Magnitude and channel pruning: exact sparsity, smaller models, replayable selections."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.compress.conftest import Trained
from torch import nn

from tinylarge.compress.prune import (
    apply_masks,
    magnitude_masks,
    mask_hook,
    prune_channels,
    sparsity,
)
from tinylarge.compress.train import TrainConfig, accuracy, predict_logits, train_model
from tinylarge.errors import TinylargeError
from tinylarge.models.profiler import profile_model
from tinylarge.models.zoo import build_model


@pytest.mark.parametrize("amount", [0.0, 0.3, 0.75])
def test_magnitude_masks_remove_the_smallest_weights(trained_mlp: Trained, amount: float) -> None:
    model = build_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=[256, 128])
    model.load_state_dict(trained_mlp.model.state_dict())
    masks = magnitude_masks(model, amount=amount)
    apply_masks(model, masks)
    weights = [m.weight.detach().abs().numpy() for m in model.modules() if isinstance(m, nn.Linear)]
    total = sum(w.size for w in weights)
    assert sparsity(model) == pytest.approx(np.floor(amount * total) / total, abs=1e-9)
    if amount:
        kept = np.concatenate([w[w > 0] for w in weights])
        orig = np.concatenate(
            [m.weight.detach().abs().numpy().ravel() for m in trained_mlp.model.modules()
             if isinstance(m, nn.Linear)]
        )  # fmt: skip
        assert kept.min() >= np.sort(orig)[int(np.floor(amount * total)) - 1]


def test_masks_survive_fine_tuning(trained_mlp: Trained) -> None:
    ds = trained_mlp.dataset
    model = build_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=[256, 128])
    model.load_state_dict(trained_mlp.model.state_dict())
    masks = magnitude_masks(model, amount=0.8)
    apply_masks(model, masks)
    train_model(model, ds.x_train, ds.y_train, config=TrainConfig(epochs=2, seed=1),
                after_step=mask_hook(masks))  # fmt: skip
    total = sum(m.sum() + (~m).sum() for m in masks.values())
    assert sparsity(model) == pytest.approx(np.floor(0.8 * total) / total)
    assert accuracy(predict_logits(model, ds.x_test), ds.y_test) > 0.9


@pytest.mark.parametrize(
    ("name", "options", "shape"),
    [
        ("mlp", {"hidden": [32, 16]}, (1, 8, 8)),
        ("cnn-tiny", {"width": 8}, (1, 8, 8)),
        ("cnn1d", {"width": 8}, (20,)),
        ("ds-cnn", {"width": 16, "blocks": 2}, (1, 16, 10)),
        ("cnn-large", {"width": 8}, (1, 8, 8)),
    ],
)
def test_channel_pruning_makes_a_smaller_model(
    name: str, options: dict[str, object], shape: tuple[int, ...]
) -> None:
    torch.manual_seed(0)
    model = build_model(name, input_shape=shape, num_classes=5, **options).eval()
    x = torch.randn(3, *shape)
    same, keep0 = prune_channels(model, input_shape=shape, amount=0.0)
    with torch.no_grad():
        torch.testing.assert_close(same.eval()(x), model(x))  # amount 0: the same function
    small, keep = prune_channels(model, input_shape=shape, amount=0.5)
    assert [len(k) for k in keep] == [max(1, len(k) - len(k) // 2) for k in keep0]
    before = profile_model(model, input_shape=shape)
    after = profile_model(small, input_shape=shape)
    assert after.params < before.params
    assert after.macs < before.macs
    assert small.eval()(x).shape == (3, 5)
    replay, again = prune_channels(model, input_shape=shape, keep=keep)
    assert again == keep
    with torch.no_grad():
        torch.testing.assert_close(replay.eval()(x), small(x))


def test_channel_pruning_keeps_the_strongest_channels() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.diag(torch.tensor([0.1, 5.0, 0.2, 3.0])))
    _, keep = prune_channels(model, input_shape=(4,), amount=0.5)
    assert keep == [[1, 3]]


def test_unsupported_models_are_user_errors() -> None:
    resnet = build_model("resnet-small", input_shape=(3, 16, 16), num_classes=4, width=8)
    with pytest.raises(TinylargeError, match="BasicBlock"):
        prune_channels(resnet, input_shape=(3, 16, 16))
    with pytest.raises(TinylargeError, match="sequential"):
        prune_channels(resnet[3], input_shape=(8, 16, 16))
    odd = nn.Sequential(nn.Linear(4, 4), nn.LSTM(4, 4))
    with pytest.raises(TinylargeError, match="LSTM"):
        prune_channels(odd, input_shape=(4,))
    with pytest.raises(TinylargeError, match="amount"):
        magnitude_masks(odd, amount=1.0)
