"""Asynchronous FL (FedBuff, FedAsync) on the asynchronous clock.

The strongest check is an equivalence: FedBuff with a buffer of the clients a round, as
many training at once, devices that finish together (no staleness), a server step of 1 and
a constant staleness weight is synchronous FedAvg, to float tolerance, weights and clock
alike. Then the staleness functions against hand-worked values, and a mixed fleet
(Wi-Fi Pis, 5G phones, NB-IoT and LoRa boards) whose clock is re-derived from the ledger.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.conftest import reproducible, resume_after_kill, small_task

from tinylarge.config import ConfigError, parse_config
from tinylarge.results.rundir import RunDir
from tinylarge.schemes.fedasync import FedAsync, mix
from tinylarge.schemes.fedbuff import FedBuff, buffered_delta
from tinylarge.schemes.options import scheme_options
from tinylarge.sim.engine import run_experiment
from tinylarge.sim.ledger import Ledger
from tinylarge.sim.staleness import staleness_weight


def same_fleet(scheme: str, options: dict[str, Any] | None = None) -> Any:
    """Six identical Pis on one Wi-Fi cell with 100 training samples each: devices that
    start together finish together. Half of them a round."""
    cfg = small_task(
        task={"dataset": "digits", "subset": 600},
        scheme={"name": scheme, "options": options or {}},
        training={"rounds": 4, "fraction": 0.5, "local_epochs": 1, "batch_size": 16, "lr": 0.1},
    )
    cfg["topology"]["devices"] = [{"profile": "rpi4", "count": 6, "link": "wifi6"}]
    return parse_config(cfg)


def final_weights(out: Path) -> list[np.ndarray]:
    return list(RunDir(out).load_checkpoint()["scheme"]["weights"])


def test_fedbuff_without_staleness_is_fedavg(tmp_path: Path) -> None:
    sync = run_experiment(same_fleet("fedavg"), out=tmp_path / "sync", progress=False)
    buff = run_experiment(
        same_fleet("fedbuff", {"staleness": "constant"}), out=tmp_path / "buff", progress=False
    )
    assert buff["buffer_size"] == buff["concurrency"] == 3
    assert buff["staleness_max"] == 0  # every device trained from the current model
    for a, b in zip(
        final_weights(tmp_path / "sync"), final_weights(tmp_path / "buff"), strict=True
    ):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)
    assert buff["accuracy"] == pytest.approx(sync["accuracy"], abs=1e-9)
    assert buff["loss"] == pytest.approx(sync["loss"], rel=1e-5)
    # the same devices, transfers and training on the clock: the same bill and latencies
    assert buff["round_latency_s"] == pytest.approx(sync["round_latency_s"], rel=1e-12)
    for key in ("bytes_up", "bytes_down", "device_macs"):
        assert buff[key] == sync[key], key
    assert buff["device_energy_j"] == pytest.approx(sync["device_energy_j"], rel=1e-12)


def test_fedbuff_defaults_without_staleness_are_fedavg_too(tmp_path: Path) -> None:
    # 1/sqrt(1 + 0) = 1: the default staleness weight changes nothing when nothing is stale
    run_experiment(same_fleet("fedavg"), out=tmp_path / "sync", progress=False)
    run_experiment(same_fleet("fedbuff"), out=tmp_path / "buff", progress=False)
    for a, b in zip(
        final_weights(tmp_path / "sync"), final_weights(tmp_path / "buff"), strict=True
    ):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "s", "a", "b", "expected"),
    [
        ("constant", 7, 0.5, 4, 1.0),
        ("polynomial", 0, 0.5, 4, 1.0),
        ("polynomial", 3, 0.5, 4, 0.5),  # FedBuff's 1/sqrt(1 + 3)
        ("polynomial", 8, 0.5, 4, 1 / 3),  # 1/sqrt(9)
        ("polynomial", 1, 2.0, 4, 0.25),  # (1 + 1)^-2
        ("hinge", 10, 0.5, 10, 1.0),  # within b: full weight
        ("hinge", 14, 0.5, 10, 1 / 3),  # 1 / (0.5 * 4 + 1)
        ("hinge", 12, 4.0, 10, 1 / 9),  # 1 / (4 * 2 + 1)
    ],
)
def test_staleness_functions_against_hand_worked_values(
    name: str, s: int, a: float, b: float, expected: float
) -> None:
    assert staleness_weight(name, s, a=a, b=b) == pytest.approx(expected, rel=1e-15)


def test_negative_staleness_is_refused() -> None:
    with pytest.raises(ValueError, match="future"):
        staleness_weight("constant", -1)


def test_server_steps_against_hand_worked_values() -> None:
    # two updates from different bases: (1 * 1.0 * (1 - 0) + 3 * 0.5 * (4 - 1)) / 4 = 1.375
    delta = buffered_delta(
        [np.zeros(2, np.float32), np.array([5])],
        [
            ([np.zeros(2), np.array([5])], [np.ones(2), np.array([6])], 1, 1.0),
            ([np.ones(2), np.array([5])], [np.full(2, 4.0), np.array([7])], 3, 0.5),
        ],
    )
    assert delta[0] is not None
    assert delta[0].tolist() == [1.375, 1.375]
    assert delta[1] is None  # integer buffers are not averaged
    # FedAsync: (1 - 0.3) * 10 + 0.3 * 20 = 13
    assert mix([np.array([10.0])], [np.array([20.0])], 0.3)[0].tolist() == pytest.approx([13.0])


#: Wi-Fi Pis and 5G phones beside NB-IoT and LoRa boards: minutes of airtime against
#: milliseconds, so fast devices lap slow ones and updates arrive stale.
MIXED = [
    {"profile": "rpi4", "count": 2, "link": "wifi6"},
    {"profile": "galaxy-s24", "count": 2, "link": "nr-sub6"},
    {"profile": "stm32h743", "count": 2, "link": "nb-iot"},
    {"profile": "stm32h743", "count": 2, "link": "lora-sf7"},
    {"profile": "rpi4", "count": 1, "link": "ble-2m", "distance_m": 5000.0},  # always outage
]


def mixed(scheme: str, options: dict[str, Any] | None = None, **training: Any) -> Any:
    cfg = small_task(
        scheme={"name": scheme, "options": options or {}},
        training={"rounds": 8, "fraction": 0.5, **training},
        engine={"dropout_prob": 0.1},
    )
    cfg["topology"]["devices"] = MIXED
    return parse_config(cfg)


def check_async_clock(out: Path, summary: dict[str, Any]) -> None:
    """The asynchronous clock re-derived from the ledger alone."""
    run = RunDir(out)
    rows = run.read_metrics()
    ledger = Ledger.from_csv(run.ledger_path)
    assert len(rows) == summary["rounds"] == summary["server_updates"]
    assert summary["total_latency_s"] == pytest.approx(rows[-1]["clock_s"], rel=1e-12)
    on_clock: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        end = row["clock_s"]
        start = end - row["latency_s"]
        events = [e for e in ledger if e.round == row["round"]]
        for e in events:  # billed in the round it starts in
            assert start - 1e-9 <= start + e.at_s < end + 1e-9 * max(1.0, end), (row, e)
            if e.side == "device":
                on_clock.setdefault(e.node, []).append((start + e.at_s, start + e.end_s))
        # one server update a round, and the round ends when it does
        (agg,) = [e for e in events if e.what == "aggregate"]
        assert start + agg.end_s == pytest.approx(end, rel=1e-12)
        assert row["participants"] == summary.get("buffer_size", 1)
        assert 0 <= row["staleness_mean"] <= row["staleness_max"] <= summary["staleness_max"]
        left = [why for rnd, _, why in run.read_dropped() if rnd == row["round"]]
        assert set(left) <= {"outage", "dropout", "stale"}
        assert row["dropped"] == len(left)
    for node, spans in on_clock.items():  # one job at a time per device
        spans.sort()
        for (_, a_end), (b_start, _) in itertools.pairwise(spans):
            assert b_start >= a_end - 1e-9 * max(1.0, a_end), node
    assert summary["bytes_up"] == ledger.bytes_up() == sum(r["bytes_up"] for r in rows)
    assert summary["bytes_down"] == ledger.bytes_down() == sum(r["bytes_down"] for r in rows)
    assert summary["device_energy_j"] == pytest.approx(ledger.device_energy_j())
    assert not ledger.select(node="client-8", kind="upload")  # the unreachable device


@pytest.mark.parametrize(
    ("scheme", "options"), [("fedbuff", {"buffer_size": 2}), ("fedasync", {"alpha": 0.9})]
)
def test_a_mixed_fleet_makes_real_staleness_on_one_clock(
    scheme: str, options: dict[str, Any], tmp_path: Path
) -> None:
    cfg = mixed(scheme, options)
    summary = run_experiment(cfg, out=tmp_path / "a", progress=False)
    assert summary["staleness_max"] > 0
    assert summary["staleness_mean"] > 0
    check_async_clock(tmp_path / "a", summary)
    reasons = {why for _, _, why in RunDir(tmp_path / "a").read_dropped()}
    assert "outage" in reasons
    again = run_experiment(cfg, out=tmp_path / "b", progress=False)
    assert reproducible(again) == reproducible(summary)


def test_a_slow_fleet_waits_less_for_fedbuff_than_for_fedavg(tmp_path: Path) -> None:
    sync = run_experiment(mixed("fedavg"), out=tmp_path / "sync", progress=False)
    buff = run_experiment(mixed("fedbuff", {"buffer_size": 2}), out=tmp_path / "b", progress=False)
    # a synchronous round waits for its slowest (LoRa) device; FedBuff steps on the first two
    assert buff["total_latency_s"] < sync["total_latency_s"]


def test_max_staleness_drops_late_updates(tmp_path: Path) -> None:
    summary = run_experiment(
        mixed("fedasync", {"max_staleness": 0}), out=tmp_path / "a", progress=False
    )
    assert summary["staleness_max"] == 0
    assert summary["stale_dropped"] > 0
    check_async_clock(tmp_path / "a", summary)
    assert "stale" in {why for _, _, why in RunDir(tmp_path / "a").read_dropped()}


@pytest.mark.parametrize("scheme", [FedBuff, FedAsync])
def test_a_killed_async_run_resumes_to_the_same_result(
    scheme: type[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = mixed(scheme.name, {"buffer_size": 2} if scheme is FedBuff else {}, rounds=6)
    whole = run_experiment(cfg, out=tmp_path / "whole", progress=False)
    resumed = resume_after_kill(monkeypatch, scheme, 4, cfg, tmp_path / "r")
    assert reproducible(resumed) == reproducible(whole)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"engine": {"deadline_s": 1.0}}, "engine.deadline_s"),
        ({"scheme": {"name": "fedbuff", "options": {"concurrency": 99}}}, "concurrency"),
    ],
)
def test_what_the_async_clock_cannot_honour_is_refused(change: dict[str, Any], field: str) -> None:
    cfg = small_task(**{"scheme": {"name": "fedbuff"}, **change})
    with pytest.raises(ConfigError) as err:
        scheme_options(parse_config(cfg))
    lines = str(err.value).splitlines()
    assert len(lines) == 1, lines
    assert field in lines[0], lines
