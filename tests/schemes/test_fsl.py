"""SplitFed V1/V2: oracles against FedAvg and SL, heterogeneous cuts, the MCU example."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from tests.conftest import REPO, small_task
from tests.schemes._split_clock import (
    run_under_dropout_outage_and_deadline,
    straggler_leaves_no_trace,
)

from tinylarge.config import parse_config
from tinylarge.results.rundir import RunDir
from tinylarge.schemes._split import mix
from tinylarge.sim.aggregation import Update, weighted_average
from tinylarge.sim.engine import run_experiment
from tinylarge.sim.ledger import Ledger

EXAMPLE = REPO / "examples" / "splitfed_mcu.yaml"


def _run(tmp_path: Path, name: str, cfg: dict[str, Any]) -> dict[str, Any]:
    return run_experiment(parse_config(cfg), out=tmp_path / name, progress=False)


def _weights(run_dir: Path) -> list[np.ndarray]:
    weights: list[np.ndarray] = RunDir(run_dir).load_checkpoint()["scheme"]["weights"]
    return weights


def test_splitfed_v1_at_fp32_trains_exactly_the_fedavg_model(tmp_path: Path) -> None:
    """Oracle (Thapa et al.): V1 computes FedAvg's gradients, only split across two nodes."""
    fsl = _run(tmp_path, "fsl", small_task(scheme={"name": "fsl"}))
    fedavg = _run(tmp_path, "fedavg", small_task())
    for a, b in zip(_weights(tmp_path / "fsl"), _weights(tmp_path / "fedavg"), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert fsl["accuracy"] == pytest.approx(fedavg["accuracy"], abs=1e-9)
    # ... at a very different price: smashed data every batch instead of one model exchange
    assert fsl["bytes_up"] > fedavg["bytes_up"]


def test_splitfed_v2_with_one_client_is_split_learning(tmp_path: Path) -> None:
    one = {"devices": [{"profile": "stm32h743", "count": 1, "link": "ble-2m"}]}
    topo = {"server": {"profile": "jetson-orin-nano"}, **one}
    v2 = _run(
        tmp_path,
        "v2",
        small_task(topology=topo, scheme={"name": "fsl", "options": {"variant": "v2"}}),
    )
    sl = _run(tmp_path, "sl", small_task(topology=topo, scheme={"name": "sl"}))
    for a, b in zip(_weights(tmp_path / "v2"), _weights(tmp_path / "sl"), strict=True):
        np.testing.assert_array_equal(a, b)
    assert v2["accuracy"] == sl["accuracy"]
    assert v2["bytes_up"] == sl["bytes_up"]


def test_v2_is_sequential_v1_parallel(tmp_path: Path) -> None:
    v1 = _run(tmp_path, "v1", small_task(scheme={"name": "fsl"}))
    v2 = _run(tmp_path, "v2", small_task(scheme={"name": "fsl", "options": {"variant": "v2"}}))
    # same work and bytes, but V2's server serves one client at a time
    assert v2["device_macs"] == v1["device_macs"]
    assert v2["bytes_up"] == v1["bytes_up"]
    assert v2["total_latency_s"] > v1["total_latency_s"]
    assert v2["accuracy"] > 0.75


def test_heterogeneous_cuts_per_profile(tmp_path: Path) -> None:
    model = {"name": "mlp", "options": {"hidden": [32, 32]}}
    options = {"cut": {"rpi4": 5, "stm32h743": 3}}
    for variant in ("v1", "v2"):
        s = _run(
            tmp_path,
            variant,
            small_task(
                model=model, scheme={"name": "fsl", "options": {**options, "variant": variant}}
            ),
        )
        assert s["cuts"]["rpi4"]["cut"] == 5
        assert s["cuts"]["stm32h743"]["cut"] == 3
        assert s["accuracy"] > 0.75
        ledger = Ledger.from_csv(tmp_path / variant / "ledger.csv")
        # the deeper cut uploads a bigger client-side model
        rpi = ledger.select(profile="rpi4", what="client-model", kind="upload")[0]
        mcu = ledger.select(profile="stm32h743", what="client-model", kind="upload")[0]
        assert rpi.bytes == mcu.bytes + (32 * 32 + 32) * 4


def test_updates_average_device_copies_next_to_the_server_model() -> None:
    """Each update carries its device-side tensors and the server copy that trained the rest
    (:func:`mix`), so a layer is averaged over the devices that held it with the server copy
    standing for the others (the heterogeneous-cut rule of SplitFed), worked out by hand."""
    start = [np.zeros(2, np.float32), np.zeros(2, np.float32), np.array(3)]
    a = [np.ones(2, np.float32), np.full(2, 5.0, np.float32), np.array(4)]
    b = [np.full(2, 3.0, np.float32), np.full(2, 7.0, np.float32), np.array(6)]
    server = [np.full(2, 9.0, np.float32), np.full(2, 11.0, np.float32), np.array(1)]
    # client a holds tensor 0 only, client b tensors 0 and 1 (1 sample vs 3)
    updates = [
        Update.full(0, mix(a, server, [True, False, False]), 1),
        Update.full(1, mix(b, server, [True, True, False]), 3),
    ]
    out = weighted_average(updates, base=start)
    np.testing.assert_allclose(out[0], (1 * 1 + 3 * 3) / 4)
    np.testing.assert_allclose(out[1], (1 * 11 + 3 * 7) / 4)  # server copy stands for a
    assert out[2] == 1  # every client trained it on the server: the server's buffer


def test_dropouts_and_faded_links_drop_clients_reproducibly(tmp_path: Path) -> None:
    faded = {
        "server": {"profile": "jetson-orin-nano"},
        "devices": [
            {"profile": "rpi4", "count": 2, "link": "wifi6"},
            {"profile": "stm32h743", "count": 2, "link": "ble-2m", "distance_m": 40},
        ],
    }
    engine = {"fading": True, "dropout_prob": 0.3}
    cfg = small_task(topology=faded, engine=engine, scheme={"name": "fsl"})
    a = _run(tmp_path, "a", cfg)
    b = _run(tmp_path, "b", cfg)
    assert {k: v for k, v in a.items() if k != "wall_time_s"} == {
        k: v for k, v in b.items() if k != "wall_time_s"
    }
    with (tmp_path / "a" / "metrics.csv").open() as fh:
        assert sum(int(row["dropped"]) for row in csv.DictReader(fh)) > 0
    assert a["accuracy"] > 0.5


def _example(**changes: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    cfg["task"]["subset"] = 400
    cfg["training"]["rounds"] = 1
    for key, value in changes.items():
        cfg[key] = value
    return cfg


def test_example_splitfed_trains_mcus_that_fedavg_excludes(tmp_path: Path, data_dir: Path) -> None:
    task = {**_example()["task"], "data_dir": str(data_dir)}
    fsl = _run(tmp_path, "fsl", _example(task=task))
    assert fsl["excluded"] == {}
    assert fsl["fits"] == {"nrf52840": True, "stm32f746": True, "rpi4": True}
    for mcu in ("nrf52840", "stm32f746"):
        cut = fsl["cuts"][mcu]
        assert cut["train_memory_bytes"] <= cut["sram_bytes"]
        assert 0 < cut["leakage"] <= 1
        assert fsl["per_profile"][mcu]["compute_j"] > 0
    fedavg = _run(tmp_path, "fedavg", _example(task=task, scheme={"name": "fedavg"}))
    assert set(fedavg["excluded"]) == {"nrf52840", "stm32f746"}
    assert fedavg["fits"] == {"nrf52840": False, "stm32f746": False, "rpi4": True}
    assert fedavg["per_profile"]["nrf52840"]["compute_j"] == 0


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs the ray extra")
def test_v2_agrees_across_backends(tmp_path: Path) -> None:
    """V2 trains in-process (sequential by nature); the Ray backend must not change a number.

    (V1 and sl are in the Ray-vs-sequential table of tests/sim/test_backends.py.)
    """
    cfg = small_task(
        scheme={"name": "fsl", "options": {"variant": "v2", "compression": "fp16"}},
        training={"rounds": 1},
    )
    seq = _run(tmp_path, "seq", cfg)
    ray = _run(tmp_path, "ray", {**cfg, "engine": {"backend": "ray"}})
    assert ray["backend"] == "ray"
    drop = {"backend", "wall_time_s"}
    assert {k: v for k, v in ray.items() if k not in drop} == {
        k: v for k, v in seq.items() if k not in drop
    }


# -- the round clock: dropout, outage, deadline ---------------------------------


@pytest.mark.parametrize("variant", ["v1", "v2"])
def test_fsl_honours_dropout_outage_and_a_deadline(variant: str, tmp_path: Path) -> None:
    """Dropouts and outages leave the round; a deadline makes stragglers (billed, their
    update discarded) and ends the device phase, then the server aggregates; metrics,
    dropped.csv and ledger agree."""
    run_under_dropout_outage_and_deadline(tmp_path, "fsl", {"variant": variant})


@pytest.mark.parametrize("variant", ["v1", "v2"])
def test_fsl_discards_a_stragglers_update(
    variant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """V1: its device side and its server copy; V2: also its server-side training, rolled
    back before the next turn."""
    scheme = {"name": "fsl", "options": {"variant": variant}}
    straggler_leaves_no_trace(tmp_path, monkeypatch, scheme, turns=variant == "v2")
