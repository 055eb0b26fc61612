"""The ffm scheme: federated LoRA on MiniLM for capable devices, a distilled tiny model for MCUs.

The contract table (test_contract.py) runs every scheme on an image task; ffm
needs a text task, so it has its own contract test here: it converges above
chance, bills the ledger, keeps adapter uploads under 2% of the model, and is
reproducible from its seed on the sequential and Ray backends.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tests.conftest import reproducible, small_task
from tests.sim.test_clock import check_one_clock

from tinylarge.config import ConfigError, parse_config
from tinylarge.data.text import TEXT_HASH_FEATURES, hashed_bag_of_words
from tinylarge.errors import TinylargeError
from tinylarge.hardware.catalogue import get_device
from tinylarge.hardware.cost import total_cost
from tinylarge.hardware.fit import check_fit
from tinylarge.models import foundation as fm
from tinylarge.models import foundation_profile as fp
from tinylarge.models.memory import training_memory_bytes
from tinylarge.results.rundir import RunDir
from tinylarge.schemes.options import scheme_options
from tinylarge.sim.context import Context
from tinylarge.sim.engine import run_experiment

HAS_FFM = all(
    importlib.util.find_spec(m) is not None for m in ("transformers", "peft", fm.MODEL_PACKAGE)
)
needs_ffm = pytest.mark.skipif(
    not HAS_FFM, reason=f"needs the ffm extra (transformers, peft, the model): {fm.INSTALL_HINT}"
)
HAS_RAY = importlib.util.find_spec("ray") is not None
SPEC = fp.FoundationSpec(num_classes=6, max_length=64)


def text_task(data_dir: Path, **overrides: Any) -> dict[str, Any]:
    """ibn-nlu, 240 sentences: 2 phones and an SBC fine-tune LoRA, 2 MCUs train the student."""
    cfg: dict[str, Any] = {
        "name": "ffm-small",
        "seed": 1,
        "task": {"dataset": "ibn-nlu", "subset": 240, "data_dir": str(data_dir)},
        "model": {"name": "mlp", "options": {"hidden": 32}},
        "topology": {
            "server": {"profile": "jetson-orin-nano"},
            "devices": [
                {"profile": "galaxy-s24", "count": 2, "link": "nr-sub6"},
                {"profile": "rpi4", "count": 1, "link": "wifi6"},
                {"profile": "stm32h743", "count": 2, "link": "ble-2m"},
                {"profile": "nrf52840", "count": 1, "link": "ble-2m"},
            ],
        },
        "scheme": {
            "name": "ffm",
            "options": {"max_length": 32, "lora_lr": 0.01, "head_lr": 0.05, "public_fraction": 0.2},
        },
        "engine": {"threads": 2},  # server-side forward passes
        "training": {
            "rounds": 2,
            "batch_size": 8,
            "optimizer": "adam",
            "lr": 0.02,
            "local_epochs": 1,
        },
    }
    cfg.update(overrides)
    return cfg


# -- analytic profile and costs --------------------------------------------------------------
@needs_ffm
def test_minilm_shape_is_the_packaged_model() -> None:
    config = json.loads((fm.model_dir() / "config.json").read_text())
    s = fp.MINILM_L6
    assert (s.vocab_size, s.hidden, s.layers, s.heads) == (
        config["vocab_size"],
        config["hidden_size"],
        config["num_hidden_layers"],
        config["num_attention_heads"],
    )
    assert (s.intermediate, s.max_positions, s.type_vocab) == (
        config["intermediate_size"],
        config["max_position_embeddings"],
        config["type_vocab_size"],
    )


@needs_ffm
def test_analytic_profile_matches_the_real_model() -> None:
    """Parameters, trainable parameters and MACs against the module and torch's flop counter."""
    from torch.utils.flop_counter import FlopCounterMode

    spec = fp.FoundationSpec(num_classes=5, rank=4, targets=("query", "key", "output"))
    model = fm.LoraClassifier(spec)
    model.encoder.base_model.model.set_attn_implementation("eager")  # matmuls the counter sees
    model.eval()
    for text in ("open port 22", "create a flow from host h1 to switch s2 with at least 1 Gbps"):
        batch = model.tokenize([text])
        tokens = int(batch["input_ids"].shape[1])
        prof = fp.foundation_profile(spec, tokens=tokens)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(batch)
        assert prof.macs == counter.get_total_flops() // 2
        assert prof.params == sum(p.numel() for p in model.parameters())
        assert prof.extra["trainable_params"] == sum(p.numel() for p in model.trainable())


