"""``tinylarge sweep`` end to end on a 2x2 grid of one-round digits runs: a killed sweep
resumes to the same table, invalid cells are reported and skipped, the recommendation
holds against the table, and ``--report`` rebuilds from the table alone."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import kill_in_round, small_task

from tinylarge.cli import sweep as sweep_cli
from tinylarge.cli.app import build_parser, main
from tinylarge.schemes.fedprox import FedProx

GRID = ["--grid", "scheme.name=fedavg,fedprox", "--grid", "topology.devices.1.distance_m=10,300"]
#: What differs between two runs of one config (how long it took, where it ran).
NOT_COMPUTED = ("wall_time_s", "wall_time_s_std", "backend")


def config(tmp_path: Path, **sweep: Any) -> str:
    cfg = small_task(training={"rounds": 2, "lr": 0.2}, task={"subset": 400})
    if sweep:
        cfg["sweep"] = sweep
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def table(out: Path, name: str = "table.csv") -> list[dict[str, str]]:
    with (out / name).open(newline="") as fh:
        return [{k: v for k, v in r.items() if k not in NOT_COMPUTED} for r in csv.DictReader(fh)]


#: The recommendation's budget in these tests, joules per device a round.
BUDGET = 0.05


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 2x2 sweep run straight through, two runs at a time (the process pool)."""
    tmp = tmp_path_factory.mktemp("sweep")
    out = tmp / "whole"
    cfg = config(tmp, objective={"energy_budget_j": BUDGET})
    assert main(["sweep", cfg, *GRID, "--out", str(out), "--jobs", "2", "--quiet"]) == 0
    return out


