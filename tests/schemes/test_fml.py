"""Federated mutual learning: only the shared model travels, memory of both, DML losses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tests.conftest import small_task

from tinylarge.config import parse_config
from tinylarge.hardware.catalogue import get_device
from tinylarge.models.profiler import profile_model
from tinylarge.models.weights import get_weights
from tinylarge.models.zoo import ModelSpec
from tinylarge.schemes.fml import MutualTask, mutual_client
from tinylarge.sim.context import Context
from tinylarge.sim.engine import run_experiment
from tinylarge.sim.ledger import Ledger
from tinylarge.sim.training import FitTask, TrainSettings, fit


def fml(**options: Any) -> dict[str, Any]:
    return small_task(scheme={"name": "fml", "options": options}, training={"rounds": 2})


def test_only_the_shared_model_travels(tmp_path: Path) -> None:
    private = {"rpi4": {"name": "mlp", "options": {"hidden": 128}}}
    cfg = parse_config(fml(client_models=private))
    summary = run_experiment(cfg, out=tmp_path / "r", progress=False)
    shared_bytes = sum(t.nbytes for t in Context(cfg).spec.build().state_dict().values())
    ledger = Ledger.from_csv(tmp_path / "r" / "ledger.csv")
    for kind in ("upload", "download"):
        events = ledger.select(kind=kind)
        assert len(events) == cfg.topology.num_devices * cfg.training.rounds
        assert all(e.bytes == shared_bytes for e in events)
    assert summary["device_models"]["rpi4"]["model"] == "mlp"
    assert summary["device_models"]["rpi4"]["options"] == {"hidden": 128}
    # both models train on the device, both billed
    whats = {e.what for e in ledger.select(kind="compute", side="device")}
    assert whats == {"train-private", "train-shared"}
    assert summary["accuracy"] > 0.5
    assert summary["large_accuracy"] > 0.5


def test_a_device_must_hold_both_models_training_memory(tmp_path: Path) -> None:
    mcu = get_device("stm32f746")
    spec = ModelSpec("mlp", (1, 8, 8), 10, {"hidden": [150, 150]})
    alone = profile_model(
        spec.build(), input_shape=spec.input_shape, train_batch_size=16, optimizer="sgd"
    ).train_memory_bytes
    assert alone is not None
    assert alone <= mcu.sram_bytes < 2 * alone  # either model fits alone, not both
    choice = {"name": "mlp", "options": {"hidden": [150, 150]}}
    cfg = parse_config(
        small_task(
            model=choice,
            scheme={"name": "fml", "options": {}},
            topology={
                "server": {"profile": "l4"},
                "devices": [
                    {"profile": "rpi4", "count": 1},
                    {"profile": "stm32f746", "count": 1, "link": "ble-2m"},
                ],
            },
            training={"rounds": 1},
        )
    )
    summary = run_experiment(cfg, out=tmp_path / "r", progress=False)
    assert summary["fits"] == {"rpi4": True, "stm32f746": False}
    assert "both models" in summary["excluded"]["stm32f746"]["reason"]
    assert summary["device_models"]["stm32f746"]["train_memory_bytes"] == 2 * alone


def test_without_kl_the_private_model_is_plain_local_training() -> None:
    """alpha = 1 removes the KL term: the private model then trains exactly as FedAvg's fit."""
    spec = ModelSpec("mlp", (1, 8, 8), 10, {"hidden": 16})
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, 48)
    settings = TrainSettings(epochs=2, batch_size=8, lr=0.1)
    private = get_weights(spec.build())
    shared = get_weights(spec.build())
    idx = np.arange(48)
    task = MutualTask(0, 5, spec, private, spec, shared, idx, settings, 1.0, 0.5, 1.0)
    mutual = mutual_client(task, x, y)
    alone = fit(FitTask(0, 0, 5, spec, private, idx, settings), x, y)
    for a, b in zip(mutual.private, alone.weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # with the KL term on, the private model learns from the shared one: different weights
    task = MutualTask(0, 5, spec, private, spec, shared, idx, settings, 0.5, 0.5, 1.0)
    taught = mutual_client(task, x, y)
    assert not np.allclose(taught.private[0], alone.weights[0])
