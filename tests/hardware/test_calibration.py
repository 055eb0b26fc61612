"""The cost model against the MLPerf Tiny reference results on the STM32L4R5.

Published (MLPerf Tiny v0.5 reference, NUCLEO-L4R5ZI, TFLite Micro + CMSIS-NN):
KWS 182 ms, VWW 601 ms, IC 704 ms, AD 10 ms at about 40 mW. The predictions must
be within 30% for latency and energy per inference.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip(
    "tinylarge.models.files", reason="tinylarge.models.files (the .tflite profiler) not there yet"
)

from tinylarge.hardware.calibration import (
    MLPERF_TINY_REFERENCE,
    TOLERANCE,
    format_table,
    mlperf_tiny_calibration,
)

DATA_DIR = Path(
    os.environ.get("TINYLARGE_DATA", Path(__file__).resolve().parents[3] / "shared" / "datasets")
)


def test_mlperf_tiny_latency_and_energy_within_30_percent() -> None:
    rows = mlperf_tiny_calibration(DATA_DIR)
    print()
    print(format_table(rows))
    assert [r.benchmark for r in rows] == [b for b, *_ in MLPERF_TINY_REFERENCE]
    for row in rows:
        assert abs(row.relative_error) <= TOLERANCE, row
        assert abs(row.energy_relative_error) <= TOLERANCE, row


def test_ordering_of_the_benchmarks_is_reproduced() -> None:
    rows = {r.benchmark: r.predicted_latency_s for r in mlperf_tiny_calibration(DATA_DIR)}
    # Published order: AD < KWS < VWW < IC.
    assert rows["AD"] < rows["KWS"] < rows["VWW"] < rows["IC"]


def test_missing_data_dir_is_a_user_error(tmp_path: Path) -> None:
    from tinylarge.errors import DataFileMissingError

    with pytest.raises(DataFileMissingError, match="TINYLARGE_DATA"):
        mlperf_tiny_calibration(tmp_path)


def test_reference_models_fit_the_reference_board() -> None:
    """The published runs happened, so the models fit the board they ran on."""
    from tinylarge.hardware.catalogue import get_device
    from tinylarge.hardware.fit import check_fit
    from tinylarge.models.files import profile_file

    l4r5 = get_device("stm32l4r5")
    for _, name, *_ in MLPERF_TINY_REFERENCE:
        profile = profile_file(DATA_DIR / "mlperf-tiny-models" / name)
        report = check_fit(profile, l4r5)
        assert report.fits, (name, report.reason)
        assert report.flash_bytes == (DATA_DIR / "mlperf-tiny-models" / name).stat().st_size
