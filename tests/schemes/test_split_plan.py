"""The cut planner of sl/fsl (``SplitScheme.plan``): its choice against exhaustive evaluation
(what the plan predicts is what a run bills), fit, outage, forced cuts, overrides, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import REPO, small_task

from tinylarge.cli.app import main
from tinylarge.config import parse_config
from tinylarge.errors import TinylargeError
from tinylarge.hardware.catalogue import get_device
from tinylarge.models.cuts import cut_points, segments
from tinylarge.models.profiler import profile_model
from tinylarge.models.zoo import build_model
from tinylarge.results.rundir import RunDir
from tinylarge.schemes._split_costs import CutEstimate, choose
from tinylarge.schemes.base import Plan, PlanRequest
from tinylarge.sim.context import Context
from tinylarge.sim.engine import build_scheme, run_experiment
from tinylarge.sim.ledger import Ledger

EXAMPLE = REPO / "examples" / "splitfed_mcu.yaml"
DIGITS = {"dataset": "digits", "subset": 200, "partition": {"name": "iid"}}


def one_device(
    model: dict[str, Any],
    device: str,
    link: str,
    *,
    batch: int,
    scheme: str = "sl",
    options: dict[str, Any] | None = None,
    task: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return small_task(
        task=task or DIGITS,
        model=model,
        topology={
            "server": {"profile": "jetson-orin-nano"},
            "devices": [{"profile": device, "count": 1, "link": link}],
        },
        training={"rounds": 1, "batch_size": batch, "lr": 0.05},
        scheme={"name": scheme, "options": options or {}},
    )


def plan(cfg: dict[str, Any], **request: Any) -> Plan:
    """What ``tinylarge plan`` prints: the configured scheme's plan, before any set-up."""
    return build_scheme(Context(parse_config(cfg))).plan(PlanRequest(**request))


CNN16 = {"name": "cnn-tiny", "options": {"width": 16}}
CNN4 = {"name": "cnn-tiny", "options": {"width": 4}}
MLP = {"name": "mlp", "options": {"hidden": [64, 32]}}
CASES = [
    # model, device, link, batch, scheme, options
    (CNN16, "stm32f746", "ble-1m", 32, "sl", {"objective": "latency"}),
    (CNN4, "esp32s3", "ble-1m", 8, "sl", {"objective": "latency"}),
    (CNN4, "esp32s3", "ble-1m", 8, "sl", {"objective": "energy"}),
    (MLP, "stm32f446re", "ble-1m", 16, "sl", {"objective": "latency"}),
    (MLP, "stm32f446re", "ble-1m", 16, "sl", {"objective": "energy"}),
    (CNN16, "rpi4", "wifi6", 32, "sl", {"compression": "fp16"}),
    (
        {"name": "mlp", "options": {"hidden": [64, 32, 16]}},
        "stm32h743",
        "ble-2m",
        16,
        "sl",
        {"variant": "u-shaped", "objective": "energy"},
    ),
    (CNN4, "esp32s3", "ble-2m", 8, "fsl", {"compression": "int8", "objective": "energy"}),
]


def device_side_fits(cfg: dict[str, Any], cut: int, *, u_shaped: bool) -> bool:
    """Independent fit check: profile the device-side layers and check them against SRAM."""
    m, shape = cfg["model"], (1, 8, 8)
    model = build_model(m["name"], input_shape=shape, num_classes=10, **m["options"])
    points = cut_points(model, input_shape=shape)
    cuts = [cut, points[-1].index] if u_shaped else [cut]
    parts = segments(model, cuts)
    shapes = [shape, *(p.output_shape for p in points if p.index in cuts)]
    mine = [(parts[0], shapes[0])] + ([(parts[2], shapes[2])] if u_shaped else [])
    device = get_device(cfg["topology"]["devices"][0]["profile"])
    memory = sum(
        profile_model(
            p, input_shape=s, train_batch_size=cfg["training"]["batch_size"], optimizer="sgd"
        ).train_memory_bytes
        or 0
        for p, s in mine
    )
    flash = sum(profile_model(p, input_shape=s).flash_bytes for p, s in mine)
    return memory <= device.sram_bytes and flash <= device.flash_bytes