def test_lora_memory_and_fit_by_device_class() -> None:
    prof = fp.foundation_profile(SPEC, tokens=64, train_batch_size=16)
    full = (prof.params - prof.extra["trainable_params"]) * 4
    assert prof.flash_bytes == prof.params * 4
    # training only the adapters needs far less memory than training every weight with Adam
    saved = prof.train_memory_bytes - full - prof.extra["trainable_params"] * 4 * 4
    full_ft = training_memory_bytes(
        params=prof.params,
        saved_activation_elements=0,
        input_elements=0,
        batch_size=16,
        optimizer="adam",
    )
    assert prof.train_memory_bytes < full_ft + saved
    assert prof.extra["trainable_params"] / prof.params < 0.02
    for device in ("galaxy-s24", "rpi4", "jetson-nano"):
        assert check_fit(prof, get_device(device), training=True).fits, device
    for device in ("stm32h743", "m55-u55", "nrf52840"):
        report = check_fit(prof, get_device(device), training=True)
        assert not report.fits
        assert report.reason is not None
        assert "flash" in report.reason


def test_lora_training_work_is_one_forward_and_a_light_backward() -> None:
    device = get_device("rpi4")
    steps = [(20, 16), (32, 16), (20, 4)]
    cost = total_cost(fp.lora_train_work(SPEC, steps=steps, batch_size=16), device)
    expected = 0
    for tokens, n in steps:
        prof = fp.foundation_profile(SPEC, tokens=tokens, train_batch_size=16)
        factor = 1 + prof.extra["trainable_macs"] / prof.macs
        assert 1.0 < factor < 1.05
        expected += round((1 + factor) * prof.macs * n)
    assert cost.macs == expected
    assert math.isclose(cost.energy_j, cost.latency_s * device.active_power_w)
    longer = total_cost(fp.lora_train_work(SPEC, steps=[(64, 16)], batch_size=16), device)
    assert (
        longer.macs
        > 2 * total_cost(fp.lora_train_work(SPEC, steps=[(32, 16)], batch_size=16), device).macs
    )


def test_rank_zero_is_the_frozen_model_with_a_trainable_head() -> None:
    frozen = fp.FoundationSpec(num_classes=6, max_length=64, rank=0)
    p0 = fp.foundation_profile(frozen, tokens=64, train_batch_size=16)
    p8 = fp.foundation_profile(SPEC, tokens=64, train_batch_size=16)
    assert p0.extra["trainable_params"] == 384 * 6 + 6
    assert p0.params == p8.params - p8.extra["trainable_params"] + 384 * 6 + 6
    assert p0.train_memory_bytes < p8.train_memory_bytes
    # no backward pass through the encoder: training costs little more than a forward pass
    assert 0 < fp.backward_factor(frozen, p0) < 0.01 < 1 < fp.backward_factor(SPEC, p8)
    device = get_device("galaxy-s24")
    steps = [(64, 16)]
    c0 = total_cost(fp.lora_train_work(frozen, steps=steps, batch_size=16), device)
    c8 = total_cost(fp.lora_train_work(SPEC, steps=steps, batch_size=16), device)
    assert c0.macs < 0.55 * c8.macs


@needs_ffm
def test_rank_zero_classifier_trains_only_its_head() -> None:
    model = fm.LoraClassifier(fp.FoundationSpec(num_classes=3, rank=0))
    assert [p.shape for p in model.trainable()] == [(3, 384), (3,)]
    model.train()
    assert model.head.training
    assert not model.encoder.training  # the frozen encoder runs without dropout


