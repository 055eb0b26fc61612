"""The fit check counts TFLite Micro's whole arena for an int8 .tflite, not its activations.

VWW's activations peak at 55,296 B but TFLM needs about 101 KB on a 32-bit build:
a board with 80 KB of contiguous SRAM must be told it does not fit.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from tinylarge.cli.app import main
from tinylarge.hardware.catalogue import get_device
from tinylarge.hardware.fit import check_fit, inference_sram_bytes
from tinylarge.models.files import profile_file
from tinylarge.models.tflite_reader import read_tflite
from tinylarge.models.tflm_arena import predict_arenas

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("TINYLARGE_DATA", REPO.parent / "shared" / "datasets"))
VWW = DATA / "mlperf-tiny-models" / "vww_96_int8.tflite"
KWS_FLOAT = DATA / "mlperf-tiny-models" / "kws_ref_model_float32.tflite"


def test_mcu_fit_uses_the_32_bit_arena_and_names_it() -> None:
    profile = profile_file(VWW)
    arenas = predict_arenas(read_tflite(VWW))
    assert profile.extra["tflm_arena_bytes"] == {k: v.arena_bytes for k, v in arenas.items()}
    mcu = dataclasses.replace(get_device("nrf52840"), sram_contiguous_bytes=80_000)
    assert profile.peak_sram_bytes == 55_296 < 80_000 < arenas["cortex-m"].arena_bytes
    report = check_fit(profile, mcu)
    assert not report.fits
    assert report.sram_bytes == arenas["cortex-m"].arena_bytes
    assert report.reason is not None
    assert report.reason.startswith("TFLite Micro arena ")
    sbc = get_device("rpi4")
    assert inference_sram_bytes(profile, sbc) == (
        arenas["x86-64"].arena_bytes,
        "TFLite Micro arena",
    )


def test_float_file_keeps_the_activation_peak() -> None:
    profile = profile_file(KWS_FLOAT)
    assert profile.extra["tflm_arena_bytes"] is None
    assert inference_sram_bytes(profile, get_device("nrf52840")) == (
        profile.peak_sram_bytes,
        "peak SRAM",
    )


def test_profile_and_fit_print_the_arenas(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", str(VWW), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["peak_sram_bytes"] == 55_296
    assert set(out["tflm_arena_bytes"]) == {"x86-64", "cortex-m"}
    assert main(["profile", str(VWW)]) == 0
    assert "TFLite Micro arena, 32-bit Cortex-M (predicted)" in capsys.readouterr().out
    assert main(["fit", str(VWW), "--devices", "nrf52840", "--json"]) == 0
    fit = json.loads(capsys.readouterr().out)
    assert fit["devices"][0]["sram_bytes"] == fit["tflm_arena_bytes"]["cortex-m"]
