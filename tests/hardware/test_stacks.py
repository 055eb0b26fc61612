"""Inference stacks on catalogue devices: names, refusals, sources, config and summary."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tinylarge.config import ExperimentConfig
from tinylarge.errors import TinylargeError
from tinylarge.hardware.catalogue import all_devices, get_device
from tinylarge.hardware.stacks import allowed_stacks, check_stack, get_stack, with_stack

NEW_IDS = (
    "stm32h7a3", "stm32u575", "stm32u585", "nrf5340", "ra6m4", "ra8d1", "efr32mg24",
    "psoc62", "stm32g0b1", "m467",
)  # fmt: skip


def test_issue_names_exist_and_aliases_resolve() -> None:
    for name in ("tflm-reference", "tflm-cmsis-nn", "microtvm-cmsis-nn", "x-cube-ai@7.3",
                 "x-cube-ai@9.0", "plumerai", "hale", "onnc"):  # fmt: skip
        assert get_stack(name).name.split("@")[0] == name.split("@")[0]
    assert get_stack("x-cube-ai").name == "x-cube-ai@10.2"


def test_catalogue_has_the_published_boards_with_a_default_stack() -> None:
    for device_id in NEW_IDS:
        d = get_device(device_id)
        assert d.core is not None
        assert d.stack is not None
        assert d.stack in allowed_stacks(d.id, d.core)


def test_x_cube_ai_on_an_nrf5340_is_one_line_naming_the_allowed_stacks() -> None:
    with pytest.raises(TinylargeError) as err:
        check_stack("nrf5340", "m33", "x-cube-ai@9.0")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("stack 'x-cube-ai@9.0' is not available for nrf5340 (core m33)")
    assert "allowed: " in message
    assert "microtvm-cmsis-nn" in message
    assert "x-cube-ai" not in message.split("allowed: ")[1]


def test_unknown_stack_and_a_device_without_a_core_are_refused() -> None:
    with pytest.raises(TinylargeError, match=r"unknown stack 'tvm'; known: .*x-cube-ai@9\.0"):
        get_stack("tvm")
    with pytest.raises(TinylargeError, match=r"not available for rpi5 .*allowed: none"):
        with_stack(get_device("rpi5"), "tflm-reference")


def test_a_stack_changes_int8_only_training_keeps_its_own_rates() -> None:
    base = get_device("stm32l4r5")
    fast = with_stack(base, "x-cube-ai@9.0")
    assert fast.int8_macs_per_s > 3 * base.int8_macs_per_s
    assert fast.fp32_macs_per_s == base.fp32_macs_per_s
    assert fast.op_efficiency == base.op_efficiency
    assert fast.op_overhead_s == base.op_overhead_s


def test_sources_fitted_transferred_or_core_class() -> None:
    assert "fitted to 4 published" in get_device("stm32h7a3").cost_source
    assert get_device("stm32h7a3").energy_source.startswith("fitted: 125.0 mW")
    transferred = get_device("stm32h743")  # no published row
    assert "no published MLPerf Tiny row" in transferred.cost_source
    assert "transferred from its core class (m7)" in transferred.cost_source
    assert transferred.energy_source.startswith("active power x latency")
    # every Cortex-M device says where its int8 figures come from
    assert all(d.cost_source for d in all_devices() if d.core)


def test_config_group_stack_is_checked_and_named() -> None:
    cfg = ExperimentConfig.model_validate(
        {"topology": {"devices": [{"profile": "stm32h7a3", "stack": "x-cube-ai@9.0"}]}}
    )
    assert cfg.topology.devices[0].stack == "x-cube-ai@9.0"
    with pytest.raises(ValidationError, match=r"not available for nrf5340.*allowed: "):
        ExperimentConfig.model_validate(
            {"topology": {"devices": [{"profile": "nrf5340", "stack": "x-cube-ai@9.0"}]}}
        )


@pytest.mark.parametrize(
    "argv",
    [
        [
            "profile",
            "cnn-tiny",
            "--dtype",
            "int8",
            "--device",
            "nrf5340",
            "--stack",
            "x-cube-ai@9.0",
        ],
        ["fit", "cnn-tiny", "--devices", "nrf5340", "--stack", "x-cube-ai@9.0"],
        ["fit", "cnn-tiny", "--stack", "tvm"],
    ],
)
def test_cli_refuses_with_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from tinylarge.cli.app import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "allowed: " in err or "known: " in err


def test_run_summary_and_report_name_each_groups_stack(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from tinylarge.sim.engine import run_experiment

    cfg = ExperimentConfig.model_validate(
        {
            "task": {"dataset": "digits", "subset": 120},
            "training": {"rounds": 1},
            "topology": {
                "devices": [
                    {"profile": "stm32h7a3", "count": 2, "stack": "x-cube-ai@9.0"},
                    {"profile": "nrf5340", "count": 1},
                    {"profile": "stm32h7a3", "count": 1, "stack": "plumerai"},
                ]
            },
        }
    )
    run_experiment(cfg, out=tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    stacks = {pid: v["stack"] for pid, v in summary["per_profile"].items()}
    assert stacks == {
        "stm32h7a3": "x-cube-ai@9.0, plumerai@2023.05",
        "nrf5340": "microtvm-cmsis-nn",
    }
    from tinylarge.results.report import build_report

    assert "x-cube-ai@9.0, plumerai@2023.05" in build_report(tmp_path / "run").read_text()


def test_profile_names_the_stack_and_where_each_figure_comes_from(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    from tinylarge.cli.app import main

    argv = ["profile", "cnn-tiny", "--dtype", "int8", "--device", "stm32h743", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["stack"] == "tflm-reference"
    assert "transferred from its core class (m7)" in report["latency_source"]
    assert report["energy_source"].startswith("active power x latency")
    assert "catalogue's own calibration" in report["training_source"]
    assert main([*argv[:-1], "--stack", "x-cube-ai@9.0", "--json"]) == 0
    faster = json.loads(capsys.readouterr().out)
    assert faster["stack"] == "x-cube-ai@9.0"
    assert faster["latency_s"] < report["latency_s"] / 3
