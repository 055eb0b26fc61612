"""Validate/fix: layers an MCU int8 runtime cannot run are named, and replaced where possible."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tinylarge.compress.validate import RULES, fix, validate
from tinylarge.models.zoo import MODELS, build_model


@pytest.mark.parametrize("name", [n for n in MODELS.names() if MODELS[n].tier == "tiny"])
def test_tiny_zoo_models_are_clean(name: str) -> None:
    shape = MODELS[name].default_input_shape
    model = build_model(name, input_shape=shape, num_classes=4)
    assert validate(model, input_shape=shape) == []


def test_unsupported_layers_are_named_and_fixed() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.GELU(),
        nn.Dropout(0.2),
        nn.AdaptiveAvgPool2d((2, 2)),
        nn.Flatten(),
        nn.LayerNorm(16),
        nn.Linear(16, 3),
    )
    issues = validate(model, input_shape=(1, 8, 8))
    assert [(i.layer, i.kind) for i in issues] == [
        ("1", "GELU"),
        ("2", "Dropout"),
        ("3", "AdaptiveAvgPool2d"),
        ("5", "LayerNorm"),
    ]
    assert issues[3].fix is None
    fixed_model, fixed, remaining = fix(model, input_shape=(1, 8, 8))
    assert [i.kind for i in fixed] == ["GELU", "Dropout", "AdaptiveAvgPool2d"]
    assert [i.kind for i in remaining] == ["LayerNorm"]
    assert isinstance(fixed_model[1], nn.ReLU)
    assert isinstance(fixed_model[2], nn.Identity)
    assert isinstance(fixed_model[3], nn.AvgPool2d)
    assert isinstance(model[1], nn.GELU)  # the original is untouched
    assert [i.kind for i in validate(fixed_model, input_shape=(1, 8, 8))] == ["LayerNorm"]


def test_exact_fixes_keep_the_function() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.Dropout(0.5), nn.AdaptiveAvgPool2d(2)).eval()
    fixed_model, fixed, _ = fix(model, input_shape=(1, 10, 10))
    assert all(i.exact for i in fixed)
    x = torch.randn(2, 1, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(fixed_model(x), model(x))


def test_an_adaptive_pool_without_an_integer_ratio_stays_reported() -> None:
    model = nn.Sequential(nn.AdaptiveAvgPool2d(3))
    _, fixed, remaining = fix(model, input_shape=(1, 10, 10))
    assert fixed == []
    assert remaining[0].kind == "AdaptiveAvgPool2d"


def test_unknown_layers_are_reported() -> None:
    issues = validate(nn.Sequential(nn.Bilinear(2, 2, 2)))
    assert issues[0].kind == "Bilinear"
    assert issues[0].fix is None
    assert "GELU" in RULES