def test_hashed_bag_of_words_is_stable_and_normalized() -> None:
    texts = ["Block port 80 on s1", "block PORT 80 on s1", ""]
    x = hashed_bag_of_words(texts, num_features=256)
    assert x.dtype == np.float32
    assert x.shape == (3, 256)
    assert np.array_equal(x[0], x[1])  # case-insensitive
    assert np.allclose(np.linalg.norm(x[:2], axis=1), 1.0)
    assert not x[2].any()
    # 5 words, 4 bigrams: 9 terms (crc32 buckets, no Python hash salt)
    assert (x[0] > 0).sum() <= 9
    with pytest.raises(TinylargeError):
        hashed_bag_of_words(texts, num_features=0)


# -- text tasks in the engine ----------------------------------------------------------------
def test_text_task_gives_tiny_models_hashed_features(data_dir: Path, tmp_path: Path) -> None:
    cfg = parse_config(
        text_task(
            data_dir,
            scheme={"name": "fedavg"},
            training={
                "rounds": 3,
                "local_epochs": 3,
                "batch_size": 8,
                "optimizer": "adam",
                "lr": 0.02,
            },
        )
    )
    ctx = Context(cfg)
    assert ctx.text_dataset is not None
    assert ctx.text_dataset.name == "ibn-nlu"
    assert ctx.dataset.input_shape == (TEXT_HASH_FEATURES,)
    assert ctx.dataset.num_train == len(ctx.text_dataset.texts_train) == 240
    summary = run_experiment(cfg, out=tmp_path / "run", progress=False)
    assert summary["accuracy"] > 0.5  # chance is 1/6


def test_unknown_dataset_lists_text_datasets() -> None:
    with pytest.raises(ConfigError, match=r"clinc150.*digits.*ibn-nlu"):
        parse_config(small_task(task={"dataset": "intents"}))


def test_ffm_needs_a_text_task(tmp_path: Path) -> None:
    """Refused at validation (``tinylarge validate``) with one line naming the field."""
    cfg = parse_config(small_task(scheme={"name": "ffm"}))
    with pytest.raises(ConfigError, match=r"^config: task\.dataset: .*needs a text dataset") as exc:
        scheme_options(cfg)
    assert len(str(exc.value).splitlines()) == 1
    with pytest.raises(ConfigError, match="needs a text dataset"):
        run_experiment(cfg, out=tmp_path / "run", progress=False)


def test_ffm_needs_a_device_that_holds_the_model(data_dir: Path, tmp_path: Path) -> None:
    mcus = {"devices": [{"profile": "stm32h743", "count": 3, "link": "ble-2m"}]}
    cfg = parse_config(text_task(data_dir, topology=mcus))
    with pytest.raises(TinylargeError, match=r"fine-tune the foundation model.*flash"):
        run_experiment(cfg, out=tmp_path / "run", progress=False)


def test_ffm_options_are_checked(data_dir: Path) -> None:
    cfg = text_task(data_dir)
    cfg["scheme"]["options"]["lora_targets"] = ["query", "ffn"]
    with pytest.raises(ConfigError, match="lora_targets"):
        scheme_options(parse_config(cfg))


def test_missing_extra_names_its_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(TinylargeError, match=r"ffm extra.*pip install 'tinylarge\[ffm\]'"):
        fm.model_dir()


# -- the contract ----------------------------------------------------------------------------


def ledger_rows(run: Path) -> list[dict[str, str]]:
    with (run / "ledger.csv").open() as f:
        return list(csv.DictReader(f))


