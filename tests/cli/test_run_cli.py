"""The run, compare and validate commands, end to end through main()."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import small_task

from tinylarge.cli.app import main

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, cfg: dict[str, Any], name: str = "cfg.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_run_json_prints_the_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path, small_task(training={"rounds": 2}))
    out = tmp_path / "run"
    assert main(["run", cfg, "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary == json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == 2
    assert summary["scheme"] == "fedavg"


def test_run_prints_the_schemes_figures_from_the_runs_ledger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tinylarge.sim.ledger import Ledger

    cfg = small_task(
        training={"rounds": 2},
        model={"name": "cnn-tiny", "options": {"width": 4}},
        scheme={"name": "sl", "options": {"cut": 2}},
    )
    cfg["topology"]["devices"] = [{"profile": "rpi4", "count": 2, "link": "wifi6"}]
    out = tmp_path / "run"
    reads: list[Path] = []
    real = Ledger.from_csv.__func__  # type: ignore[attr-defined]

    def counted(cls: type[Ledger], path: Path) -> Ledger:
        reads.append(path)
        return real(cls, path)  # type: ignore[no-any-return]

    monkeypatch.setattr(Ledger, "from_csv", classmethod(counted))
    assert main(["run", write(tmp_path, cfg), "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    ledger = real(Ledger, out / "ledger.csv")
    up = ledger.bytes_up(what="activations", profile="rpi4") // 2
    assert up > 0
    cut_table = text[text.index("Cut per device profile") :].splitlines()
    row = next(line for line in cut_table if line.lstrip("│| ").startswith("rpi4"))
    assert f"{up:,}" in row or str(up) in row  # the cut table's smashed bytes, from the ledger
    assert (out / "report.html").is_file()
    assert reads == [out / "ledger.csv"]  # read once, for the report and the printed figures
    reads.clear()
    assert main(["run", write(tmp_path, cfg), "--out", str(tmp_path / "j"), "--json",
                 "--no-report"]) == 0  # fmt: skip
    assert reads == []  # neither a report nor printed figures: no reason to read it


def test_run_human_output_and_refusal_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path, small_task(training={"rounds": 1}))
    out = tmp_path / "run"
    assert main(["run", cfg, "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "accuracy" in text
    assert "where the energy and the bytes went" in text
    assert main(["run", cfg, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "already exists" in err
    assert "--resume" in err


def test_run_human_output_tells_the_rounds_to_the_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reached = write(tmp_path, small_task(training={"rounds": 4, "target_accuracy": 0.5}), "a.yaml")
    assert main(["run", reached, "--out", str(tmp_path / "a"), "--quiet"]) == 0
    text = capsys.readouterr().out
    rounds = json.loads((tmp_path / "a" / "summary.json").read_text())["rounds_to_target"]
    assert rounds is not None
    assert "rounds to 50.00%" in text
    missed = write(tmp_path, small_task(training={"rounds": 1, "target_accuracy": 1.0}), "b.yaml")
    assert main(["run", missed, "--out", str(tmp_path / "b"), "--quiet"]) == 0
    assert "not reached in 1 rounds" in capsys.readouterr().out


def test_resume_from_the_cli_completes_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path, small_task(training={"rounds": 2}))
    out = tmp_path / "run"
    assert main(["run", cfg, "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    (out / "summary.json").unlink()  # as if killed after its last checkpoint
    assert main(["run", cfg, "--out", str(out), "--resume", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rounds"] == 2
    missing = tmp_path / "nothing"
    assert main(["run", cfg, "--out", str(missing), "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("patch", "field", "allowed"),
    [
        ({"topology": {"devices": [{"profile": "stm32f4", "count": 1}]}}, "profile", "stm32f446re"),
        ({"topology": {"devices": [{"profile": "rpi4", "link": "5g"}]}}, "link", "nr-sub6"),
        ({"scheme": {"name": "fedsgd"}}, "scheme.name", "fedavg"),
        ({"task": {"dataset": "cifar"}}, "task.dataset", "fashion-mnist"),
        ({"training": {"rounds": "ten"}}, "training.rounds", "integer"),
        ({"training": {"lr": -1}}, "training.lr", "greater than 0"),
        ({"trainig": {"rounds": 3}}, "trainig", "unknown field"),
        ({"scheme": {"name": "fedprox", "options": {"mu": "big"}}}, "scheme.options.mu", "number"),
        ({"scheme": {"name": "fedavg", "options": {"mu": 1}}}, "scheme.options.mu", "unknown"),
    ],
)
def test_bad_config_is_one_line_per_problem_and_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    patch: dict[str, Any],
    field: str,
    allowed: str,
) -> None:
    cfg = write(tmp_path, small_task(**patch))
    assert main(["validate", cfg]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = next(ln for ln in err.splitlines() if field in ln)
    assert allowed in line, line
    assert main(["run", cfg, "--out", str(tmp_path / "r")]) == 2
    assert not (tmp_path / "r").exists()


def test_validate_reports_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path, small_task(training={"rounds": 0, "batch_size": 0}, seed="x"))
    assert main(["validate", cfg]) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 3
    assert all(ln.startswith("error: ") or ln.startswith(cfg) for ln in lines)


def test_validate_ok_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path, small_task())
    assert main(["validate", cfg]) == 0
    assert "ok" in capsys.readouterr().out
    assert main(["validate", cfg, "--json"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["engine"]["backend"] == "sequential"  # defaults filled in


def test_missing_or_broken_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: [unclosed\n")
    assert main(["run", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_compare_runs_each_scheme_and_prints_one_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path, small_task(training={"rounds": 2}))
    args = ["compare", cfg, "--schemes", "fedavg,fedprox", "--out", str(tmp_path / "c")]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "fedavg" in table
    assert "fedprox" in table
    assert main([*args[:-1], str(tmp_path / "j"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["scheme"] for r in rows] == ["fedavg", "fedprox"]


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", "a.yaml", "--backend", "mpi"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "sequential" in err
    assert "ray" in err


def test_examples_validate() -> None:
    for path in sorted((REPO / "examples").glob("*.yaml")):
        assert main(["validate", str(path)]) == 0, path
