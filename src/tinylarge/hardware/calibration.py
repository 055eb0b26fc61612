"""Calibration of the cost model against the MLPerf Tiny reference results.

The MLPerf Tiny v0.5 reference submission ran the four int8 reference models
on an STM32L4R5 (NUCLEO-L4R5ZI, Cortex-M4F at 120 MHz) with TensorFlow Lite
for Microcontrollers v2.3.1 and CMSIS-NN kernels, and published their
latencies (https://github.com/mlcommons/tiny_results_v0.5, closed/reference).
These are the ``tflm-reference`` rows of the inference-stack model
(:mod:`tinylarge.hardware.stack_fit`, fitted to every published MLPerf Tiny row;
``bench/calibration.py`` prints all of them). This module recomputes the reference
predictions through the catalogue and the cost model from the model files, so a change
to the catalogue, the cost model or the profiler that breaks them shows.

The model files are found like every dataset file (:mod:`tinylarge.data.paths`:
``data_dir``, else every root of ``TINYLARGE_DATA``, else ``~/.cache/tinylarge``,
then ``/usr/share/datasets``; in each, the ``mlperf-tiny-models`` subfolder
first) and checked against their SHA-256. Run it to print the table::

    TINYLARGE_DATA=../shared/datasets python -m tinylarge.hardware.calibration
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from tinylarge.data.paths import DataFile, find_file
from tinylarge.errors import USER_ERROR_EXIT_CODE, TinylargeError
from tinylarge.hardware.catalogue import get_device
from tinylarge.hardware.cost import inference_cost

#: Sub-folder of a data root holding the MLPerf Tiny reference models.
MODELS_DIR = "mlperf-tiny-models"
#: Where MLCommons publishes them (benchmark/training/*/trained_models/).
MODELS_URL = "https://github.com/mlcommons/tiny/tree/master/benchmark/training"
#: SHA-256 of each reference model file (the shared data's mlperf-tiny-models/SOURCE.md).
MODEL_DIGESTS = {
    "kws_ref_model.tflite": "aeea436800704fce17b17292e4412630ad856e9d777c044c64ef748a880bd0ae",
    "vww_96_int8.tflite": "597a384c8c2c8a1276f04702f25013b7838f2f814f1ca7c174d295b73e3d6b7b",
    "pretrainedResnet_quant.tflite": (
        "3c002613d1b2475eb51dd78dfb85a546c8ae658dee71cf6ade43b022fe205415"
    ),
    "ad01_int8.tflite": "87cf24194ef93d1d9b11a591d805526b98008e351655d29883c825c9c106ba24",
}

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

#: Accepted relative error of a prediction (``main`` exits 1 beyond it): the joint fit over
#: all stacks leaves residuals of +0.4% (AD), +0.6% (IC), +7.6% (KWS) and -8.5% (VWW) on
#: these rows (docs/devices.md), and energies add the spread (within 2.3%) of each run's
#: measured power around the fitted 40.6 mW.
TOLERANCE = 0.10


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


def model_file(name: str) -> DataFile:
    """The published reference model ``name``, as :func:`~tinylarge.data.paths.find_file`
    looks for it."""
    return DataFile(
        dataset=MODELS_DIR,
        filename=name,
        url=MODELS_URL,
        digests=(f"sha256:{MODEL_DIGESTS[name]}",),
    )


def mlperf_tiny_calibration(
    data_dir: str | os.PathLike[str] | None = None,
) -> list[CalibrationRow]:
    """Predict the MLPerf Tiny reference latencies on the STM32L4R5.

    Raises:
        DataFileMissingError: a reference model file is missing (one line: where it was
            looked for and where it is published).
        ChecksumMismatchError: a model file is not the published one.
    """
    from tinylarge.models.files import profile_file

    device = get_device(REFERENCE_DEVICE)
    rows = []
    for benchmark, name, published, published_energy in MLPERF_TINY_REFERENCE:
        path, _ = find_file(model_file(name), data_dir=data_dir)
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
    """Print the calibration table; exit 1 if a prediction is off by more than 10%."""
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