@needs_ffm
def test_ffm_contract(data_dir: Path, tmp_path: Path) -> None:
    cfg = parse_config(text_task(data_dir))
    first = run_experiment(cfg, out=tmp_path / "a", progress=False)
    # both models learn the intents (chance is 1/6 on 48 test sentences; texts cut at 32
    # tokens cap the foundation model at about 0.8, see docs/ffm.md)
    assert first["large_accuracy"] >= 0.5, first["large_accuracy"]
    assert first["accuracy"] >= 0.3, first["accuracy"]
    assert first["roles"] == {
        "galaxy-s24": "lora",
        "rpi4": "lora",
        "stm32h743": "student",
        "nrf52840": "excluded",  # the student's Adam training memory exceeds its 256 KiB
    }
    # bills the ledger: adapters to and from the LoRA devices, the student to the MCUs
    assert first["device_energy_j"] > 0
    assert first["device_macs"] > 0
    assert all(t > 0 for t in first["round_latency_s"])
    rows = ledger_rows(tmp_path / "a")
    kinds = {(r["what"], r["kind"], r["profile"]) for r in rows}
    for pid in ("galaxy-s24", "rpi4"):
        assert {("adapters", "download", pid), ("adapters", "upload", pid)} <= kinds
        assert ("lora-train", "compute", pid) in kinds
    assert {("student", "upload", "stm32h743"), ("student-train", "compute", "stm32h743")} <= kinds
    assert {("teacher-logits", "compute", "jetson-orin-nano")} <= kinds
    adapter_uploads = [int(r["bytes"]) for r in rows if r["what"] == "adapters"]
    assert set(adapter_uploads) == {first["adapter_bytes"]}
    assert first["adapter_bytes"] < 0.02 * first["full_model_bytes"]
    assert first["adapter_bytes_up_per_round"] == first["adapter_bytes"] * 3
    assert 0 <= first["frozen_accuracy"] <= 1
    assert 0 <= first["zero_shot_accuracy"] <= 1
    # reproducible from its seed: an independent run, on Ray when it is installed, gives
    # the same numbers (the ray extra is in `make test`)
    again = run_experiment(
        cfg, out=tmp_path / "b", backend="ray" if HAS_RAY else "sequential", progress=False
    )
    assert reproducible(again) == reproducible(first)


@needs_ffm
def test_ffm_dropout_outage_and_deadline_on_one_clock(data_dir: Path, tmp_path: Path) -> None:
    """LoRA devices and student devices share one round clock: a student board beyond
    Bluetooth's range is in outage, a LoRA Pi on NB-IoT (its adapters take 33 s to download
    there) straggles past the deadline, dropouts leave; metrics.csv and the ledger agree."""
    deadline_s = 5.0
    cfg = text_task(
        data_dir,
        task={"dataset": "ibn-nlu", "subset": 120, "data_dir": str(data_dir)},
        topology={
            "server": {"profile": "jetson-orin-nano"},
            "devices": [
                {"profile": "galaxy-s24", "count": 2, "link": "nr-sub6"},
                {"profile": "rpi4", "count": 1, "link": "nb-iot"},
                {"profile": "stm32h743", "count": 1, "link": "ble-2m"},
                {"profile": "stm32h743", "count": 1, "link": "ble-2m", "distance_m": 5000.0},
            ],
        },
        scheme={
            "name": "ffm",
            "options": {
                "max_length": 16,
                "lora_rank": 2,
                "public_fraction": 0.2,
                "distill_epochs": 1,
                "frozen_baseline": False,
            },
        },
        engine={"dropout_prob": 0.2, "deadline_s": deadline_s},
    )
    summary = run_experiment(parse_config(cfg), out=tmp_path / "r", progress=False)
    assert summary["roles"] == {"galaxy-s24": "lora", "rpi4": "lora", "stm32h743": "student"}
    check_one_clock(tmp_path / "r", summary, deadline_s)
    left = RunDir(tmp_path / "r").read_dropped()
    assert {why for _, _, why in left} == {"dropout", "outage", "straggler"}
    assert {node for _, node, why in left if why == "outage"} == {"client-4"}
    assert {node for _, node, why in left if why == "straggler"} == {"client-2"}
    reasons = [r["dropped_reasons"] for r in RunDir(tmp_path / "r").read_metrics()]
    assert reasons == ["outage:1 straggler:1", "dropout:2 outage:1"]
