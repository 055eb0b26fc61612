"""PyTorch profiler: hand-computed figures, residual memory plans and two oracles."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch
from fvcore.nn import FlopCountAnalysis
from torch import nn
from torchinfo import summary

from tinylarge.errors import TinylargeError
from tinylarge.models.profiler import profile_model
from tinylarge.models.zoo import MODELS, build_model


def test_hand_computed_chain() -> None:
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),  # 8x8x4 out, 4*8*8*2*9 = 4608 MACs, 76 params
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, groups=4),  # depthwise: 4*8*8*9 = 2304 MACs, 40 params
        nn.MaxPool2d(2),  # 4x4x4
        nn.Flatten(),
        nn.Linear(64, 10),  # 640 MACs, 650 params
    )
    p = profile_model(model, input_shape=(2, 8, 8), dtype="fp32")
    assert p.macs == 4608 + 2304 + 640
    assert p.params == 76 + 40 + 650
    assert [(layer.op, layer.macs) for layer in p.layers] == [
        ("conv", 4608),
        ("elementwise", 0),
        ("depthwise_conv", 2304),
        ("pool", 0),
        ("other", 0),
        ("linear", 640),
    ]
    assert p.layers[0].output_shape == (4, 8, 8)
    assert p.layers[0].output_bytes == 4 * 8 * 8 * 4
    # peak: ReLU runs in place, so conv1's output (1 KiB) + depthwise output (1 KiB)
    assert p.peak_sram_bytes == 2048
    assert p.extra["arena_bytes"] >= p.peak_sram_bytes
    assert p.macs_by_op()["depthwise_conv"] == 2304


def test_int8_bytes_are_a_quarter_for_activations_and_smaller_for_weights() -> None:
    model = build_model("cnn-tiny", input_shape=(1, 28, 28), num_classes=10)
    fp32 = profile_model(model, input_shape=(1, 28, 28), dtype="fp32")
    int8 = profile_model(model, input_shape=(1, 28, 28), dtype="int8")
    assert int8.macs == fp32.macs
    assert int8.peak_sram_bytes * 4 == fp32.peak_sram_bytes
    # fp32: 4 B per weight and bias; int8: 1 B per weight, int32 bias, 12 B per channel
    weights, channels = 20_490 - 16 - 32 - 10, 16 + 32 + 10
    assert fp32.weight_bytes == 4 * 20_490
    assert int8.weight_bytes == weights + channels * (4 + 12)
    for p in (fp32, int8):
        assert p.extra["flash_bytes_fp32"] == fp32.flash_bytes
        assert p.extra["flash_bytes_int8"] == int8.flash_bytes
    assert fp32.weight_bytes < fp32.flash_bytes < fp32.weight_bytes * 1.1


def test_batchnorm_is_folded_in_deployed_bytes_but_trained() -> None:
    model = nn.Sequential(nn.Conv2d(1, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU())
    p = profile_model(model, input_shape=(1, 6, 6))
    assert p.params == 72 + 16
    assert p.weight_bytes == (72 + 8) * 4  # BN folded into a conv bias


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(4, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(self.a(x))


def test_skip_connection_keeps_the_input_live() -> None:
    p = profile_model(_Residual(), input_shape=(4, 8, 8))
    assert [layer.kind for layer in p.layers] == ["Conv2d", "Conv2d", "add"]
    one = 4 * 8 * 8 * 4
    # during conv b: x (skip), a's output, b's output
    assert p.peak_sram_bytes == 3 * one
    # a chain of the same convs needs only two buffers
    chain = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1))
    assert profile_model(chain, input_shape=(4, 8, 8)).peak_sram_bytes == 2 * one


class _Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if y.sum() > -1e9:  # data-dependent control flow: fx cannot trace this
            y = torch.relu(y)
        return self.fc(y.flatten(1))


def test_untraceable_modules_fall_back_to_hooks() -> None:
    p = profile_model(_Untraceable(), input_shape=(1, 8, 8))
    assert p.extra["traced"] == "hooks"
    assert p.macs == 4 * 36 * 9 + 144 * 3
    assert p.params == 40 + 435


def test_training_memory_grows_with_batch_and_optimizer() -> None:
    model = build_model("mlp", input_shape=(20,), num_classes=5, hidden=10)
    params = 20 * 10 + 10 + 10 * 5 + 5
    saved = 10 + 10 + 5  # linear, relu and linear outputs (the flatten is a view)
    sgd = profile_model(model, input_shape=(20,), optimizer="sgd", train_batch_size=4)
    adam = profile_model(model, input_shape=(20,), optimizer="adam", train_batch_size=4)
    assert sgd.train_memory_bytes == params * 8 + (saved + 20) * 4 * 4
    assert adam.train_memory_bytes == params * 16 + (saved + 20) * 4 * 4
    assert adam.extra["train_optimizer"] == "adam"


def test_profiler_rejects_bad_arguments() -> None:
    model = build_model("mlp", input_shape=(20,), num_classes=5)
    with pytest.raises(TinylargeError, match="dtype"):
        profile_model(model, input_shape=(20,), dtype="int4")  # type: ignore[arg-type]
    with pytest.raises(TinylargeError, match="cannot take input"):
        profile_model(model, input_shape=(21,))
    with pytest.raises(TinylargeError, match="input_shape"):
        profile_model(model, input_shape=())


def test_profiling_leaves_the_training_mode_alone() -> None:
    model = build_model("resnet-small", input_shape=(3, 16, 16), num_classes=10).train()
    profile_model(model, input_shape=(3, 16, 16))
    assert model.training


ORACLE_CASES = [
    (name, shape)
    for name in sorted(MODELS.names())
    for shape in {
        "mlp": [(1, 28, 28), (64,)],
        "cnn-tiny": [(1, 28, 28), (1, 8, 8)],
        "ds-cnn": [(1, 49, 10), (1, 32, 13)],
        "cnn1d": [(41,), (3, 64)],
        "cnn-large": [(1, 28, 28), (3, 32, 32)],
        "cnn-mcmahan": [(1, 28, 28)],
        "resnet-small": [(3, 32, 32), (1, 28, 28)],
    }[name]
]


@pytest.mark.parametrize(("name", "shape"), ORACLE_CASES)
def test_macs_agree_with_fvcore(name: str, shape: tuple[int, ...]) -> None:
    """fvcore counts one MAC as one flop for conv/linear; BN and pooling it counts
    per element, we count 0 (folded/fused), so compare conv + linear only."""
    model = build_model(name, input_shape=shape, num_classes=10).eval()
    ours = profile_model(model, input_shape=shape).macs_by_op()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            counter = FlopCountAnalysis(model, torch.zeros(1, *shape))
            counter.unsupported_ops_warnings(False)
            by_op = counter.by_operator()
        finally:
            logging.disable(logging.NOTSET)
    theirs = sum(by_op.get(k, 0) for k in ("conv", "linear", "addmm", "matmul"))
    assert ours["conv"] + ours["depthwise_conv"] + ours["linear"] == theirs


@pytest.mark.parametrize(("name", "shape"), ORACLE_CASES)
def test_macs_agree_with_torchinfo_layer_by_layer(name: str, shape: tuple[int, ...]) -> None:
    """torchinfo adds one MAC per output element for a bias and counts BN
    parameters; remove the bias term and compare the conv/linear layers."""
    model = build_model(name, input_shape=shape, num_classes=10).eval()
    layers = profile_model(model, input_shape=shape).layers
    ours = [layer.macs for layer in layers if layer.op in ("conv", "depthwise_conv", "linear")]
    stats = summary(model, input_size=(1, *shape), verbose=0)
    theirs = []
    for info in stats.summary_list:
        if info.is_leaf_layer and isinstance(info.module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            bias = info.module.bias
            out_elements = int(torch.Size(info.output_size).numel())
            theirs.append(info.macs - (out_elements if bias is not None else 0))
    assert sorted(ours) == sorted(theirs)
    assert sum(ours) <= stats.total_mult_adds
