"""The published MLPerf Tiny results, as rows tinylarge fits its stack cost model to.

``mlperf_tiny_results.csv`` (package data next to this module) holds one row per
(round, submitter, system, benchmark) of the closed division of MLPerf Tiny v0.5 to
v1.3: the board and its catalogue id, the core class and clock, the inference stack,
the median throughput of the performance run and, where published, the median energy
per inference with the energy run's throughput. Every row names its source: the
repository (``mlcommons/tiny_results_vX.Y``), the commit and the paths of the result
and system-description files. The rows were extracted by ``bench/mlperf_tiny_extract.py``.

:func:`fit_rows` selects the rows the model is fitted to: int8, a Cortex-M core, a
named stack, no build variant, and one row per (device, stack, benchmark) (the latest
round's). Benchmarks map onto the reference model files in
``mlperf-tiny-models`` (:data:`BENCHMARK_FILES`).
"""

from __future__ import annotations

import csv
import functools
import io
from dataclasses import dataclass
from importlib import resources

#: Package-data file of the published rows.
RESULTS_FILE = "mlperf_tiny_results.csv"
#: Benchmark -> the reference model file it runs (MLPerf Tiny closed division).
BENCHMARK_FILES = {
    "kws": "kws_ref_model.tflite",
    "vww": "vww_96_int8.tflite",
    "ic": "pretrainedResnet_quant.tflite",
    "ad": "ad01_int8.tflite",
}
#: Core classes the stack model knows (others are listed in the data, not modelled).
CORES = ("m0plus", "m4f", "m7", "m33", "m85")


@dataclass(frozen=True)
class PublishedRow:
    """One published MLPerf Tiny result (see the module docstring for the columns)."""

    round: str
    submitter: str
    system: str
    board: str
    device: str
    core: str
    clock_hz: float
    stack: str
    software: str
    variant: str
    precision: str
    benchmark: str
    latency_s: float
    energy_j: float | None
    energy_latency_s: float | None
    source: str

    @property
    def power_w(self) -> float | None:
        """Mean power of the energy run: energy per inference x its throughput (the
        performance run's where the energy run does not report one, as in v1.3)."""
        if self.energy_j is None:
            return None
        return self.energy_j / (self.energy_latency_s or self.latency_s)


def _float(text: str) -> float | None:
    return float(text) if text.strip() else None


@functools.cache
def published_rows() -> tuple[PublishedRow, ...]:
    """Every row of the data file, in file order."""
    text = resources.files("tinylarge.hardware").joinpath(RESULTS_FILE).read_text("utf-8")
    rows = []
    for r in csv.DictReader(io.StringIO(text)):
        throughput = float(r["throughput_inf_s"])
        energy_uj = _float(r["energy_uj"])
        energy_tp = _float(r["energy_throughput_inf_s"])
        clock = _float(r["clock_mhz"])
        rows.append(
            PublishedRow(
                round=r["round"],
                submitter=r["submitter"],
                system=r["system"],
                board=r["board"],
                device=r["device"],
                core=r["core"],
                clock_hz=clock * 1e6 if clock else 0.0,
                stack=r["stack"],
                software=r["software"],
                variant=r["variant"],
                precision=r["precision"],
                benchmark=r["benchmark"],
                latency_s=1.0 / throughput,
                energy_j=energy_uj * 1e-6 if energy_uj is not None else None,
                energy_latency_s=1.0 / energy_tp if energy_tp else None,
                source=f"{r['source_repo']}/blob/{r['source_commit']}/{r['performance_path']}",
            )
        )
    return tuple(rows)


#: Stacks with an accelerator or an unpublished engine: in the data, not in the model.
NOT_MODELLED_STACKS = frozenset({"other", "stedge-ai-internal"})


def fit_rows() -> tuple[PublishedRow, ...]:
    """The rows the stack model is fitted to, one per (device, stack, benchmark).

    int8 reference models on a Cortex-M core of :data:`CORES`, a named stack, the
    submission's default build (no ``max_performance``/``min_ram`` variant); where several
    rounds or submitters published the same (device, stack, benchmark), the latest round's
    row (then the first in file order).
    """
    chosen: dict[tuple[str, str, str], PublishedRow] = {}
    for row in published_rows():
        if (
            row.precision != "int8"
            or row.core not in CORES
            or row.stack in NOT_MODELLED_STACKS
            or row.variant
            or row.benchmark not in BENCHMARK_FILES
            or not row.device
        ):
            continue
        key = (row.device, row.stack, row.benchmark)
        old = chosen.get(key)
        if old is None or _round_key(row.round) > _round_key(old.round):
            chosen[key] = row
    return tuple(sorted(chosen.values(), key=lambda r: (r.stack, r.device, r.benchmark)))


def _round_key(name: str) -> tuple[int, ...]:
    return tuple(int(p) for p in name.lstrip("v").split("."))
