"""``tinylarge privacy``, end to end through main(): figures, solving, refusals, no PyTorch.

The figures are checked against the library in tests/security/test_accounting.py (where
they are checked against the bounds written out); here, that the flags reach it and the
output says what was computed.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.cli.test_startup import run_fresh

from tinylarge.cli.app import main

ROW = ["--sampling-rate", "0.004", "--steps", "3750", "--delta", "1e-5"]
Z = ["--noise-multiplier", "1.3"]


def privacy(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``tinylarge privacy ARGV`` (argparse errors included)."""
    try:
        code = main(["privacy", *argv])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def as_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code, out, err = privacy([*argv, "--json"], capsys)
    assert (code, err) == (0, "")
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.mark.parametrize(("accountant", "printed"), [("rdp", "0.92"), ("pld", "0.83")])
def test_the_issue_row(accountant: str, printed: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--noise-multiplier", "1.3", *ROW, "--accountant", accountant]
    code, out, _ = privacy(argv, capsys)
    assert code == 0
    assert f"│ {printed} " in out  # two decimals in the table
    figures = as_json(argv, capsys)
    assert round(figures["epsilon"], 2) == float(printed)
    assert figures["epsilon"] != float(printed)  # full precision in --json
    assert figures | {"epsilon": None} == {
        "epsilon": None,
        "delta": 1e-5,
        "noise_multiplier": 1.3,
        "target_epsilon": None,
        "sampling_rate": 0.004,
        "steps": 3750,
        "epochs": None,
        "accountant": accountant,
        "sampling": "poisson",
        "neighbouring": "add-or-remove-one",
        "population": None,
        "sample_size": None,
    }


def test_epochs_count_steps_as_tf_privacy(capsys: pytest.CaptureFixture[str]) -> None:
    by_steps = as_json(["--noise-multiplier", "1.3", *ROW], capsys)
    argv = ["--noise-multiplier", "1.3", "--sampling-rate", "0.004", "--epochs", "15"]
    by_epochs = as_json([*argv, "--delta", "1e-5"], capsys)
    assert by_epochs["steps"] == 3750
    assert by_epochs["epochs"] == 15
    assert by_epochs["epsilon"] == by_steps["epsilon"]


def test_target_epsilon_prints_the_noise_and_the_epsilon_it_reaches(
    capsys: pytest.CaptureFixture[str],
) -> None:
    solved = as_json(["--target-epsilon", "0.92", *ROW], capsys)
    assert solved["target_epsilon"] == 0.92
    assert 0.99 * 0.92 <= solved["epsilon"] <= 0.92
    assert solved["noise_multiplier"] == pytest.approx(1.3, rel=3e-3)
    again = as_json(["--noise-multiplier", str(solved["noise_multiplier"]), *ROW], capsys)
    assert again["epsilon"] == solved["epsilon"]
    code, out, _ = privacy(["--target-epsilon", "0.92", *ROW], capsys)
    assert code == 0
    assert "noise multiplier (solved)" in out
    assert f"{solved['noise_multiplier']:.4g}" in out


def test_fixed_sampling_needs_the_population_and_gives_its_own_figure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = privacy(["--noise-multiplier", "1.3", *ROW, "--sampling", "fixed"], capsys)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert "--population" in err
    argv = ["--noise-multiplier", "1.3", *ROW, "--sampling", "fixed", "--population", "60000"]
    fixed = as_json(argv, capsys)
    poisson = as_json(["--noise-multiplier", "1.3", *ROW], capsys)
    assert fixed["neighbouring"] == "replace-one"
    assert fixed["sample_size"] == 240
    assert fixed["epsilon"] > 1.5 * poisson["epsilon"]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        ([*Z, "--sampling-rate", "0.004", "--steps", "10"], "--delta"),
        ([*Z, *ROW[:4], "--delta", "1"], "(0, 1)"),
        ([*Z, *ROW[:4], "--delta", "1.5"], "(0, 1)"),
        ([*Z, "--sampling-rate", "0", *ROW[2:]], "(0, 1]"),
        ([*Z, "--sampling-rate", "1.2", *ROW[2:]], "(0, 1]"),
        ([*Z, "--sampling-rate", "0", "--epochs", "3", *ROW[4:]], "(0, 1]"),
        (["--noise-multiplier", "-1", *ROW], ">= 0"),
        (["--noise-multiplier", "nan", *ROW], ">= 0"),
        ([*Z, "--target-epsilon", "1", *ROW], "not allowed with"),
        (ROW, "one of the arguments --noise-multiplier --target-epsilon is required"),
        ([*Z, *ROW, "--epochs", "3"], "not allowed with"),
        ([*Z, *ROW[:2], *ROW[4:]], "--steps --epochs is required"),
        ([*Z, *ROW[:2], "--steps", "0", *ROW[4:]], ">= 1"),
        ([*Z, *ROW, "--accountant", "gdp"], "invalid choice"),
        ([*Z, *ROW, "--population", "1000", "--delta", "0.01"], "1/n"),
        (["--target-epsilon", "0", *ROW], "> 0"),
        (["--target-epsilon", "1e-6", *ROW], "not reachable"),
        (
            [*Z, *ROW, "--sampling", "fixed", "--population", "60000", "--accountant", "pld"],
            "use accountant 'rdp'",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = privacy(argv, capsys)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("error: ")
    assert says in err
    assert "Traceback" not in err


def test_privacy_imports_no_pytorch() -> None:
    """dp-accounting brings numpy and scipy, which the command needs; never PyTorch."""
    heavy = ("torch", "opacus", "onnx", "onnxruntime", "sklearn", "transformers", "ray")
    result = run_fresh(["privacy", "--noise-multiplier", "1.3", *ROW, "--json"], heavy=heavy)
    assert result == {"codes": [0], "heavy": []}
