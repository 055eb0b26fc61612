"""The cost model against the published MLPerf Tiny results (issue 16).

The catalogue prices a Cortex-M device's int8 inference with its stack's fitted cycles per
MAC (:mod:`tinylarge.hardware.stacks`). These tests hold three things:

- the shipped figures (stack_rates.yaml) are the fit of :mod:`tinylarge.hardware.stack_fit`
  to the published rows, redone here;
- the cost model through the catalogue (``tinylarge profile``'s path) gives the fit's own
  formula, row by row, for every catalogue device with a published row;
- the errors are those docs/devices.md states: on the fitted rows and leave one board out.
"""

from __future__ import annotations

import collections
import os
from pathlib import Path

import pytest

from tinylarge.hardware.calibration import (
    MLPERF_TINY_REFERENCE,
    TOLERANCE,
    mlperf_tiny_calibration,
)
from tinylarge.hardware.catalogue import device_ids, get_device
from tinylarge.hardware.cost import inference_cost
from tinylarge.hardware.mlperf import BENCHMARK_FILES, fit_rows
from tinylarge.hardware.stack_fit import (
    benchmark_features,
    fit,
    leave_one_board_out,
    median_abs,
)
from tinylarge.hardware.stacks import rates, with_stack
from tinylarge.models.files import profile_file

DATA_DIR = Path(
    os.environ.get("TINYLARGE_DATA", Path(__file__).resolve().parents[3] / "shared" / "datasets")
)
MODELS = DATA_DIR / "mlperf-tiny-models"
#: stack_rates.yaml keeps four significant digits.
ROUNDING = 5e-4


@pytest.fixture(scope="module")
def feats():  # type: ignore[no-untyped-def]
    return benchmark_features(DATA_DIR)


@pytest.fixture(scope="module")
def model(feats):  # type: ignore[no-untyped-def]
    return fit(fit_rows(), feats)


@pytest.fixture(scope="module")
def profiles():  # type: ignore[no-untyped-def]
    return {b: profile_file(MODELS / name) for b, name in BENCHMARK_FILES.items()}


def test_shipped_rates_are_the_fit(model) -> None:  # type: ignore[no-untyped-def]
    shipped = rates()
    assert set(shipped.cycles) == set(model.cycles)
    for stack, cycles in model.cycles.items():
        for term, value in cycles.items():
            assert shipped.cycles[stack][term] == pytest.approx(value, rel=ROUNDING), stack
    for core, factor in model.core_factor.items():
        assert shipped.core_factor[core] == pytest.approx(factor, rel=ROUNDING)


def test_profile_path_is_the_fits_formula(model, feats, profiles) -> None:  # type: ignore[no-untyped-def]
    catalogue = set(device_ids())
    checked = 0
    for row in fit_rows():
        if row.device not in catalogue:
            continue  # stm32u385: published, not in the catalogue
        device = with_stack(get_device(row.device), row.stack)
        assert device.clock_hz == row.clock_hz
        cost = inference_cost(profiles[row.benchmark], device, dtype="int8")
        expected = model.predict_s(row.stack, row.core, row.clock_hz, feats[row.benchmark])
        assert cost.latency_s == pytest.approx(expected, rel=2 * ROUNDING), row
        checked += 1
    assert checked >= 170


def test_errors_on_the_fitted_rows_are_the_documented_ones(model, feats) -> None:  # type: ignore[no-untyped-def]
    # docs/devices.md: median 4.9%, worst 48.7% (RA8D1 IC), 144 of 184 rows within 15%;
    # per (device, stack) the median error is at most 23.3% (plumerai 2023.05 on the
    # STM32L4R5) and at most 15% for 42 of the 46 pairs.
    errors = {}
    for row in fit_rows():
        predicted = model.predict_s(row.stack, row.core, row.clock_hz, feats[row.benchmark])
        errors[(row.device, row.stack, row.benchmark)] = predicted / row.latency_s - 1
    assert median_abs(list(errors.values())) == pytest.approx(0.049, abs=0.005)
    assert max(abs(e) for e in errors.values()) <= 0.49
    assert sum(abs(e) <= 0.15 for e in errors.values()) == 144
    pairs = collections.defaultdict(list)
    for (device, stack, _), e in errors.items():
        pairs[(device, stack)].append(e)
    medians = {k: median_abs(v) for k, v in pairs.items()}
    assert max(medians.values()) <= 0.235
    assert sum(m <= 0.15 for m in medians.values()) == 42


def test_leave_one_board_out_within_20_percent_per_stack(feats) -> None:  # type: ignore[no-untyped-def]
    rows = fit_rows()
    counted = [p for p in leave_one_board_out(rows, feats) if p.other_boards >= 2]
    by_stack = collections.defaultdict(list)
    for p in counted:
        by_stack[p.row.stack].append(p.error)
    assert len(by_stack) >= 9
    for stack, errors in by_stack.items():
        assert median_abs(errors) <= 0.20, stack
    assert median_abs([p.error for p in counted]) <= 0.11  # docs: 9.9%


def test_reference_rows_through_the_catalogue() -> None:
    rows = mlperf_tiny_calibration(DATA_DIR)
    assert [r.benchmark for r in rows] == [b for b, *_ in MLPERF_TINY_REFERENCE]
    for row in rows:
        assert abs(row.relative_error) <= TOLERANCE, row
        assert abs(row.energy_relative_error) <= TOLERANCE, row
    # energy is latency x the fitted power of the reference energy runs (40.6 mW); the
    # latencies are the single-board fit's of before (+7.3, -8.8, +0.1, -0.1%) within 2.3%
    assert get_device("stm32l4r5").active_power_w == pytest.approx(0.0406, rel=0.01)