def test_a_killed_sweep_resumes_to_the_same_table(
    whole: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = config(tmp_path, objective={"energy_budget_j": BUDGET})
    killed = tmp_path / "killed"
    args = ["sweep", cfg, *GRID, "--out", str(killed), "--jobs", "1"]
    # killed in the second round of the first FedProx cell: the FedAvg cells are finished,
    # that cell has a checkpoint, the last has not started
    kill_in_round(monkeypatch, FedProx, 1, lambda: sweep_cli.run(build_parser().parse_args(args)))
    cells = sorted((killed / "cells").glob("*/seed-3"))
    assert [(c / "summary.json").is_file() for c in cells] == [True, True, False]
    assert (cells[2] / "checkpoint.npz").is_file()
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert err.count("(finished before)") == 2  # skipped, not run again
    assert table(killed) == table(whole)
    assert table(killed, "runs.csv") == table(whole, "runs.csv")
    # a cell lost entirely (its directory deleted) is run again to the same row
    shutil.rmtree(next((killed / "cells").glob("fedprox_300-*")))
    assert main([*args, "--quiet"]) == 0
    assert table(killed) == table(whole)
    rows = table(whole)
    assert [(r["scheme.name"], r["topology.devices.1.distance_m"]) for r in rows] == [
        ("fedavg", "10"), ("fedavg", "300"), ("fedprox", "10"), ("fedprox", "300")]  # fmt: skip
    assert {"accuracy", "accuracy_std", "device_energy_j", "per_profile.stm32h743.radio_j",
            "fits.rpi4", "round_latency_s", "n_seeds"} <= set(rows[0])  # fmt: skip
    meta = json.loads((whole / "sweep.json").read_text())
    assert (meta["invalid"], meta["failed"], meta["runs"]) == ([], [], 4)


def test_seeds_are_aggregated_to_mean_and_std(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    out = tmp_path / "out"
    assert main(["sweep", cfg, "--grid", "scheme.name=fedavg", "--seeds", "2", "--out", str(out),
                 "--jobs", "1", "--quiet"]) == 0  # fmt: skip
    runs = table(out, "runs.csv")
    [cell] = table(out)
    accs = [float(r["accuracy"]) for r in runs]
    assert [r["seed"] for r in runs] == ["3", "4"]
    assert cell["n_seeds"] == "2"
    assert float(cell["accuracy"]) == pytest.approx(sum(accs) / 2)
    assert float(cell["accuracy_std"]) == pytest.approx(abs(accs[0] - accs[1]) / 2**0.5)


def test_invalid_cells_are_reported_and_the_rest_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(tmp_path)
    out = tmp_path / "out"
    code = main(["sweep", cfg, "--grid", "scheme.name=fedavg,nope", "--grid",
                 "topology.devices.0.distance_m=10,-1", "--out", str(out), "--jobs", "1",
                 "--quiet"])  # fmt: skip
    assert code == 0
    skipped = [line for line in capsys.readouterr().err.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 3
    assert any("scheme.name=nope" in s and "unknown scheme 'nope'" in s for s in skipped)
    assert any("distance_m=-1" in s and "greater than 0" in s for s in skipped)
    assert [r["scheme.name"] for r in table(out)] == ["fedavg"]
    assert len(json.loads((out / "sweep.json").read_text())["invalid"]) == 3
    assert "Invalid cells (skipped)" in (out / "report.html").read_text()


def test_a_grid_without_a_valid_cell_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(tmp_path)
    out = tmp_path / "out"
    code = main(["sweep", cfg, "--grid", "scheme.name=nope,fedavg", "--grid",
                 "scheme.options.mu=0.1", "--out", str(out)])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3
    assert err[-1].startswith("error: none of the 2 cells")
    assert "scheme.options.mu=0.1" in err[1]
    assert "mu" in err[1].split(":", 1)[1]
    assert not out.exists()
    assert main(["sweep", cfg, "--grid", "scheme.name"]) == 2  # no '='
    assert main(["sweep", cfg]) == 2  # nothing to sweep
    assert "nothing to sweep" in capsys.readouterr().err


def _f(v: str) -> float:
    return float(v)


def test_the_recommendation_holds_against_the_table(whole: Path) -> None:
    """Each recommended cell is within the budget for its profile, and no cell where that
    profile took part on that link within the budget is more accurate (read from the CSV
    files, the slow obvious way)."""
    budget, out = BUDGET, whole
    with (out / "table.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    with (out / "recommendations.csv").open(newline="") as fh:
        recs = list(csv.DictReader(fh))
    assert {(r["profile"], r["link"]) for r in recs} == {("rpi4", "wifi6"),
                                                          ("stm32h743", "ble-2m")}  # fmt: skip

    def per_round(row: dict[str, str], pid: str) -> float:
        p = f"per_profile.{pid}."
        joules = _f(row[p + "compute_j"]) + _f(row[p + "radio_j"])
        return joules / _f(row[p + "devices"]) / _f(row["rounds"])

    for rec in recs:
        pid, link = rec["profile"], rec["link"]
        eligible = [
            r for r in rows
            if r[f"per_profile.{pid}.link"] == link and not r.get(f"excluded.{pid}.count")
            and r["accuracy"] and per_round(r, pid) <= budget
        ]  # fmt: skip
        if not eligible:
            assert rec["cell"] == ""
            continue
        chosen = next(r for r in rows if r["cell"] == rec["cell"])
        assert chosen in eligible
        assert _f(chosen["accuracy"]) == max(_f(r["accuracy"]) for r in eligible)
        assert _f(rec["energy_per_round_j"]) == pytest.approx(per_round(chosen, pid))
        assert rec["within_budget"] == str(len(eligible))


def test_report_rebuilds_from_the_table_with_another_budget(
    whole: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "copy"  # the report needs only the table and sweep.json
    out.mkdir()
    for name in ("table.csv", "sweep.json"):
        shutil.copy(whole / name, out / name)
    assert main(["sweep", "--report", str(out)]) == 0  # recommendations.csv is derived too
    with (
        (out / "recommendations.csv").open(newline="") as fh,
        (whole / "recommendations.csv").open(newline="") as ref,
    ):
        assert list(csv.DictReader(fh)) == list(csv.DictReader(ref))
    capsys.readouterr()
    assert main(["sweep", "--report", str(out), "--energy-budget", "1e-9", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert len(printed["table"]) == 4
    recs = {(r["profile"], r["link"]): r for r in printed["recommendations"]}
    # the Pis on Wi-Fi always spend; only a cell where the MCUs were out of reach (BLE at
    # 300 m: every device in outage, nothing computed or sent) is that cheap for them
    assert recs[("rpi4", "wifi6")]["cell"] is None
    assert "keeps a device within 1e-09 J" in recs[("rpi4", "wifi6")]["why"]
    mcu = recs[("stm32h743", "ble-2m")]
    assert mcu["energy_per_round_j"] == 0.0
    assert "300" in mcu["recommended"]
    html = (out / "report.html").read_text()
    assert html.count("<img class='plot'") == 6
    assert "at most 1e-09 J a round" in html
    assert main(["sweep", "--report", str(tmp_path)]) == 2  # not a sweep directory
    assert "not a finished sweep directory" in capsys.readouterr().err


def test_validate_checks_every_cell_of_the_sweep(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(tmp_path, grid={"scheme.name": ["fedavg", "nope"]})
    assert main(["validate", cfg]) == 0
    out, err = capsys.readouterr()
    assert "sweep: 1 valid cells, 1 invalid" in out
    assert "sweep cell scheme.name=nope: scheme.name: unknown scheme 'nope'" in err
    cfg = config(tmp_path, grid={"topology.devices.0.distance_m": [-1, -2]})
    assert main(["validate", cfg]) == 2
    err = capsys.readouterr().err
    assert err.count("greater than 0") == 2
    assert "sweep: 0 valid cells, 2 invalid" in err
