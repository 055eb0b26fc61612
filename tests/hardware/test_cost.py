"""Compute cost model: linear in work, per-operator efficiencies, training ~3x."""

from __future__ import annotations

import dataclasses

import pytest

from tinylarge.errors import TinylargeError
from tinylarge.hardware.catalogue import get_device
from tinylarge.hardware.cost import (
    ComputeCost,
    inference_cost,
    layer_work,
    macs_cost,
    training_cost,
)
from tinylarge.models.profile import LayerProfile, ModelProfile


def _model(*layers: LayerProfile, dtype: str = "int8", train_batch: int = 1) -> ModelProfile:
    macs = sum(layer.macs for layer in layers)
    return ModelProfile(
        name="toy",
        input_shape=(32, 32, 3),
        dtype=dtype,  # type: ignore[arg-type]
        layers=tuple(layers),
        macs=macs,
        params=1000,
        weight_bytes=1000,
        flash_bytes=2000,
        peak_sram_bytes=4096,
        train_memory_bytes=50_000,
        train_batch_size=train_batch,
    )


def _conv(macs: int, name: str = "conv") -> LayerProfile:
    return LayerProfile(name, "conv", macs, 100, (8, 8, 16), 1024)


def test_inference_matches_the_formula_by_hand() -> None:
    d = get_device("stm32l4r5")
    dw = LayerProfile("dw", "depthwise_conv", 200_000, 10, (8, 8, 16), 1024)
    model = _model(_conv(1_000_000), dw)
    # int8 runs at the stack's rates (int8_op_efficiency / int8_op_overhead_s) ...
    assert d.int8_op_efficiency is not None
    assert d.int8_op_overhead_s is not None
    expected = (
        1_000_000 / d.int8_macs_per_s
        + 200_000 / (d.int8_macs_per_s * d.int8_op_efficiency["depthwise_conv"])
        + 2 * d.int8_op_overhead_s
    )
    cost = inference_cost(model, d)
    assert cost.latency_s == pytest.approx(expected)
    assert cost.energy_j == pytest.approx(expected * d.active_power_w)
    assert cost.macs == 1_200_000
    # ... fp32 at the catalogue's own (op_efficiency / op_overhead_s)
    expected_fp32 = (
        1_000_000 / d.fp32_macs_per_s
        + 200_000 / (d.fp32_macs_per_s * d.op_efficiency["depthwise_conv"])
        + 2 * d.op_overhead_s
    )
    assert inference_cost(model, d, dtype="fp32").latency_s == pytest.approx(expected_fp32)


def test_latency_is_affine_and_monotonic_in_macs() -> None:
    d = get_device("stm32f746")
    lat = [inference_cost(_model(_conv(m)), d).latency_s for m in (10**5, 2 * 10**5, 4 * 10**5)]
    assert lat[0] < lat[1] < lat[2]
    # Affine: equal steps in MACs give equal steps in seconds.
    assert lat[2] - lat[1] == pytest.approx(2 * (lat[1] - lat[0]))


def test_depthwise_is_slower_per_mac_than_conv_on_cmsis_nn() -> None:
    d = get_device("stm32l4r5")
    conv = inference_cost(_model(_conv(10**6)), d)
    dw = inference_cost(_model(LayerProfile("dw", "depthwise_conv", 10**6, 0, (8,), 8)), d)
    # the 2020 reference build runs depthwise 3.9x slower per MAC than conv (stack fit)
    assert dw.latency_s > 3 * conv.latency_s


def test_fp32_slower_than_int8_and_dtype_defaults_to_profile() -> None:
    d = get_device("stm32h743")
    model = _model(_conv(10**6))
    int8 = inference_cost(model, d)
    fp32 = inference_cost(model, d, dtype="fp32")
    assert fp32.latency_s > int8.latency_s
    assert inference_cost(dataclasses.replace(model, dtype="fp32"), d) == fp32


def test_batch_scales_macs_and_amortises_overhead() -> None:
    d = get_device("stm32l4r5")
    model = _model(_conv(10**5), _conv(10**5, "b"))
    one = inference_cost(model, d)
    four = inference_cost(model, d, batch=4)
    assert four.macs == 4 * one.macs
    assert four.latency_s == pytest.approx(4 * one.latency_s - 3 * 2 * d.op_overhead_s)
    with pytest.raises(TinylargeError, match="batch"):
        inference_cost(model, d, batch=0)


def test_faster_device_is_faster() -> None:
    model = _model(_conv(5 * 10**6))
    mcu = inference_cost(model, get_device("stm32l4r5")).latency_s
    pi = inference_cost(model, get_device("rpi5")).latency_s
    gpu = inference_cost(model, get_device("a100")).latency_s
    assert mcu > pi > gpu


def test_layers_without_macs_cost_their_output_elements() -> None:
    add = LayerProfile("add", "elementwise", 0, 0, (16, 16, 8), 2048)
    assert layer_work(add) == 2048
    d = get_device("stm32l4r5")
    cost = inference_cost(_model(add), d)
    assert cost.macs == 0
    assert cost.latency_s > d.op_overhead_s


def test_training_is_about_three_forward_passes_at_fp32() -> None:
    d = get_device("rpi4")
    model = _model(_conv(10**6), _conv(2 * 10**6, "b"), dtype="int8")
    forward_fp32 = inference_cost(model, d, dtype="fp32")
    train = training_cost(model, d, samples=1)
    assert train.macs == 3 * model.macs
    assert train.latency_s == pytest.approx(3 * forward_fp32.latency_s)
    assert train.energy_j == pytest.approx(train.latency_s * d.active_power_w)


def test_training_scales_with_samples_and_backward_factor() -> None:
    d = get_device("stm32f746")
    model = _model(_conv(10**6), train_batch=8)
    t100 = training_cost(model, d, samples=100)
    t200 = training_cost(model, d, samples=200)
    assert t200.macs == 2 * t100.macs
    assert 1.9 < t200.latency_s / t100.latency_s <= 2.01
    frozen = training_cost(model, d, samples=100, backward_factor=1.0)
    assert frozen.macs == pytest.approx(t100.macs * 2 / 3, rel=1e-6)
    assert training_cost(model, d, samples=0) == ComputeCost(0, 0.0, 0.0)
    with pytest.raises(TinylargeError, match="samples"):
        training_cost(model, d, samples=-1)
    with pytest.raises(TinylargeError, match="backward_factor"):
        training_cost(model, d, samples=1, backward_factor=-1.0)


def test_macs_cost_linear_and_op_aware() -> None:
    d = get_device("stm32l4r5")
    a = macs_cost(10**6, d, dtype="int8")
    b = macs_cost(2 * 10**6, d, dtype="int8")
    assert b.latency_s == pytest.approx(2 * a.latency_s)
    assert a.latency_s == pytest.approx(10**6 / d.int8_macs_per_s)
    dw = macs_cost(10**6, d, dtype="int8", op="depthwise_conv")
    assert dw.latency_s > a.latency_s
    assert macs_cost(0, d, dtype="fp32").latency_s == 0.0
    with pytest.raises(TinylargeError, match="operator class"):
        macs_cost(1, d, dtype="int8", op="attention")  # type: ignore[arg-type]
    with pytest.raises(TinylargeError, match="dtype"):
        macs_cost(1, d, dtype="bf16")  # type: ignore[arg-type]
    with pytest.raises(TinylargeError, match="macs"):
        macs_cost(-1, d, dtype="int8")
