"""Fit per device: the reason (flash or SRAM) and the shortfall in bytes, never a silent pass."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.compress.conftest import Trained

from tinylarge.compress.export import export_onnx_int8
from tinylarge.compress.fit_report import deployed_profile, device_fit, fit_report
from tinylarge.hardware.catalogue import all_devices, get_device
from tinylarge.models.files import profile_file
from tinylarge.models.profile import ModelProfile


def _profile(flash: int, sram: int) -> ModelProfile:
    return ModelProfile("m", (8,), "int8", (), 0, 0, 0, flash, sram)


def test_too_big_for_flash_says_by_how_much() -> None:
    dev = get_device("nrf52840")
    fit = device_fit(_profile(dev.flash_bytes + 1234, 1000), dev)
    assert not fit.fits
    assert fit.flash_over_bytes == 1234
    assert fit.sram_over_bytes == 0
    assert fit.reason is not None
    assert fit.reason.startswith("flash:")
    assert "over by 1,234 B" in fit.reason


def test_too_big_for_sram_says_by_how_much() -> None:
    dev = get_device("stm32f746")
    fit = device_fit(_profile(1000, dev.sram_contiguous_bytes + 10), dev)
    assert not fit.fits
    assert fit.sram_over_bytes == 10
    assert fit.flash_over_bytes == 0
    assert fit.reason is not None
    assert fit.reason.startswith("SRAM:")
    assert "over by 10 B" in fit.reason


def test_both_shortfalls_are_reported() -> None:
    dev = get_device("stm32f446re")
    fit = device_fit(_profile(dev.flash_bytes * 2, dev.sram_contiguous_bytes * 2), dev)
    assert fit.reason is not None
    assert "flash:" in fit.reason
    assert "SRAM:" in fit.reason


def test_report_covers_the_catalogue_and_costs_an_artifact(
    trained_cnn: Trained, tmp_path: Path
) -> None:
    path = export_onnx_int8(
        trained_cnn.model, tmp_path / "m.onnx", input_shape=(1, 8, 8),
        calibration=trained_cnn.calibration,
    )  # fmt: skip
    profile = profile_file(path)
    rows = fit_report(profile)
    assert [r.device for r in rows] == [d.id for d in all_devices()]
    assert all(r.fits and r.reason is None for r in rows)  # a tiny cnn fits everything
    assert all(r.latency_s > 0 and r.energy_j > 0 for r in rows)
    assert profile.flash_bytes == path.stat().st_size
    # QDQ pairs fold on a device: fewer operators, lower latency, same MACs
    deployed = deployed_profile(profile)
    assert len(deployed.layers) < len(profile.layers)
    assert deployed.macs == profile.macs
    mcu = {r.device: r for r in rows}["stm32f746"]
    assert mcu.latency_s == pytest.approx(device_fit(profile, get_device("stm32f746")).latency_s)
