"""``tinylarge plan``: the scheme answers the request the command line built.

A stand-in scheme echoes the :class:`~tinylarge.schemes.base.PlanRequest` it is
given, so the flags are checked apart from any planner; a scheme without a
plan answers with one line; flags no plan can use are refused before the run's
context (and PyTorch) loads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import small_task

from tinylarge.cli.app import main
from tinylarge.schemes import SCHEMES
from tinylarge.schemes.base import Plan, PlanRequest, Scheme
from tinylarge.schemes.options import OPTIONS, NoOptions
from tinylarge.sim.rounds import RoundReport

REPO = Path(__file__).resolve().parents[2]


class EchoPlan(Scheme[NoOptions]):
    """A scheme whose plan is the request it was asked, and which sees its context."""

    name = "echo-plan"

    def setup(self) -> None:
        raise AssertionError("plan must not set the scheme up")

    def run_round(self, rnd: int) -> RoundReport:
        raise AssertionError("plan must not run rounds")

    def evaluate(self) -> dict[str, float | None]:
        return {}

    def state(self) -> dict[str, Any]:
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        return None

    def plan(self, request: PlanRequest) -> Plan:
        row = {
            "device": request.device,
            "link": request.link,
            "distance_m": request.distance_m,
            "sweep": list(request.sweep_distances_m),
            "objective": request.objective,
            "devices": len(self.ctx.clients),
            "chosen": True,
        }
        return Plan(title="echo", columns=tuple(row), rows=(row,), notes=("the note",))


@pytest.fixture
def echo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A config of the echo scheme, registered for the test only."""
    SCHEMES.names()  # load the registry before adding to it
    monkeypatch.setitem(SCHEMES._items, EchoPlan.name, EchoPlan)
    monkeypatch.setitem(OPTIONS._items, EchoPlan.name, NoOptions)
    path = tmp_path / "echo.yaml"
    path.write_text(yaml.safe_dump(small_task(scheme={"name": EchoPlan.name})))
    return str(path)


def test_the_request_reaches_the_scheme(echo: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["plan", echo, "--device", "rpi4", "--link", "wifi6", "--distance-m", "12.5"]
    argv += ["--sweep-distance-m", "5, 50,500", "--objective", "energy", "--json"]
    assert main(argv) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row == {
        "device": "rpi4",
        "link": "wifi6",
        "distance_m": 12.5,
        "sweep": [5.0, 50.0, 500.0],
        "objective": "energy",
        "devices": 4,  # the run's context: small_task's 2 + 2 devices
        "chosen": True,
    }


def test_defaults_and_the_table_for_people(echo: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", echo]) == 0
    out = capsys.readouterr().out
    assert "echo" in out
    assert "the note" in out


def test_a_scheme_without_a_plan_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "fedavg.yaml"
    path.write_text(yaml.safe_dump(small_task()))
    assert main(["plan", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "scheme 'fedavg' has nothing to plan; schemes with a plan:" in err
    with_plan = sorted(n for n, c in SCHEMES.items() if c.has_plan())
    assert err.endswith(", ".join(with_plan))


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--distance-m", "0"], "--distance-m 0: distances must be > 0"),
        (["--distance-m", "nan"], "--distance-m nan"),
        (["--distance-m", "1e30"], "<= 1e+07 m"),
        (["--sweep-distance-m", "10,x"], "expected comma-separated metres"),
        (["--sweep-distance-m", "10,-1"], "--sweep-distance-m -1"),
        (["--sweep-distance-m", "inf"], "--sweep-distance-m inf"),
        (["--sweep-distance-m", ","], "distances must be > 0"),
        (["--device", "stm32f999"], "unknown device 'stm32f999'; known:"),
        (["--link", "5g"], "unknown link preset '5g'; known:"),
    ],
)
def test_bad_flags_are_one_line(
    echo: str, capsys: pytest.CaptureFixture[str], flags: list[str], fragment: str
) -> None:
    assert main(["plan", echo, *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert fragment in err


def test_a_bad_config_is_refused_before_planning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(small_task(scheme={"name": "sl", "options": {"cut": -3}})))
    assert main(["plan", str(path)]) == 2
    assert "scheme.options.cut" in capsys.readouterr().err


def test_a_split_learning_example_plans(capsys: pytest.CaptureFixture[str]) -> None:
    config = str(REPO / "examples" / "splitfed_mcu.yaml")
    assert main(["plan", config, "--device", "stm32f746", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows
    assert {r["device"] for r in rows} == {"stm32f746"}
    assert sum(bool(r["chosen"]) for r in rows) == 1


@pytest.mark.parametrize(
    ("scheme", "options"),
    [("split-inference", {}), ("fsl", {})],
)
def test_a_sweep_leaves_out_only_the_groups_a_distance_is_invalid_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], scheme: str, options: dict[str, Any]
) -> None:
    """Wi-Fi's indoor channel (TR 38.901 InH) stops at 150 m; BLE's does not: a sweep to
    300 m plans the BLE group there and names the Wi-Fi group it left out."""
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(small_task(scheme={"name": scheme, "options": options})))
    assert main(["plan", str(path), "--sweep-distance-m", "10,300"]) == 0
    out = capsys.readouterr().out
    assert "left out of the sweep: rpi4" in out
    assert "300 m" in out
    assert "150 m" in out  # the reason: the link model's range
    assert main(["plan", str(path), "--sweep-distance-m", "10,300", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    at_300 = {r["device"] for r in rows if r.get("distance_m") == 300}
    assert at_300 == {"stm32h743"}
    assert {r["device"] for r in rows if r.get("distance_m") == 10} == {"rpi4", "stm32h743"}
    # a single distance outside the range is still the user's error, in one line
    assert main(["plan", str(path), "--distance-m", "300", "--device", "rpi4"]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