@pytest.mark.parametrize(("model", "device", "link", "batch", "scheme", "options"), CASES)
def test_choice_equals_exhaustive_evaluation(
    model: dict[str, Any],
    device: str,
    link: str,
    batch: int,
    scheme: str,
    options: dict[str, Any],
    tmp_path: Path,
) -> None:
    """Run one round at every cut (forced), read the ledger, pick the best fitting cut."""
    cfg = one_device(model, device, link, batch=batch, scheme=scheme, options=options)
    rows = plan(cfg).rows
    objective = options.get("objective", "latency")
    measured: dict[int, float] = {}
    for row in rows:
        assert row["fits"] == device_side_fits(cfg, row["cut"], u_shaped="variant" in options)
        if not row["fits"]:
            continue
        forced = {**cfg, "scheme": {"name": scheme, "options": {**options, "cut": row["cut"]}}}
        out = tmp_path / str(row["cut"])
        s = run_experiment(parse_config(forced), out=out, progress=False)
        aggregation = Ledger.from_csv(out / "ledger.csv").total("seconds", what="aggregate")
        latency = s["round_latency_s"][0] - aggregation
        # what the plan predicts is what the ledger bills
        assert row["latency_s"] == pytest.approx(latency, rel=1e-9)
        assert row["energy_j"] == pytest.approx(s["device_energy_j"], rel=1e-9)
        assert row["bytes"] == s["bytes_up"] + s["bytes_down"]
        measured[row["cut"]] = latency if objective == "latency" else s["device_energy_j"]
    assert measured, "no cut fits this case"
    best = min(measured, key=lambda k: (measured[k], k))
    assert [r["cut"] for r in rows if r["chosen"]] == [best]


def test_never_chooses_a_cut_that_does_not_fit_even_when_it_is_fastest(data_dir: Path) -> None:
    task = {"dataset": "nsl-kdd", "subset": 200, "data_dir": str(data_dir)}
    cfg = one_device(
        {"name": "cnn1d", "options": {"width": 16}}, "stm32l4r5", "lora-sf7", batch=32, task=task
    )
    rows = plan(cfg).rows
    fastest = min(rows, key=lambda r: r["latency_s"])
    assert not fastest["fits"]
    (chosen,) = (r for r in rows if r["chosen"])
    assert chosen["fits"]
    assert chosen["latency_s"] == min(r["latency_s"] for r in rows if r["fits"])


def _estimate(
    cut: int, latency: float, energy: float, fits: bool, outage: bool, compute_s: float = 0.0
) -> CutEstimate:
    return CutEstimate(
        device="d", link="l", distance_m=1.0, cut=cut, layer="", train_memory_bytes=0,
        sram_bytes=0, fits=fits, reason=None, outage=outage, device_compute_s=compute_s,
        server_s=0.0, airtime_s=0.0, latency_s=latency, energy_j=energy, bytes_up=0,
        bytes_down=0, bytes=0, bytes_per_batch=0, leakage=None,
    )  # fmt: skip


INF = math.inf


@pytest.mark.parametrize(
    ("table", "objective", "expected"),
    [
        ([(1, 3.0, 1.0, True, False), (2, 2.0, 2.0, True, False)], "latency", 2),
        ([(1, 3.0, 1.0, True, False), (2, 2.0, 2.0, True, False)], "energy", 1),
        ([(1, 3.0, 1.0, True, False), (2, 1.0, 0.5, False, False)], "latency", 1),
        ([(1, 3.0, 1.0, True, True), (2, 4.0, 2.0, True, False)], "latency", 2),
        ([(1, 2.0, 1.0, True, False), (2, 2.0, 1.0, True, False)], "latency", 1),
        ([(1, 1.0, 1.0, False, False), (2, 1.0, 1.0, False, False)], "latency", None),
        # a link in outage: every fitting cut's round is infinite, ranked by computation alone
        ([(1, 1.0, 1.0, False, True), (2, INF, 3.0, True, True, 2.0)], "energy", 2),
        ([(1, INF, 2.0, True, True, 2.0), (2, INF, 1.0, True, True, 1.0)], "latency", 2),
        ([(1, INF, 2.0, True, True, 2.0), (2, INF, 1.0, True, True, 1.0)], "energy", 2),
        ([(1, INF, 1.0, True, True, 1.0), (2, INF, 2.0, True, True, 2.0)], "latency", 1),
    ],
)
def test_choose_is_the_argmin_over_fitting_cuts(
    table: list[tuple[Any, ...]], objective: str, expected: int | None
) -> None:
    best = choose([_estimate(*row) for row in table], objective)  # type: ignore[arg-type]
    assert (best.cut if best else None) == expected


