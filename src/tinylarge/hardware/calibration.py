"""Calibration of the cost model against the MLPerf Tiny reference results.

The MLPerf Tiny v0.5 reference submission ran the four int8 reference models
on an STM32L4R5 (NUCLEO-L4R5ZI, Cortex-M4F at 120 MHz) with TensorFlow Lite
for Microcontrollers v2.3.1 and CMSIS-NN kernels, and published their
latencies (https://github.com/mlcommons/tiny_results_v0.5, closed/reference).
The ``cmsis-nn`` efficiency profile and the ``stm32l4r5`` conv rate in the
catalogue were fitted to them (three constants: conv MAC/cycle, depthwise and
fully-connected multipliers; least squares on the relative error). This
module recomputes the predictions from the model files, so a change to the
catalogue, the cost model or the profiler that breaks the calibration shows.

Run it to print the table (``TINYLARGE_DATA`` points at the datasets folder)::

    TINYLARGE_DATA=../shared/datasets python -m tinylarge.hardware.calibration
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from tinylarge.errors import USER_ERROR_EXIT_CODE, DataFileMissingError, TinylargeError
from tinylarge.hardware.catalogue import get_device
from tinylarge.hardware.cost import inference_cost

#: Sub-folder of the data directory holding the MLPerf Tiny reference models.
MODELS_DIR = "mlperf-tiny-models"

#: (benchmark, file, published latency in s, published energy per inference in J)
#: of the MLPerf Tiny v0.5 reference submission on the NUCLEO-L4R5ZI: latencies
#: as summarised in the models folder's SOURCE.md, energies the medians of the
#: energy-mode runs (results/Nucleo-L4R5ZI/*/energy/results.txt).
MLPERF_TINY_REFERENCE: tuple[tuple[str, str, float, float], ...] = (
    ("KWS", "kws_ref_model.tflite", 0.182, 7.374e-3),
    ("VWW", "vww_96_int8.tflite", 0.601, 24.31e-3),
    ("IC", "pretrainedResnet_quant.tflite", 0.704, 29.21e-3),
    ("AD", "ad01_int8.tflite", 0.010, 0.4163e-3),
)

#: Device the reference latencies were measured on.
REFERENCE_DEVICE = "stm32l4r5"

#: Accepted relative error of a prediction.
TOLERANCE = 0.30


@dataclass(frozen=True)
class CalibrationRow:
    """One benchmark: predicted against published latency and energy."""

    benchmark: str
    file: str
    macs: int
    predicted_latency_s: float
    published_latency_s: float
    predicted_energy_j: float
    published_energy_j: float

    @property
    def relative_error(self) -> float:
        """Latency: (predicted - published) / published."""
        return self.predicted_latency_s / self.published_latency_s - 1.0

    @property
    def energy_relative_error(self) -> float:
        """Energy per inference: (predicted - published) / published."""
        return self.predicted_energy_j / self.published_energy_j - 1.0


def default_data_dir() -> Path:
    """``$TINYLARGE_DATA``, else ``~/.cache/tinylarge``."""
    env = os.environ.get("TINYLARGE_DATA")
    return Path(env) if env else Path.home() / ".cache" / "tinylarge"


def mlperf_tiny_calibration(data_dir: Path | None = None) -> list[CalibrationRow]:
    """Predict the MLPerf Tiny reference latencies on the STM32L4R5.

    Raises:
        DataFileMissingError: a reference model file is missing.
    """
    from tinylarge.models.files import profile_file

    folder = (data_dir if data_dir is not None else default_data_dir()) / MODELS_DIR
    device = get_device(REFERENCE_DEVICE)
    rows = []
    for benchmark, name, published, published_energy in MLPERF_TINY_REFERENCE:
        path = folder / name
        if not path.is_file():
            raise DataFileMissingError(
                f"MLPerf Tiny reference model not found: {path} (set TINYLARGE_DATA)"
            )
        profile = profile_file(path)
        cost = inference_cost(profile, device, dtype="int8")
        rows.append(
            CalibrationRow(
                benchmark=benchmark,
                file=name,
                macs=profile.macs,
                predicted_latency_s=cost.latency_s,
                published_latency_s=published,
                predicted_energy_j=cost.energy_j,
                published_energy_j=published_energy,
            )
        )
    return rows


def format_table(rows: list[CalibrationRow]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| benchmark | model file | MACs | predicted ms | published ms | error "
        "| predicted mJ | published mJ | error |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.benchmark} | {r.file} | {r.macs:,} | {r.predicted_latency_s * 1e3:.1f} | "
            f"{r.published_latency_s * 1e3:.0f} | {r.relative_error:+.1%} | "
            f"{r.predicted_energy_j * 1e3:.2f} | {r.published_energy_j * 1e3:.2f} | "
            f"{r.energy_relative_error:+.1%} |"
        )
    return "\n".join(lines)


def main() -> int:
    """Print the calibration table; exit 1 if a prediction is off by more than 30%."""
    try:
        rows = mlperf_tiny_calibration()
    except TinylargeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USER_ERROR_EXIT_CODE
    print(format_table(rows))
    ok = all(
        abs(r.relative_error) <= TOLERANCE and abs(r.energy_relative_error) <= TOLERANCE
        for r in rows
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
