"""Fit check: flash for the model, contiguous SRAM for inference, SRAM to train."""

from __future__ import annotations

import dataclasses

from tinylarge.hardware.catalogue import get_device
from tinylarge.hardware.fit import check_fit, format_bytes
from tinylarge.models.profile import ModelProfile

KIB = 1024


def _model(*, flash: int, peak: int, train: int | None = None) -> ModelProfile:
    return ModelProfile(
        name="toy",
        input_shape=(96, 96, 3),
        dtype="int8",
        layers=(),
        macs=0,
        params=0,
        weight_bytes=flash,
        flash_bytes=flash,
        peak_sram_bytes=peak,
        train_memory_bytes=train,
    )


def test_small_model_fits() -> None:
    d = get_device("stm32f746")
    report = check_fit(_model(flash=300 * KIB, peak=100 * KIB), d)
    assert report.fits
    assert report.reason is None
    assert report.flash_capacity_bytes == d.flash_bytes
    assert report.sram_bytes == 100 * KIB
    assert report.sram_capacity_bytes == d.sram_contiguous_bytes


def test_too_big_for_flash() -> None:
    report = check_fit(_model(flash=600 * KIB, peak=10 * KIB), get_device("stm32f446re"))
    assert not report.fits
    assert report.reason == "model 600 KiB > flash 512 KiB"


def test_too_big_for_sram_uses_contiguous_range() -> None:
    h7 = get_device("stm32h743")
    # 600 KiB is below the H7's 1056 KiB total but above its 512 KiB AXI SRAM.
    report = check_fit(_model(flash=100 * KIB, peak=600 * KIB), h7)
    assert not report.fits
    assert report.reason == "peak SRAM 600 KiB > largest contiguous SRAM 512 KiB"
    assert check_fit(_model(flash=100 * KIB, peak=512 * KIB), h7).fits


def test_both_failures_reported() -> None:
    report = check_fit(_model(flash=4 * 2**20, peak=400 * KIB), get_device("nrf52840"))
    assert not report.fits
    assert report.reason is not None
    assert "flash" in report.reason
    assert "peak SRAM" in report.reason


def test_training_needs_can_train_and_memory() -> None:
    model = _model(flash=50 * KIB, peak=20 * KIB, train=200 * KIB)
    assert check_fit(model, get_device("stm32f746"), training=True).fits
    rp = check_fit(model, get_device("rp2040"), training=True)
    assert not rp.fits
    assert rp.reason is not None
    assert "cannot train" in rp.reason
    big = dataclasses.replace(model, train_memory_bytes=400 * KIB)
    report = check_fit(big, get_device("stm32f746"), training=True)
    assert not report.fits
    assert report.reason == "training memory 400 KiB > SRAM 320 KiB"
    assert report.sram_capacity_bytes == get_device("stm32f746").sram_bytes


def test_training_memory_unknown_does_not_fit() -> None:
    report = check_fit(_model(flash=1, peak=1, train=None), get_device("rpi4"), training=True)
    assert not report.fits
    assert report.reason == "training memory of the model is unknown"


def test_inference_fits_a_server_easily() -> None:
    assert check_fit(_model(flash=2**30, peak=2**30), get_device("a100")).fits


def test_format_bytes() -> None:
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(80 * 2**30) == "80 GiB"
