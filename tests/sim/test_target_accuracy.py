"""training.target_accuracy: the engine stops at the first evaluated round that reaches it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.conftest import reproducible, resume_after_kill, small_task

from tinylarge.config import ConfigError, parse_config
from tinylarge.results.rundir import RunDir
from tinylarge.schemes.fedavg import FedAvg
from tinylarge.sim.engine import rounds_to_target, run_experiment

ROUNDS = 12
TARGET = 0.9


def config(target: float | None, **training: Any) -> Any:
    return parse_config(
        small_task(training={"rounds": ROUNDS, "target_accuracy": target, **training})
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Per-round metrics of the same task without a target."""
    out = tmp_path_factory.mktemp("ref") / "run"
    summary = run_experiment(config(None), out=out, progress=False)
    assert summary["target_accuracy"] is None
    assert summary["rounds_to_target"] is None
    return RunDir(out).read_metrics()


def test_rounds_to_target_is_the_first_evaluated_round_at_or_above() -> None:
    rows: list[dict[str, Any]] = [
        {"round": 0, "accuracy": 0.5},
        {"round": 1, "accuracy": None},
        {"round": 2, "accuracy": 0.9},
        {"round": 3, "accuracy": 0.95},
    ]
    assert rounds_to_target(rows, 0.9) == 3
    assert rounds_to_target(rows, 0.5) == 1
    assert rounds_to_target(rows, 0.96) is None
    assert rounds_to_target(rows, None) is None
    assert rounds_to_target([], 0.1) is None


def test_run_stops_at_the_target_with_the_same_numbers(
    tmp_path: Path, reference: list[dict[str, Any]]
) -> None:
    expected = rounds_to_target(reference, TARGET)
    assert expected is not None, "the task must cross the target"
    assert 1 < expected < ROUNDS
    summary = run_experiment(config(TARGET), out=tmp_path / "r", progress=False)
    assert summary["rounds_to_target"] == expected
    assert summary["rounds"] == expected
    assert summary["target_accuracy"] == TARGET
    assert summary["accuracy"] >= TARGET
    rows = RunDir(tmp_path / "r").read_metrics()
    assert len(rows) == expected
    # stopping early changes nothing about the rounds that ran
    assert [r["accuracy"] for r in rows] == [r["accuracy"] for r in reference[:expected]]
    assert all(r["accuracy"] < TARGET for r in rows[:-1])
    assert len(summary["round_latency_s"]) == expected


def test_unreached_target_runs_every_round_and_reports_null(
    tmp_path: Path, reference: list[dict[str, Any]]
) -> None:
    best = max(r["accuracy"] for r in reference)
    target = min(1.0, best + 0.01)
    summary = run_experiment(config(target), out=tmp_path / "r", progress=False)
    assert summary["rounds"] == ROUNDS
    assert summary["rounds_to_target"] is None
    assert summary["target_accuracy"] == target


def test_only_evaluated_rounds_count(tmp_path: Path, reference: list[dict[str, Any]]) -> None:
    summary = run_experiment(
        parse_config(
            small_task(
                training={"rounds": ROUNDS, "target_accuracy": TARGET},
                engine={"eval_every": 3},
            )
        ),
        out=tmp_path / "r",
        progress=False,
    )
    hit = summary["rounds_to_target"]
    assert hit is not None
    assert hit % 3 == 0
    assert reference[hit - 1]["accuracy"] >= TARGET
    assert all(reference[k - 1]["accuracy"] < TARGET for k in range(3, hit, 3))


def test_resume_before_and_after_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config(TARGET)
    full = run_experiment(cfg, out=tmp_path / "full", progress=False)
    resumed = resume_after_kill(monkeypatch, FedAvg, 1, cfg, tmp_path / "killed")
    assert reproducible(resumed) == reproducible(full)

    # killed after the target round's checkpoint but before summary.json: no extra round
    (tmp_path / "full" / "summary.json").unlink()
    again = run_experiment(cfg, out=tmp_path / "full", resume=True, progress=False)
    assert reproducible(again) == reproducible(full)
    assert len(RunDir(tmp_path / "full").read_metrics()) == full["rounds"]


@pytest.mark.parametrize("bad", [0, -0.5, 1.5, "high"])
def test_target_outside_zero_one_is_a_config_error(bad: Any) -> None:
    with pytest.raises(ConfigError, match=r"training\.target_accuracy") as info:
        parse_config(small_task(training={"target_accuracy": bad}))
    assert "\n" not in str(info.value)
