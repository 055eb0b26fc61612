"""File profiler: MLPerf Tiny reference .tflite models and ONNX exports of the zoo."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import pytest
import torch

from tinylarge.errors import TinylargeError, UnknownNameError
from tinylarge.models.files import profile_file
from tinylarge.models.profiler import profile_model
from tinylarge.models.zoo import MODELS, build_model

# Published MAC counts (MLPerf Tiny, Banbury et al. 2021, arXiv:2106.07597):
# KWS DS-CNN 2.7 M (2.66 M), VWW MobileNetV1-0.25 7.5 M, IC ResNet-8 12.5 M,
# AD FC autoencoder 0.26 M.  Our exact counts must be within 2 % of them.
PUBLISHED = {
    "kws_ref_model.tflite": (2.66e6, "int8", (49, 10, 1)),
    "kws_ref_model_float32.tflite": (2.66e6, "fp32", (49, 10, 1)),
    "vww_96_int8.tflite": (7.49e6, "int8", (96, 96, 3)),
    "pretrainedResnet_quant.tflite": (12.5e6, "int8", (32, 32, 3)),
    "pretrainedResnet.tflite": (12.5e6, "fp32", (32, 32, 3)),
    "ad01_int8.tflite": (0.264e6, "int8", (640,)),
}


@pytest.mark.parametrize("filename", sorted(PUBLISHED))
def test_mlperf_tiny_macs_match_published_figures(mlperf_dir: Path, filename: str) -> None:
    macs, dtype, shape = PUBLISHED[filename]
    p = profile_file(mlperf_dir / filename)
    assert p.macs == pytest.approx(macs, rel=0.02)
    assert p.dtype == dtype
    assert p.input_shape == shape
    assert p.flash_bytes == (mlperf_dir / filename).stat().st_size
    assert p.weight_bytes < p.flash_bytes
    assert 0 < p.peak_sram_bytes <= p.extra["arena_bytes"]


def _conv(h: int, w: int, cout: int, k: int, cin: int) -> int:
    """MACs of a convolution: one k x k x cin dot product per output value."""
    return h * w * cout * k * cin


def _dw(h: int, w: int, channels: int) -> int:
    """MACs of a 3x3 depthwise convolution."""
    return h * w * channels * 9


# Counted by hand from the published architectures (MLPerf Tiny, arXiv:2106.07597 and the
# mlcommons/tiny training scripts), layer by layer, not from our profiler.
KWS_DS_CNN = (
    _conv(25, 5, 64, 10 * 4, 1)  # 10x4 stride-2 conv of the 49x10 MFCCs: 25x5x64
    + 4 * (_dw(25, 5, 64) + _conv(25, 5, 64, 1, 64))  # 4 depthwise-separable blocks
    + 64 * 12  # average pool, fully connected to 12 classes
)
# (output size, channels in, channels out) of MobileNetV1-0.25's 13 depthwise-separable blocks
VWW_BLOCKS = [(48, 8, 16), (24, 16, 32), (24, 32, 32), (12, 32, 64), (12, 64, 64), (6, 64, 128)]
VWW_BLOCKS += [(6, 128, 128)] * 5 + [(3, 128, 256), (3, 256, 256)]
VWW_MOBILENET_V1_025 = (
    _conv(48, 48, 8, 9, 3)  # 3x3 stride-2 stem on 96x96x3
    + sum(_dw(s, s, cin) + _conv(s, s, cout, 1, cin) for s, cin, cout in VWW_BLOCKS)
    + 256 * 2  # average pool, fully connected to 2 classes
)
IC_RESNET_8 = (
    _conv(32, 32, 16, 9, 3)  # 3x3 stem on 32x32x3
    + 2 * _conv(32, 32, 16, 9, 16)  # stack 1: two 3x3 convs, identity shortcut
    # stacks 2 and 3: a stride-2 3x3 conv, a 3x3 conv and a 1x1 stride-2 shortcut each
    + sum(
        _conv(s, s, cout, 9, cin) + _conv(s, s, cout, 9, cout) + _conv(s, s, cout, 1, cin)
        for s, cin, cout in [(16, 16, 32), (8, 32, 64)]
    )
    + 64 * 10  # average pool, fully connected to 10 classes
)
# 640 -> 128 -> 128 -> 128 -> 128 -> 8 -> 128 -> 128 -> 128 -> 128 -> 640, dense
AD_AUTOENCODER = sum(a * b for a, b in itertools.pairwise([640, *[128] * 4, 8, *[128] * 4, 640]))


def test_exact_counts_of_the_reference_models(mlperf_dir: Path) -> None:
    exact = {
        "kws_ref_model.tflite": KWS_DS_CNN,
        "vww_96_int8.tflite": VWW_MOBILENET_V1_025,
        "pretrainedResnet_quant.tflite": IC_RESNET_8,
        "ad01_int8.tflite": AD_AUTOENCODER,
    }
    assert {f: profile_file(mlperf_dir / f).macs for f in exact} == exact
    # and they are the published figures (2.66 M, 7.49 M, 12.5 M, 0.26 M) to the nearest 10,000
    assert [round(v, -4) for v in exact.values()] == [2_660_000, 7_490_000, 12_500_000, 260_000]


@pytest.mark.parametrize(
    ("int8_file", "fp32_file"),
    [
        ("kws_ref_model.tflite", "kws_ref_model_float32.tflite"),
        ("pretrainedResnet_quant.tflite", "pretrainedResnet.tflite"),
    ],
)
def test_float_and_int8_versions_agree(mlperf_dir: Path, int8_file: str, fp32_file: str) -> None:
    q = profile_file(mlperf_dir / int8_file)
    f = profile_file(mlperf_dir / fp32_file)
    assert q.macs == f.macs
    assert q.params == f.params
    assert [(a.op, a.macs, a.output_shape) for a in q.layers] == [
        (b.op, b.macs, b.output_shape) for b in f.layers
    ]
    assert f.peak_sram_bytes == 4 * q.peak_sram_bytes  # 4 B vs 1 B activations


def test_kws_layers_and_memory_plan_by_hand(mlperf_dir: Path) -> None:
    p = profile_file(mlperf_dir / "kws_ref_model.tflite")
    assert [layer.kind for layer in p.layers[:3]] == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D"]
    assert p.layers[0].macs == 25 * 5 * 64 * 10 * 4  # 320 000
    assert p.layers[1].macs == 25 * 5 * 64 * 9
    assert p.layers[2].macs == 25 * 5 * 64 * 64
    assert p.layers[0].output_shape == (25, 5, 64)
    # chain of 25x5x64 int8 maps: one in, one out
    assert p.peak_sram_bytes == 2 * 25 * 5 * 64


def test_resnet_skip_tensors_raise_the_peak(mlperf_dir: Path) -> None:
    p = profile_file(mlperf_dir / "pretrainedResnet_quant.tflite")
    # the stem output stays live across the first block: 3 maps of 32x32x16
    assert p.peak_sram_bytes == 3 * 32 * 32 * 16
    assert [layer.kind for layer in p.layers].count("ADD") == 3


def test_zoo_architectures_reproduce_the_reference_files(mlperf_dir: Path) -> None:
    for zoo, shape, classes, filename in [
        ("ds-cnn", (1, 49, 10), 12, "kws_ref_model.tflite"),
        ("resnet-small", (3, 32, 32), 10, "pretrainedResnet_quant.tflite"),
    ]:
        ref = profile_file(mlperf_dir / filename)
        model = build_model(zoo, input_shape=shape, num_classes=classes)
        ours = profile_model(model, input_shape=shape, dtype="int8")
        assert ours.macs == ref.macs
        assert ours.peak_sram_bytes == ref.peak_sram_bytes
        fp32 = profile_model(model, input_shape=shape, dtype="fp32")
        assert fp32.weight_bytes == 4 * ref.params  # BN folded, as in the file


def _export(model: torch.nn.Module, shape: tuple[int, ...], path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.zeros(1, *shape),), str(path), dynamo=False)


@pytest.mark.parametrize("name", sorted(MODELS.names()))
def test_onnx_export_has_the_torch_profile(tmp_path: Path, name: str) -> None:
    shape = MODELS[name].default_input_shape
    model = build_model(name, input_shape=shape, num_classes=10)
    path = tmp_path / f"{name}.onnx"
    _export(model, shape, path)
    onnx_profile = profile_file(path)
    torch_profile = profile_model(model, input_shape=shape)
    assert onnx_profile.macs == torch_profile.macs
    assert onnx_profile.macs_by_op() == torch_profile.macs_by_op()
    assert onnx_profile.peak_sram_bytes == torch_profile.peak_sram_bytes
    assert onnx_profile.input_shape == shape
    assert onnx_profile.dtype == "fp32"
    assert onnx_profile.flash_bytes == path.stat().st_size


def test_quantized_onnx_model_is_int8(tmp_path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = build_model("cnn-tiny", input_shape=(1, 8, 8), num_classes=10)
    fp32_path, int8_path = tmp_path / "m.onnx", tmp_path / "m_int8.onnx"
    _export(model, (1, 8, 8), fp32_path)
    quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8)
    q, f = profile_file(int8_path), profile_file(fp32_path)
    assert q.dtype == "int8"
    assert q.macs == f.macs
    assert q.flash_bytes < f.flash_bytes


def test_file_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(TinylargeError, match="not found"):
        profile_file(tmp_path / "missing.tflite")
    with pytest.raises(UnknownNameError, match=r"known: \.onnx, \.tflite"):
        profile_file(tmp_path / "model.pb")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(TinylargeError, match=r"not a \.tflite"):
        profile_file(junk)
    bad = tmp_path / "junk.onnx"
    bad.write_bytes(b"\x00\x01garbage")
    with pytest.raises(TinylargeError, match="not a readable ONNX"):
        profile_file(bad)
