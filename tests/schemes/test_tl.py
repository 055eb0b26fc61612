"""Transfer learning: part selection against the profiler, part-only training, the TL protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.conftest import small_task

from tinylarge.config import parse_config
from tinylarge.hardware.catalogue import get_device
from tinylarge.models.profiler import profile_model
from tinylarge.models.weights import get_weights, nbytes
from tinylarge.models.zoo import ModelSpec
from tinylarge.schemes._device_models import hold_out
from tinylarge.schemes._parts import PartTask, candidate_parts, choose_part, train_part
from tinylarge.sim.context import Context
from tinylarge.sim.engine import build_scheme, run_experiment
from tinylarge.sim.ledger import Ledger
from tinylarge.sim.training import TrainSettings

CNN = ModelSpec("cnn-tiny", (1, 28, 28), 10, {"width": 8})


def test_parts_shrink_from_all_to_head_and_head_memory_matches_a_hand_count() -> None:
    parts = candidate_parts(CNN, batch_size=32, optimizer="sgd")
    names = [p.name for p in parts]
    assert names == ["all", "from-3", "head", "bias"]
    # suffixes start at a cut (models/cuts.py): after the first conv stage's pooling, and the
    # head after the second's, so the head is Flatten + Linear (never a cut after a view)
    assert [p.cut for p in parts] == [0, 3, 6, None]
    suffixes = parts[:3]
    assert [p.trainable_params for p in suffixes] == sorted(
        (p.trainable_params for p in suffixes), reverse=True
    )
    assert suffixes[0].memory_bytes > suffixes[1].memory_bytes > suffixes[2].memory_bytes
    # head = Flatten + Linear(16*7*7 -> 10) behind the frozen prefix: weights + grads (SGD), the
    # batch of input features (Flatten is a view: no buffer of its own) and of logits, plus the
    # prefix's peak inference SRAM at fp32
    head, features, batch = parts[2], 16 * 7 * 7, 32
    params = features * 10 + 10
    assert head.trainable_params == params
    assert head.prefix is not None
    prefix_peak = head.prefix.peak_sram_bytes
    assert head.memory_bytes == params * 4 * 2 + (features + 10) * 4 * batch + prefix_peak
    # the whole-model part is the profiler's training memory of the model
    whole = profile_model(CNN.build(), input_shape=CNN.input_shape, train_batch_size=32)
    assert parts[0].suffix.macs == whole.macs


def test_a_model_without_a_cut_point_trains_as_a_whole() -> None:
    """A softmax regression (no hidden layer) has no cut: the only parts are all and bias."""
    spec = ModelSpec("mlp", (1, 8, 8), 10, {"hidden": []})
    parts = candidate_parts(spec, batch_size=16, optimizer="sgd")
    assert [p.name for p in parts] == ["all", "bias"]
    assert parts[0].trainable_params == 64 * 10 + 10
    assert parts[1].trainable_params == 10


def test_choose_part_fits_the_device_sram() -> None:
    parts = candidate_parts(CNN, batch_size=32, optimizer="sgd")
    rpi, mcu = get_device("rpi4"), get_device("stm32f746")
    assert choose_part(parts, rpi, mode="auto")[0] is parts[0]
    part, _ = choose_part(parts, mcu, mode="auto")
    assert part is not None
    assert part.name != "all"
    assert part.memory_bytes <= mcu.sram_bytes < parts[0].memory_bytes
    none, reason = choose_part(parts, get_device("rp2040"), mode="auto")
    assert none is None
    assert "cannot train" in reason
    none, reason = choose_part(parts, mcu, mode="all")
    assert none is None
    assert "SRAM" in reason


@pytest.mark.parametrize("which", ["head", "bias"])
def test_train_part_changes_only_its_part(which: str) -> None:
    spec = ModelSpec("cnn-tiny", (1, 8, 8), 10, {"width": 4})
    parts = {p.name: p for p in candidate_parts(spec, batch_size=8, optimizer="sgd")}
    part = parts[which]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    weights = get_weights(spec.build())
    task = PartTask(
        client=0,
        seed=1,
        spec=spec,
        weights=weights,
        indices=np.arange(64),
        settings=TrainSettings(epochs=2, batch_size=8, lr=0.1),
        cut=part.cut,
        keys=part.keys,
    )
    result = train_part(task, x, y)
    assert set(result.tensors) == set(part.keys)
    keys = list(spec.build().state_dict())
    for key, before in zip(keys, weights, strict=True):
        if key in part.keys:
            assert not np.array_equal(result.tensors[key], before), key
    if which == "bias":
        assert all(k.endswith(".bias") for k in part.keys)


def test_hold_out_keeps_server_data_off_devices() -> None:
    ctx = Context(parse_config(small_task()))
    server, local = hold_out(ctx, fraction=0.2, classes=[0, 1, 2])
    assert set(np.unique(ctx.dataset.y_train[server])) <= {0, 1, 2}
    for c in ctx.clients:
        assert not set(local[c.id]) & set(server)
        assert set(local[c.id]) | (set(c.indices) & set(server)) == set(c.indices)


def test_tl_ships_the_model_once_and_keeps_fine_tuned_models_on_devices(tmp_path: Path) -> None:
    cfg = parse_config(small_task(scheme={"name": "tl", "options": {"pretrain_epochs": 3}}))
    summary = run_experiment(cfg, out=tmp_path / "r", progress=False)
    size = nbytes(get_weights(Context(cfg).spec.build()))
    devices, rounds = cfg.topology.num_devices, cfg.training.rounds
    assert summary["bytes_down"] == devices * size  # the pre-trained model, once each
    assert summary["bytes_up"] == devices * rounds * 8  # loss + sample count per round
    ledger = Ledger.from_csv(tmp_path / "r" / "ledger.csv")
    pretrain = ledger.select(side="server", what="pretrain")
    assert len(pretrain) == 1
    assert pretrain[0].round == 0
    assert summary["large_accuracy"] == summary["pretrained_accuracy"]
    # local fine-tuning on top of the server's model beats the server's model alone
    assert summary["accuracy"] > summary["large_accuracy"]
    assert summary["parts"]["stm32h743"]["part"] == "all"


def test_tl_source_task_pretraining_only_knows_its_classes(tmp_path: Path) -> None:
    opts = {"server_classes": [0, 1, 2, 3, 4], "server_fraction": 0.3}
    cfg = parse_config(small_task(scheme={"name": "tl", "options": opts}))
    summary = run_experiment(cfg, out=tmp_path / "r", progress=False)
    # the pre-trained model cannot recognise the five classes it never saw
    assert summary["large_accuracy"] < 0.55
    assert summary["accuracy"] > 0.75


EXAMPLES = ["tl_fmnist", "ftl_fmnist_mcu", "fedgkt_fmnist", "feddf_hetero", "fml_hetero"]


@pytest.mark.parametrize("name", EXAMPLES)
def test_knowledge_transfer_examples_set_up(
    name: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each example validates, loads its data and finds devices that can take part."""
    from tinylarge.config import load_config

    monkeypatch.setenv("TINYLARGE_DATA", str(data_dir))
    cfg = load_config(Path(__file__).parents[2] / "examples" / f"{name}.yaml")
    assert cfg.scheme.name == name.split("_")[0]
    ctx = Context(cfg)
    scheme = build_scheme(ctx)
    scheme.setup()
    extras = scheme.summary_extras()
    assert any(ctx.fits_summary()["fits"].values())
    if name.startswith(("tl", "ftl")):
        # the 320 KiB F746 adapts only a part of the CNN; the others train all of it
        assert extras["parts"]["stm32f746"]["part"] not in ("all", None)
        assert extras["parts"]["rpi4"]["part"] == "all"
