"""Model zoo: every model builds, runs on several shapes and rejects bad ones."""

from __future__ import annotations

import pytest
import torch

from tinylarge.errors import TinylargeError, UnknownNameError
from tinylarge.models.profiler import profile_model
from tinylarge.models.zoo import MODELS, build_model, model_names

SHAPES: dict[str, list[tuple[int, ...]]] = {
    "mlp": [(64,), (1, 8, 8), (1, 28, 28)],
    "cnn-tiny": [(1, 8, 8), (1, 28, 28), (3, 32, 32)],
    "ds-cnn": [(1, 49, 10), (1, 32, 13), (1, 8, 4)],
    "cnn1d": [(41,), (122,), (3, 128)],
    "cnn-large": [(1, 8, 8), (1, 28, 28), (3, 32, 32)],
    "cnn-mcmahan": [(1, 28, 28), (1, 8, 8), (3, 32, 32)],
    "resnet-small": [(1, 8, 8), (1, 28, 28), (3, 32, 32)],
}


def test_registry_lists_all_models_with_metadata() -> None:
    assert model_names() == sorted(SHAPES)
    tiers = {name: spec.tier for name, spec in MODELS.items()}
    assert tiers == {
        "cnn-large": "large",
        "cnn-mcmahan": "tiny",
        "cnn-tiny": "tiny",
        "cnn1d": "tiny",
        "ds-cnn": "tiny",
        "mlp": "tiny",
        "resnet-small": "large",
    }
    for spec in (MODELS[n] for n in model_names()):
        assert spec.description
        assert spec.default_input_shape in SHAPES[spec.name]


@pytest.mark.parametrize(
    ("name", "shape"), [(n, s) for n, shapes in SHAPES.items() for s in shapes]
)
def test_models_run_on_their_shapes(name: str, shape: tuple[int, ...]) -> None:
    model = build_model(name, input_shape=shape, num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.randn(3, *shape))
    assert out.shape == (3, 7)


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("cnn-tiny", (28, 28)),
        ("cnn-tiny", (1, 3, 3)),
        ("ds-cnn", (49, 10)),
        ("cnn1d", (1, 2, 3, 4)),
        ("cnn1d", (1,)),
        ("cnn-large", (784,)),
        ("cnn-mcmahan", (1, 3, 3)),
        ("resnet-small", (1, 28)),
        ("mlp", (0, 3)),
    ],
)
def test_incompatible_shapes_raise_one_line_errors(name: str, shape: tuple[int, ...]) -> None:
    with pytest.raises(TinylargeError) as info:
        build_model(name, input_shape=shape, num_classes=10)
    assert "\n" not in str(info.value)


def test_unknown_model_and_options() -> None:
    with pytest.raises(UnknownNameError, match="known: cnn-large, cnn-mcmahan, cnn-tiny, cnn1d"):
        build_model("vgg16", input_shape=(3, 32, 32), num_classes=10)
    with pytest.raises(TinylargeError, match=r"unknown option.*depth.*allowed: width"):
        build_model("cnn-tiny", input_shape=(1, 28, 28), num_classes=10, depth=3)
    with pytest.raises(TinylargeError, match="width must be >= 1"):
        build_model("ds-cnn", input_shape=(1, 49, 10), num_classes=12, width=0)
    with pytest.raises(TinylargeError, match="num_classes"):
        build_model("mlp", input_shape=(4,), num_classes=0)


def test_options_scale_the_models() -> None:
    small = build_model("ds-cnn", input_shape=(1, 49, 10), num_classes=12, width=32, blocks=2)
    big = build_model("ds-cnn", input_shape=(1, 49, 10), num_classes=12)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in big.parameters())
    mlp = build_model("mlp", input_shape=(64,), num_classes=10, hidden=[32, 16])
    assert [m.out_features for m in mlp if isinstance(m, torch.nn.Linear)] == [32, 16, 10]
    assert build_model("mlp", input_shape=(64,), num_classes=10, hidden=32)[1].out_features == 32


def test_cnn_tiny_is_tiny_on_fashion_mnist() -> None:
    model = build_model("cnn-tiny", input_shape=(1, 28, 28), num_classes=10)
    profile = profile_model(model, input_shape=(1, 28, 28))
    assert profile.params < 30_000
    assert profile.macs < 2_000_000


def test_reference_architectures_match_mlperf_tiny_mac_counts() -> None:
    # MLPerf Tiny KWS DS-CNN and IC ResNet-8, counted from the published .tflite files
    kws = build_model("ds-cnn", input_shape=(1, 49, 10), num_classes=12)
    assert profile_model(kws, input_shape=(1, 49, 10)).macs == 2_656_768
    ic = build_model("resnet-small", input_shape=(3, 32, 32), num_classes=10)
    assert profile_model(ic, input_shape=(3, 32, 32)).macs == 12_501_632


def test_large_tier_is_larger_than_tiny_tier() -> None:
    def macs(name: str) -> int:
        model = build_model(name, input_shape=(1, 28, 28), num_classes=10)
        return profile_model(model, input_shape=(1, 28, 28)).macs

    assert min(macs("cnn-large"), macs("resnet-small")) > 5 * macs("cnn-tiny")


def test_cnn_mcmahan_has_the_papers_parameter_count() -> None:
    # McMahan et al. 2017 (arXiv:1602.05629), section 3: "1,663,370 total parameters"
    model = build_model("cnn-mcmahan", input_shape=(1, 28, 28), num_classes=10)
    profile = profile_model(model, input_shape=(1, 28, 28))
    assert profile.params == sum(p.numel() for p in model.parameters()) == 1_663_370
    # 5x5 convs 1->32 at 28x28, 32->64 at 14x14, then 3136->512->10
    assert profile.macs == 28 * 28 * 32 * 25 + 14 * 14 * 64 * 32 * 25 + 3136 * 512 + 512 * 10
