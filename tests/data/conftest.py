"""Fixtures for the data tests: the shared datasets folder and a private feature cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("TINYLARGE_DATA", REPO.parent / "shared" / "datasets")).resolve()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared datasets folder (``$TINYLARGE_DATA`` or ``<repo>/../shared/datasets``)."""
    if not (SHARED / "fashion-mnist").is_dir():
        pytest.fail(f"shared datasets not found at {SHARED}; set TINYLARGE_DATA")
    return SHARED


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One features cache for the whole session, never the user's ~/.cache."""
    return tmp_path_factory.mktemp("features")


@pytest.fixture(autouse=True)
def _data_env(monkeypatch: pytest.MonkeyPatch, shared_dir: Path, feature_cache: Path) -> None:
    """Point every test at the shared data and the session cache, with no system dirs."""
    monkeypatch.setenv("TINYLARGE_DATA", str(shared_dir))
    monkeypatch.setenv("TINYLARGE_CACHE", str(feature_cache))
    monkeypatch.setattr("tinylarge.data.paths.SYSTEM_DATA_DIRS", ())
