from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import small_task

from tinylarge.cli.app import main
from tinylarge.config import parse_config
from tinylarge.sim.engine import run_experiment


def test_report_quotes_the_run_and_embeds_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    run_experiment(parse_config(small_task(training={"rounds": 2})), out=out, progress=False)
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert f"{summary['accuracy']:.4g}" in page
    assert page.count("data:image/png;base64,") == 4
    assert "stm32h743" in page  # the device-fit and per-profile tables


def test_report_of_an_unfinished_run_is_a_user_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    run_experiment(parse_config(small_task(training={"rounds": 1})), out=out, progress=False)
    (out / "summary.json").unlink()
    assert main(["report", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2
