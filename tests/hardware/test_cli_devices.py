"""`tinylarge devices`: table, JSON and the tier filter."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from tinylarge.cli import _output
from tinylarge.cli.app import main
from tinylarge.hardware.catalogue import TIERS, device_ids


def test_json_lists_every_device_with_sources(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devices", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["id"] for r in rows} == set(device_ids())
    for row in rows:
        assert row["sources"]
        assert row["tier"] in TIERS
        assert {"int8_macs_per_s", "fp32_macs_per_s", "radios", "can_train"} <= set(row)


def test_tier_filter(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devices", "--json", "--tier", "cloud"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows
    assert {r["tier"] for r in rows} == {"cloud"}
    assert "a100" in {r["id"] for r in rows}


def test_table_for_people(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A wide terminal, so rich does not truncate cells.
    monkeypatch.setattr(_output, "console", Console(width=400, highlight=False))
    assert main(["devices", "--tier", "mcu"]) == 0
    out = capsys.readouterr().out
    assert "stm32l4r5" in out
    assert "x-cube-ai@9.0" in out  # a Cortex-M device shows its default stack
    assert "640 KiB" in out
    assert "a100" not in out


def test_unknown_tier_is_one_line_user_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devices", "--tier", "satellite"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "satellite" in err
    assert all(t in err for t in TIERS)


def test_help_names_every_tier(capsys: pytest.CaptureFixture[str]) -> None:
    from tinylarge.cli.devices import TIER_NAMES

    assert TIER_NAMES == TIERS
    with pytest.raises(SystemExit):
        main(["devices", "--help"])
    assert ", ".join(TIERS) in capsys.readouterr().out
