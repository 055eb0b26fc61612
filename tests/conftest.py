"""Shared fixtures: the real datasets folder and a small federated task."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TINYLARGE_DATA", REPO.parent / "shared" / "datasets"))
# Tests read the real datasets from the shared folder, also when pytest runs without make.
os.environ.setdefault("TINYLARGE_DATA", str(SHARED_DATA))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared datasets not found at {SHARED_DATA}; set TINYLARGE_DATA")
    return SHARED_DATA


def small_task(**overrides: Any) -> dict[str, Any]:
    """A federated task on the embedded digits set that trains in about a second."""
    cfg: dict[str, Any] = {
        "name": "small",
        "seed": 3,
        "task": {"dataset": "digits", "partition": {"name": "iid"}},
        "model": {"name": "mlp", "options": {"hidden": 32}},
        "topology": {
            "server": {"profile": "jetson-orin-nano"},
            "devices": [
                {"profile": "rpi4", "count": 2, "link": "wifi6"},
                {"profile": "stm32h743", "count": 2, "link": "ble-2m"},
            ],
        },
        "training": {"rounds": 4, "local_epochs": 1, "batch_size": 16, "lr": 0.1},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def kill_in_round(
    monkeypatch: pytest.MonkeyPatch, scheme: type[Any], rnd: int, start: Callable[[], object]
) -> None:
    """Call ``start()`` with ``scheme.run_round`` interrupted in round ``rnd``, as a kill would
    (``KeyboardInterrupt``, expected), then put ``run_round`` back for the resume."""
    original = scheme.run_round

    def dies(self: Any, r: int) -> Any:
        if r == rnd:
            raise KeyboardInterrupt
        return original(self, r)

    monkeypatch.setattr(scheme, "run_round", dies)
    with pytest.raises(KeyboardInterrupt):
        start()
    monkeypatch.setattr(scheme, "run_round", original)


def resume_after_kill(
    monkeypatch: pytest.MonkeyPatch, scheme: type[Any], rnd: int, config: Any, out: Path
) -> dict[str, Any]:
    """Run ``config`` into ``out`` killed in round ``rnd`` of ``scheme`` (:func:`kill_in_round`),
    then resume it there; the resumed run's summary."""
    from tinylarge.sim.engine import run_experiment

    kill_in_round(monkeypatch, scheme, rnd, lambda: run_experiment(config, out=out, progress=False))
    return run_experiment(config, out=out, resume=True, progress=False)


def reproducible(summary: dict[str, Any]) -> dict[str, Any]:
    """A summary without what may differ between identical runs (wall time, backend)."""
    return {k: v for k, v in summary.items() if k not in ("wall_time_s", "backend")}
