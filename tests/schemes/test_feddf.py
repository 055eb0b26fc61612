"""Federated distillation: heterogeneous device models, public-set logits, the server ensemble."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tests.conftest import small_task

from tinylarge.config import parse_config
from tinylarge.schemes.feddf import FedDF
from tinylarge.sim.context import Context
from tinylarge.sim.engine import build_scheme, run_experiment
from tinylarge.sim.ledger import Ledger

HETERO = {
    "rpi4": {"name": "mlp", "options": {"hidden": 64}},
    "mcu": {"name": "cnn-tiny", "options": {"width": 4}},
}


def feddf(rounds: int = 2, **options: Any) -> dict[str, Any]:
    return small_task(
        scheme={"name": "feddf", "options": {"client_models": HETERO, **options}},
        training={"rounds": rounds},
    )


def test_heterogeneous_models_exchange_only_public_set_logits(tmp_path: Path) -> None:
    cfg = parse_config(feddf(rounds=3))
    summary = run_experiment(cfg, out=tmp_path / "r", progress=False)
    assert summary["device_models"]["rpi4"]["model"] == "mlp"
    assert summary["device_models"]["stm32h743"]["model"] == "cnn-tiny"
    n_pub, classes = summary["public_samples"], 10
    assert summary["public_set_bytes"] == n_pub * 64 * 2  # 8x8 digits as float16
    ledger = Ledger.from_csv(tmp_path / "r" / "ledger.csv")
    ups = ledger.select(kind="upload")
    assert {e.what for e in ups} == {"public-logits"}
    assert all(e.bytes == n_pub * classes * 4 for e in ups)
    assert len(ups) == cfg.topology.num_devices * cfg.training.rounds
    downs = ledger.select(kind="download")
    public = [e for e in downs if e.what == "public-set"]
    assert len(public) == cfg.topology.num_devices  # once per device
    consensus = [e for e in downs if e.what == "consensus-logits"]
    assert len(consensus) == cfg.topology.num_devices * (cfg.training.rounds - 1)
    assert ledger.select(side="server", what="server-distill")
    assert summary["accuracy"] > 0.5  # chance is 0.1
    assert summary["large_accuracy"] > 0.5
    assert set(summary["accuracy_by_profile"]) == {"rpi4", "stm32h743"}


def test_ensemble_consensus_is_the_sample_weighted_mean_of_device_logits() -> None:
    ctx = Context(parse_config(feddf(consensus="ensemble")))
    scheme = build_scheme(ctx)
    assert isinstance(scheme, FedDF)
    scheme.setup()
    seen: list[Any] = []
    original = scheme.server_round

    def spy(rd: Any, arrived: list[Any]) -> None:
        seen.extend(arrived)
        original(rd, arrived)

    scheme.server_round = spy  # type: ignore[method-assign]
    scheme.run_round(0)
    total = sum(r.num_samples for r in seen)
    expected = sum(r.logits.astype(np.float64) * r.num_samples / total for r in seen)
    assert scheme.consensus is not None
    np.testing.assert_allclose(scheme.consensus, expected, rtol=1e-5, atol=1e-6)
    assert len(seen) == len(ctx.clients)


def test_a_device_whose_flash_cannot_hold_the_public_set_is_excluded(data_dir: Path) -> None:
    tiny = {"stm32f446re": {"name": "mlp", "options": {"hidden": 8}}}
    cfg = parse_config(
        small_task(
            task={"dataset": "fashion-mnist", "subset": 2000, "data_dir": str(data_dir)},
            scheme={"name": "feddf", "options": {"client_models": tiny, "public_fraction": 0.5}},
            topology={
                "server": {"profile": "l4"},
                "devices": [
                    {"profile": "rpi4", "count": 1},
                    {"profile": "stm32f446re", "count": 1, "link": "ble-2m"},
                ],
            },
        )
    )
    ctx = Context(cfg)
    scheme = build_scheme(ctx)
    assert isinstance(scheme, FedDF)
    scheme.setup()
    assert scheme.public_bytes == 1000 * 28 * 28 * 2  # float16 images
    verdicts = {c.profile.id: ctx.verdicts[c.id] for c in ctx.clients}
    mcu = verdicts["stm32f446re"]
    assert not mcu.fits
    assert mcu.reason is not None
    assert "public set" in mcu.reason
    assert mcu.sram_bytes <= mcu.sram_capacity_bytes  # the model itself would train there
    assert verdicts["rpi4"].fits
    assert [c.profile.id for c in scheme.pool] == ["rpi4"]
    assert ctx.fits_summary()["excluded"]["stm32f446re"]["reason"] == mcu.reason
