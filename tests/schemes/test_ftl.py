"""Federated transfer learning: per-tensor averaging, per-profile parts, incremental syncs.

Also the knowledge-transfer family's round-clock and resume tests (TL, FTL, FedGKT,
FedDF, FML; FFM has its own in test_ffm.py, on a text task).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.conftest import resume_after_kill, small_task
from tests.sim.test_clock import check_one_clock

from tinylarge.config import parse_config
from tinylarge.models.zoo import ModelSpec
from tinylarge.results.rundir import RunDir
from tinylarge.schemes import SCHEMES
from tinylarge.schemes._parts import PartResult, candidate_parts
from tinylarge.schemes.ftl import part_update
from tinylarge.sim.aggregation import weighted_average
from tinylarge.sim.engine import run_experiment
from tinylarge.sim.ledger import Ledger

SPEC = ModelSpec("cnn-tiny", (1, 8, 8), 10, {"width": 16})


def mixed_fleet(**scheme: Any) -> dict[str, Any]:
    """Pis that can train the whole CNN, nRF52840s (256 KiB) that cannot."""
    return small_task(
        model={"name": "cnn-tiny", "options": {"width": 16}},
        topology={
            "server": {"profile": "jetson-orin-nano"},
            "devices": [
                {"profile": "rpi4", "count": 2, "link": "wifi6"},
                {"profile": "nrf52840", "count": 2, "link": "ble-2m"},
            ],
        },
        scheme={"name": "ftl", **scheme},
        training={"rounds": 3, "batch_size": 16, "lr": 0.1},
    )


def test_parts_average_each_tensor_over_the_devices_that_trained_it() -> None:
    keys = ["a", "b", "n"]
    weights = [np.zeros(2, np.float32), np.ones(2, np.float32), np.array(3)]
    results = [
        PartResult(0, {"a": np.full(2, 1.0, np.float32), "n": np.array(5)}, 1, 0.0),
        PartResult(1, {"a": np.full(2, 4.0, np.float32), "n": np.array(4)}, 3, 0.0),
    ]
    updates = [part_update(keys, r) for r in results]
    assert [t is None for t in updates[0].tensors] == [False, True, False]
    out = weighted_average(updates, base=weights)
    np.testing.assert_allclose(out[0], [3.25, 3.25])  # (1 * 1 + 3 * 4) / 4
    np.testing.assert_array_equal(out[1], weights[1])  # nobody trained it
    assert int(out[2]) == 5  # integer buffers take the maximum


def test_each_profile_trains_the_part_that_fits_and_uploads_only_it(tmp_path: Path) -> None:
    cfg = parse_config(mixed_fleet())
    summary = run_experiment(cfg, out=tmp_path / "r", progress=False)
    parts = summary["parts"]
    assert parts["rpi4"]["part"] == "all"
    assert parts["nrf52840"]["part"] not in ("all", None)
    assert (
        parts["nrf52840"]["train_memory_bytes"] <= 256 * 1024 < parts["rpi4"]["train_memory_bytes"]
    )
    assert summary["fits"] == {"rpi4": True, "nrf52840": True}
    by_part = {p.name: p for p in candidate_parts(SPEC, batch_size=16, optimizer="sgd")}
    mcu_part = by_part[parts["nrf52840"]["part"]]
    ledger = Ledger.from_csv(tmp_path / "r" / "ledger.csv")
    up = ledger.select(kind="upload", node="client-2")  # an nRF52840
    assert len(up) == cfg.training.rounds
    model_bytes = sum(t.nbytes for t in SPEC.build().state_dict().values())
    assert all(e.bytes < model_bytes for e in up)
    # the MCU's compute: frozen prefix forward plus 3x the suffix's forward, per sample
    assert mcu_part.prefix is not None
    per_sample = mcu_part.prefix.macs + 3 * mcu_part.suffix.macs
    train = ledger.select(kind="compute", node="client-2")
    assert all(e.macs % per_sample == 0 for e in train)
    assert summary["accuracy"] > 0.7
    assert summary["large_accuracy"] == summary["pretrained_accuracy"]


def test_downloads_are_incremental_after_the_first_sync(tmp_path: Path) -> None:
    cfg = parse_config(mixed_fleet(options={"part": "head"}))
    summary = run_experiment(cfg, out=tmp_path / "r", progress=False)
    assert {p["part"] for p in summary["parts"].values()} == {"head"}
    ledger = Ledger.from_csv(tmp_path / "r" / "ledger.csv")
    state = SPEC.build().state_dict()
    model_bytes = sum(t.nbytes for t in state.values())
    head_bytes = state["7.weight"].nbytes + state["7.bias"].nbytes
    downs = [e.bytes for e in ledger.select(kind="download", node="client-0")]
    assert downs == [model_bytes] + [head_bytes] * (cfg.training.rounds - 1)
    ups = [e.bytes for e in ledger.select(kind="upload", node="client-0")]
    assert ups == [head_bytes] * cfg.training.rounds
    # only the head moves: the backbone the devices run is the server's pre-trained one
    assert summary["accuracy"] != summary["large_accuracy"]


@pytest.mark.parametrize("scheme", ["ftl", "fedgkt", "feddf", "fml"])
def test_resume_after_a_kill_reaches_the_same_numbers(
    scheme: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = parse_config(small_task(scheme={"name": scheme}, training={"rounds": 3}))
    full = run_experiment(cfg, out=tmp_path / "full", progress=False)
    cls = SCHEMES[scheme]
    resumed = resume_after_kill(monkeypatch, cls, 2, cfg, tmp_path / "killed")
    drop = ("wall_time_s", "backend")
    assert {k: v for k, v in resumed.items() if k not in drop} == {
        k: v for k, v in full.items() if k not in drop
    }


#: A board beyond Bluetooth's range (its link is in outage in every round) and a Pi on
#: NB-IoT (1.6 s of air-interface latency per transfer: the deadline cuts it).
UNREACHABLE = {"profile": "stm32h743", "count": 1, "link": "ble-2m", "distance_m": 5000.0}
SLOW = {"profile": "rpi4", "count": 1, "link": "nb-iot"}
#: Between the other devices' rounds (well under a second here) and the NB-IoT Pi's.
DEADLINE_S = 1.5


@pytest.mark.parametrize("scheme", ["tl", "ftl", "fedgkt", "feddf", "fml"])
def test_dropout_outage_and_deadline_on_one_clock(scheme: str, tmp_path: Path) -> None:
    """Every participant leaves for its reason (dropout, outage, straggler), metrics.csv says
    so, and each round's latency is what the ledger's events (with their starts) imply."""
    task = small_task(
        scheme={"name": scheme},
        training={"rounds": 2},
        engine={"dropout_prob": 0.2, "deadline_s": DEADLINE_S},
    )
    task["topology"]["devices"] = [*task["topology"]["devices"], UNREACHABLE, SLOW]
    summary = run_experiment(parse_config(task), out=tmp_path / "r", progress=False)
    check_one_clock(tmp_path / "r", summary, DEADLINE_S)
    left = RunDir(tmp_path / "r").read_dropped()
    assert {why for _, _, why in left} == {"dropout", "outage", "straggler"}
    assert {node for _, node, why in left if why == "outage"} == {"client-4"}
    assert {node for _, node, why in left if why == "straggler"} == {"client-5"}
    reasons = " ".join(r["dropped_reasons"] for r in RunDir(tmp_path / "r").read_metrics())
    assert "outage:1" in reasons
    assert "straggler:1" in reasons
