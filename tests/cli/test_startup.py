"""Commands that need no PyTorch do not import it (nor the other heavy libraries).

Each case runs the command in a fresh interpreter and lists which heavy modules
ended up in ``sys.modules``: behaviour, not timings (the start-up times are in
the issue's closing note). ``tinylarge --help`` imports every command module,
so it also shows that none of them imports a heavy library at import time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: Libraries that take a second or more to import, none needed to parse, check or list.
HEAVY = ("torch", "librosa", "onnx", "onnxruntime", "sklearn", "transformers", "scipy", "ray")

PROBE = """
import json, sys
from tinylarge.cli.app import main
codes = []
for argv in json.loads(sys.argv[1]):
    try:
        codes.append(main(argv))
    except SystemExit as exc:  # --help and --version exit through argparse
        codes.append(exc.code)
heavy = [m for m in json.loads(sys.argv[2]) if m in sys.modules]
print(json.dumps({"codes": codes, "heavy": heavy}))
"""


def run_fresh(*commands: list[str], heavy: tuple[str, ...] = HEAVY) -> dict[str, list[object]]:
    """Run ``commands`` in one fresh interpreter: their exit codes, and which of ``heavy``
    they imported."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(commands), json.dumps(heavy)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
        timeout=120,
    )
    result: dict[str, list[object]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize(
    "argv",
    [
        ["--version"],
        ["--help"],
        ["validate", "examples/quickstart.yaml"],
        ["devices"],
        ["devices", "--json", "--tier", "mcu"],
        ["link", "--preset", "wifi6", "--payload-bytes", "1000"],
        ["link", "--scenario", "uma", "--los", "--carrier-ghz", "3.5", "--distance-m", "100"],
        ["link", "--preset", "lora-sf7", "--payload-bytes", "10", "--fading", "rayleigh"],
    ],
)
def test_light_commands_import_no_heavy_library(argv: list[str]) -> None:
    result = run_fresh(argv)
    assert result["codes"] == [0]
    assert result["heavy"] == []


def test_validate_checks_every_example_without_pytorch() -> None:
    examples = sorted(str(p.relative_to(REPO)) for p in REPO.glob("examples/*.yaml"))
    result = run_fresh(*(["validate", e] for e in examples))
    assert result["codes"] == [0] * len(examples)
    assert result["heavy"] == []


def test_a_bad_config_is_refused_without_pytorch(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "topology: {devices: [{profile: rpi4}]}\nscheme: {name: fedprox, options: {mu: -1}}\n"
    )
    for command in (["validate", str(bad)], ["run", str(bad), "--out", str(tmp_path / "r")]):
        result = run_fresh(command)
        assert result["codes"] == [2]
        assert result["heavy"] == []  # refused before the engine (and PyTorch) loads
    assert not (tmp_path / "r").exists()