def test_no_fitting_cut_excludes_the_device_and_none_left_is_an_error(tmp_path: Path) -> None:
    cfg = one_device(CNN16, "nrf52840", "ble-2m", batch=64)
    assert not any(r["chosen"] for r in plan(cfg).rows)
    with pytest.raises(
        TinylargeError, match=r"no device of the topology can train.*nrf52840: no cut fits"
    ):
        run_experiment(parse_config(cfg), out=tmp_path / "x", progress=False)


def test_a_device_whose_link_is_in_outage_drops_out_of_every_round(tmp_path: Path) -> None:
    """As in every scheme: the device is admitted (its device side fits) and the round clock
    drops it (``outage``) in every round its link is in outage, before anything is billed."""
    cfg = small_task(scheme={"name": "fsl"})
    cfg["topology"]["devices"][1]["distance_m"] = 5000  # stm32h743 over BLE, far out of range
    p = plan(cfg)
    rows = [r for r in p.rows if r["device"] == "stm32h743"]
    assert all(r["outage"] and r["latency_s"] == math.inf for r in rows)
    (chosen,) = (r for r in rows if r["chosen"])
    assert chosen["fits"]
    assert any("stm32h743" in n and "in outage" in n for n in p.notes)
    s = run_experiment(parse_config(cfg), out=tmp_path / "o", progress=False)
    assert s["excluded"] == {}
    assert s["cuts"]["stm32h743"]["outage"]
    assert s["cuts"]["stm32h743"]["planned_latency_s"] is None
    rows = RunDir(tmp_path / "o").read_metrics()
    assert [r["dropped_reasons"] for r in rows] == ["outage:2"] * len(rows)
    assert not Ledger.from_csv(tmp_path / "o" / "ledger.csv").select(profile="stm32h743")


def test_forced_cuts(tmp_path: Path) -> None:
    with pytest.raises(TinylargeError, match=r"cut 4 is not a cut point.*allowed: 2, 3, 5, 6"):
        plan(one_device(CNN16, "stm32f746", "ble-1m", batch=32, options={"cut": 4}))
    rows = plan(one_device(CNN16, "stm32f746", "ble-1m", batch=32, options={"cut": 6})).rows
    assert not any(r["chosen"] for r in rows)  # forced, but it does not fit: never chosen
    rows = plan(one_device(CNN16, "stm32f746", "ble-1m", batch=32, options={"cut": 2})).rows
    assert [r["cut"] for r in rows if r["chosen"]] == [2]


def test_plan_overrides_device_link_distance_and_objective() -> None:
    cfg = yaml.safe_load(EXAMPLE.read_text())
    cfg["task"] = DIGITS
    rows = plan(cfg, device="stm32f746", link="ble-1m", sweep_distances_m=(5.0, 20.0)).rows
    assert {r["device"] for r in rows} == {"stm32f746"}
    assert {r["link"] for r in rows} == {"ble-1m"}
    assert sorted({r["distance_m"] for r in rows}) == [5.0, 20.0]
    assert sum(r["chosen"] for r in rows) == 2
    # a catalogue device that is not in the topology is planned on the first group's link
    (unlisted,) = {r["device"] for r in plan(cfg, device="stm32h743").rows}
    assert unlisted == "stm32h743"
    with pytest.raises(TinylargeError, match="unknown device"):
        plan(cfg, device="no-such-board")


def test_cli_plan_json_for_the_example(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    assert main(["plan", str(EXAMPLE), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"device", "cut", "fits", "latency_s", "energy_j", "bytes", "chosen"} <= set(rows[0])
    chosen = {r["device"]: r for r in rows if r["chosen"]}
    assert set(chosen) == {"nrf52840", "stm32f746", "rpi4"}
    assert all(r["fits"] and r["train_memory_bytes"] <= r["sram_bytes"] for r in chosen.values())
    for device, row in chosen.items():
        fitting = [r for r in rows if r["device"] == device and r["fits"]]
        assert row["latency_s"] == min(r["latency_s"] for r in fitting)
    assert main(["plan", str(EXAMPLE), "--json", "--objective", "energy"]) == 0
    rows = json.loads(capsys.readouterr().out)
    for device in ("nrf52840", "stm32f746", "rpi4"):
        fitting = [r for r in rows if r["device"] == device and r["fits"]]
        (row,) = (r for r in fitting if r["chosen"])
        assert row["energy_j"] == min(r["energy_j"] for r in fitting)
    assert main(["plan", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "nrf52840 over ble-2m at 5 m: cut" in out
