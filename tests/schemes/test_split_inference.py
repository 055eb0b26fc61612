"""The split-inference mode on the small task, and ``tinylarge plan`` for it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import reproducible, resume_after_kill, small_task
from tests.inference.checks import (
    check_refusals,
    check_run,
    check_unserved,
    unserved_config,
)

from tinylarge.cli.app import main
from tinylarge.config import parse_config
from tinylarge.schemes.split_inference import SplitInference
from tinylarge.sim.engine import run_experiment

REPO = Path(__file__).resolve().parents[2]


def config(objective: str, **over: Any) -> dict[str, Any]:
    return small_task(
        scheme={"name": "split-inference", "options": {"objective": objective}},
        training={"rounds": 2},
        **over,
    )


def test_planned_partitions_serve_the_same_answers(tmp_path: Path) -> None:
    s = run_experiment(parse_config(config("energy")), out=tmp_path / "a", progress=False)
    check_run(tmp_path / "a", s)
    parts = s["partitions"]
    # the SBC over Wi-Fi 6 offloads (cheaper radio than compute); the MCU over BLE does not
    assert parts["rpi4/wifi6@15m"]["device_ops"] < parts["rpi4/wifi6@15m"]["of_ops"]
    assert parts["stm32h743/ble-2m@5m"]["partition"] == "device-only"
    inf, base = s["inference"], s["baselines"]
    assert inf["offload_fraction"] == pytest.approx(0.5, abs=0.01)  # two of four devices
    # one model, wherever it runs: the same accuracy in every mode
    assert inf["accuracy"] == base["device_only"]["accuracy"] == base["server_only"]["accuracy"]
    assert (
        inf["device_energy_per_inference_j"] <= base["device_only"]["device_energy_per_inference_j"]
    )
    assert (
        inf["device_energy_per_inference_j"] <= base["server_only"]["device_energy_per_inference_j"]
    )


def test_latency_objective_and_a_link_in_outage(tmp_path: Path) -> None:
    topology = {
        "server": {"profile": "jetson-orin-nano"},
        "devices": [{"profile": "stm32h743", "count": 2, "link": "ble-2m", "distance_m": 5000}],
    }
    s = run_experiment(
        parse_config(config("latency", topology=topology)), out=tmp_path / "b", progress=False
    )
    assert s["partitions"]["stm32h743/ble-2m@5000m"]["partition"] == "device-only"
    assert s["inference"]["bytes_up"] == 0
    # the server-only baseline cannot reach the server: no answers
    assert s["baselines"]["server_only"]["accuracy"] == 0.0


def test_plan_table_and_sweep(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TINYLARGE_DATA", str(data_dir))
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(config("latency")))
    assert main(["plan", str(path), "--device", "rpi4", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    # mlp (Flatten, Linear, ReLU, Linear): the input, after the ReLU that ends the first
    # Linear's group, or everything; never between a Linear and its ReLU
    assert [r["point"] for r in rows] == [0, 3, 4]
    assert sum(r["chosen"] for r in rows) == 1
    assert {r["device"] for r in rows} == {"rpi4"}
    assert rows[0]["partition"].startswith("server-only")
    assert rows[-1]["partition"] == "device-only"
    assert main(["plan", str(path)]) == 0
    assert "chosen" in capsys.readouterr().out
    example = REPO / "examples" / "split_inference_fmnist.yaml"
    argv = [
        "plan",
        str(example),
        "--device",
        "esp32s3",
        "--sweep-distance-m",
        "10,300,1000",
        "--json",
    ]
    assert main(argv) == 0
    chosen = [r for r in json.loads(capsys.readouterr().out) if r["chosen"]]
    assert [r["distance_m"] for r in chosen] == [10.0, 300.0, 1000.0]
    assert [r["partition"] for r in chosen] == [
        "server-only (send input)",
        "after 2 (ReLU)",
        "device-only",
    ]
    with pytest.raises(SystemExit) as exc:
        main(["plan", str(path), "--objective", "speed"])
    assert exc.value.code == 2


def test_settings_it_cannot_honour_are_refused() -> None:
    check_refusals("split-inference", {"objective": "energy"})


def test_devices_in_outage_or_dropping_out_do_not_serve(tmp_path: Path) -> None:
    cfg = unserved_config("split-inference", {"objective": "energy"})
    s = run_experiment(cfg, out=tmp_path / "u", progress=False)
    check_run(tmp_path / "u", s)
    check_unserved(tmp_path / "u", s, total=450)
    # the unreachable device would run everything itself, but its model never arrives
    assert s["partitions"]["rpi4/ble-2m@5000m"]["partition"] == "device-only"
    assert s["not_served"]["outage"] == [4]
    assert s["not_served"]["dropout"]


def test_resume_after_a_kill_reaches_the_same_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = parse_config(config("energy", engine={"fading": True}))
    full = run_experiment(cfg, out=tmp_path / "full", progress=False)
    resumed = resume_after_kill(monkeypatch, SplitInference, 1, cfg, tmp_path / "killed")
    assert reproducible(resumed) == reproducible(full)
