"""One contract table over every registered scheme: same small task, same checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.conftest import reproducible, small_task

from tinylarge.config import parse_config
from tinylarge.schemes import SCHEMES
from tinylarge.sim.engine import run_experiment
from tinylarge.sim.ledger import Ledger

#: Options that make each scheme converge on the small task in a few rounds.
OPTIONS: dict[str, dict[str, Any]] = {
    "fedadam": {"server_lr": 0.05},
    "fedyogi": {"server_lr": 0.05},
    # fedasync: four rounds are four single-device updates; one device at a time chains them
    "fedasync": {"alpha": 0.9, "concurrency": 1},
    "sl": {"variant": "label-sharing"},
    "fsl": {"variant": "v1", "compression": "int8"},
    "fml": {"alpha": 0.8},
    # inference modes: a fixed threshold / the energy objective make some requests offload
    "cascade": {"threshold": 0.9},
    "early-exit": {"threshold": 0.9},
    "split-inference": {"objective": "energy"},
    # kd: a shorter teacher and more distillation per release keep the test quick
    "kd": {"teacher_epochs": 3, "distill_epochs": 3},
}

#: Schemes that cannot run on the shared image task, each with the reason and the test
#: that gives it the same contract on its own task.
SKIP_CONTRACT: dict[str, str] = {
    "ffm": "fine-tunes a text foundation model, so needs a text task (ibn-nlu, clinc150); "
    "tests/schemes/test_ffm.py::test_ffm_contract checks the same contract there, Ray included",
}

#: Schemes left out of the Ray-vs-sequential table (tests/sim/test_backends.py), with why.
SKIP_BACKEND_TABLE: dict[str, str] = {
    "ffm": "needs a text task; test_ffm.py::test_ffm_contract compares Ray with sequential",
}


#: Training fields a scheme refuses because it never trains on devices (kd trains on the
#: server with its own options): the shared task leaves them at their defaults for it.
DEVICE_TRAINING = ("local_epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay")
SERVER_ONLY = {"kd"}


def scheme_task(scheme: str, *, options: dict[str, Any] | None = None, **overrides: Any) -> Any:
    """``small_task`` running ``scheme`` with its contract options (``options`` to replace them)."""
    cfg = small_task(
        scheme={"name": scheme, "options": OPTIONS.get(scheme, {}) if options is None else options},
        **overrides,
    )
    if scheme in SERVER_ONLY:
        cfg["training"] = {k: v for k, v in cfg["training"].items() if k not in DEVICE_TRAINING}
    return cfg


@pytest.mark.parametrize("scheme", [s for s in SCHEMES.names() if s not in SKIP_CONTRACT])
def test_scheme_contract(scheme: str, tmp_path: Path) -> None:
    cfg = parse_config(scheme_task(scheme))
    first = run_experiment(cfg, out=tmp_path / "a", progress=False)
    # converges: well above chance (10 classes) on the held-out test set
    assert first["accuracy"] > 0.75, first["accuracy"]
    # bills the ledger: compute and radio on devices, bytes both ways, a latency per round
    assert first["device_energy_j"] > 0
    assert first["device_macs"] > 0
    assert first["bytes_up"] > 0
    assert first["bytes_down"] > 0
    assert len(first["round_latency_s"]) == cfg.training.rounds
    assert all(t > 0 for t in first["round_latency_s"])
    # every profile has a fit verdict (test_scheme_excludes_what_does_not_fit shows exclusions)
    assert set(first["fits"]) == {"rpi4", "stm32h743"}
    # reproducible from its seed
    second = run_experiment(cfg, out=tmp_path / "b", progress=False)
    assert reproducible(second) == reproducible(first)


#: A model too large for the smallest board in every way a scheme can use it: 595 k
#: parameters (2.4 MB at fp32, 595 kB at int8) against 128 KiB of SRAM and 512 KiB of flash.
LARGE_MLP = {"name": "mlp", "options": {"hidden": [1024, 512]}}
#: The smallest board, too far from its gateway to reach it (so split inference, which can
#: always send the raw input, has no partition either).
SMALL_AND_FAR = {"profile": "stm32f446re", "count": 1, "link": "ble-2m", "distance_m": 5000.0}
#: Options that make a scheme's device-side model the large one where it has its own.
EXCLUSION_OPTIONS: dict[str, dict[str, Any]] = {
    "early-exit": {"threshold": 0.9, "backbone": "mlp", "widths": [2048, 64, 64]},
}


@pytest.mark.parametrize("scheme", [s for s in SCHEMES.names() if s not in SKIP_CONTRACT])
def test_scheme_excludes_what_does_not_fit(scheme: str, tmp_path: Path) -> None:
    task = scheme_task(
        scheme,
        options=EXCLUSION_OPTIONS.get(scheme, OPTIONS.get(scheme, {})),
        model=LARGE_MLP,
        training={"rounds": 1},
    )
    task["topology"]["devices"] = [*task["topology"]["devices"], SMALL_AND_FAR]
    summary = run_experiment(parse_config(task), out=tmp_path / "r", progress=False)
    assert summary["fits"]["stm32f446re"] is False
    excluded = summary["excluded"]["stm32f446re"]
    assert excluded["count"] == 1
    assert any(word in excluded["reason"] for word in ("SRAM", "flash", "memory", "outage"))
    far = "client-4"  # 2 rpi4, 2 stm32h743, then the small board
    ledger = Ledger.from_csv(tmp_path / "r" / "ledger.csv")
    assert not ledger.select(node=far), "an excluded device does no work and sends nothing"
