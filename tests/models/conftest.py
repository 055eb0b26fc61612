"""Fixtures for the model tests: the MLPerf Tiny reference models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("TINYLARGE_DATA", REPO.parent / "shared" / "datasets"))
MLPERF = DATA / "mlperf-tiny-models"


@pytest.fixture(scope="session")
def mlperf_dir() -> Path:
    if not MLPERF.is_dir():
        pytest.fail(f"MLPerf Tiny models not found at {MLPERF}; set TINYLARGE_DATA")
    return MLPERF
