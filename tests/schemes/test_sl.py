"""Split learning: cutting, smashed-data compression, the split training task, the sl scheme."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tests.conftest import resume_after_kill, small_task
from tests.schemes._split_clock import (
    run_under_dropout_outage_and_deadline,
    straggler_leaves_no_trace,
)

from tinylarge.config import parse_config
from tinylarge.data import load_dataset
from tinylarge.errors import TinylargeError
from tinylarge.models.cuts import cut_points, segments
from tinylarge.models.split import compress, message_bytes, quantize_dequantize_int8
from tinylarge.models.weights import get_weights
from tinylarge.models.zoo import ModelSpec, build_model
from tinylarge.schemes._split_task import SplitTask, split_fit
from tinylarge.sim.engine import run_experiment
from tinylarge.sim.ledger import Ledger
from tinylarge.sim.training import FitTask, TrainSettings, fit

# -- cutting ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "shape", "options", "expected"),
    [
        ("mlp", (1, 8, 8), {"hidden": 32}, [3]),
        ("mlp", (1, 8, 8), {"hidden": [32, 16]}, [3, 5]),
        ("cnn-tiny", (1, 28, 28), {"width": 8}, [2, 3, 5, 6]),
        ("cnn1d", (41,), {}, [3, 4, 6, 7]),
        ("resnet-small", (3, 32, 32), {}, [3, 4, 5, 6, 7]),
    ],
)
def test_cut_points_after_activations_and_pools_with_params_on_both_sides(
    name: str, shape: tuple[int, ...], options: dict[str, Any], expected: list[int]
) -> None:
    model = build_model(name, input_shape=shape, num_classes=10, **options)
    points = cut_points(model, input_shape=shape)
    assert [p.index for p in points] == expected
    children = list(model.children())
    x = torch.randn(2, *shape)
    for p in points:
        device, server = segments(model, [p.index])
        assert any(True for _ in device.parameters())
        assert any(True for _ in server.parameters())
        h = device(x)
        assert tuple(h.shape[1:]) == p.output_shape
        # the parts compose back to the whole model
        torch.testing.assert_close(server(h), model(x))
        assert p.layer == f"{p.index - 1}:{type(children[p.index - 1]).__name__}"


def test_a_model_without_a_cut_point_is_a_user_error() -> None:
    model = build_model("mlp", input_shape=(4,), num_classes=3, hidden=[])
    with pytest.raises(TinylargeError, match="no cut point"):
        cut_points(model, input_shape=(4,))


# -- compression --------------------------------------------------------------


def test_int8_quantize_dequantize_error_is_at_most_half_a_step() -> None:
    x = torch.randn(64, 32) * 3
    q = quantize_dequantize_int8(x)
    step = float(x.max() - x.min()) / 255
    assert float((q - x).abs().max()) <= step / 2 + 1e-6
    assert len(torch.unique(q)) <= 256
    relu = torch.relu(x)  # smashed data after a ReLU: 0 stays exactly 0
    assert float(quantize_dequantize_int8(relu)[relu == 0].abs().max()) == 0.0


@pytest.mark.parametrize("mode", ["fp16", "int8"])
def test_compression_passes_gradients_straight_through(mode: str) -> None:
    x = torch.randn(8, 5, requires_grad=True)
    y = compress(x, mode)  # type: ignore[arg-type]
    assert not torch.equal(y, x)
    (y * torch.arange(5.0)).sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad, torch.arange(5.0).expand(8, 5))


def test_message_bytes_per_compression() -> None:
    assert message_bytes(1000, compression="fp32") == 4000
    assert message_bytes(1000, compression="fp16") == 2000
    assert message_bytes(1000, compression="int8") == 1008  # + fp32 scale, int32 zero point


# -- the split training task ------------------------------------------------


def _task(cuts: tuple[int, ...], compression: str = "fp32", **kw: Any) -> SplitTask:
    spec = ModelSpec("mlp", (1, 8, 8), 10, {"hidden": [16, 16]})
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    return SplitTask(
        client=0,
        round=0,
        seed=5,
        spec=spec,
        weights=get_weights(spec.build()),
        cuts=cuts,
        compression=compression,  # type: ignore[arg-type]
        indices=rng.choice(200, size=50, replace=False),
        settings=TrainSettings(batch_size=8, lr=0.1, optimizer=kw.get("optimizer", "sgd")),
    )


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.normal(size=(200, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, 200)


@pytest.mark.parametrize("cuts", [(3,), (5,), (3, 5)])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_split_training_at_fp32_is_the_whole_model_training(
    cuts: tuple[int, ...], optimizer: str
) -> None:
    """Oracle: cutting (and exchanging smashed data and gradients) changes no number."""
    x, y = _data()
    task = _task(cuts, optimizer=optimizer)
    split = split_fit(task, x, y)
    whole = fit(
        FitTask(
            client=0,
            round=0,
            seed=task.seed,
            spec=task.spec,
            weights=task.weights,
            indices=task.indices,
            settings=task.settings,
        ),
        x,
        y,
    )
    for a, b in zip(split.weights, whole.weights, strict=True):
        np.testing.assert_array_equal(a, b)
    assert split.loss == whole.loss


def test_split_task_measures_every_message() -> None:
    x, y = _data()
    r = split_fit(_task((3,), "int8"), x, y)
    batches = [8] * 6 + [2]  # 50 samples, batch 8
    # label sharing: activations (16 values per sample, int8) + one label byte per sample
    assert r.messages[("up", "activations")] == [b * 16 + 8 + b for b in batches]
    assert r.messages[("down", "gradients")] == [b * 16 * 4 for b in batches]
    u = split_fit(_task((3, 5), "fp16"), x, y)
    # U-shaped: the server's output goes down, the head's gradient up; no labels leave
    assert u.messages[("up", "activations")] == [b * 16 * 2 for b in batches]
    assert u.messages[("down", "activations")] == [b * 16 * 2 for b in batches]
    assert u.messages[("up", "gradients")] == [b * 16 * 4 for b in batches]


def test_split_task_is_deterministic() -> None:
    x, y = _data()
    a = split_fit(_task((3,), "int8"), x, y)
    b = split_fit(_task((3,), "int8"), x, y)
    for wa, wb in zip(a.weights, b.weights, strict=True):
        np.testing.assert_array_equal(wa, wb)


# -- the sl scheme ------------------------------------------------------------


def _run(tmp_path: Path, name: str, **overrides: Any) -> dict[str, Any]:
    cfg = parse_config(small_task(**overrides))
    return run_experiment(cfg, out=tmp_path / name, progress=False)


def test_sl_bills_smashed_data_gradients_and_client_model(tmp_path: Path) -> None:
    s = _run(tmp_path, "a", scheme={"name": "sl"})
    ledger = Ledger.from_csv(tmp_path / "a" / "ledger.csv")
    whats = {(e.kind, e.what) for e in ledger}
    assert {
        ("upload", "activations"),
        ("download", "gradients"),
        ("download", "client-model"),
        ("upload", "client-model"),
        ("compute", "split-train"),
        ("compute", "server-train"),
    } <= whats
    # every training sample crosses the link once per round (1 epoch, 4 rounds): 32 hidden
    # fp32 values and a one-byte label up, 32 fp32 gradients down
    samples = 4 * load_dataset("digits", seed=3).num_train
    assert ledger.total("bytes", what="activations") == samples * (32 * 4 + 1)
    assert ledger.total("bytes", what="gradients") == samples * 32 * 4
    assert s["bytes_up"] == ledger.bytes_up()
    # the device side (Flatten, Linear 64x32, ReLU) is what fits and what the summary reports
    assert s["cuts"]["stm32h743"]["cut"] == 3
    assert s["params"] == 64 * 32 + 32
    assert s["fits"] == {"rpi4": True, "stm32h743": True}
    assert 0 < s["leakage"]["3"] <= 1


def test_sl_u_shaped_keeps_labels_and_head_on_the_device(tmp_path: Path) -> None:
    model = {"name": "mlp", "options": {"hidden": [32, 32]}}
    u = _run(tmp_path, "u", model=model, scheme={"name": "sl", "options": {"variant": "u-shaped"}})
    assert u["accuracy"] > 0.75
    assert u["variant"] == "u-shaped"
    # device side = front (Linear 64x32) + head (Linear 32x10)
    assert u["params"] == (64 * 32 + 32) + (32 * 10 + 10)
    ledger = Ledger.from_csv(tmp_path / "u" / "ledger.csv")
    assert ledger.total("bytes", kind="download", what="activations") > 0
    assert ledger.total("bytes", kind="upload", what="gradients") > 0


def test_sl_u_shaped_needs_two_cut_points(tmp_path: Path) -> None:
    with pytest.raises(TinylargeError, match="two cut points"):
        _run(tmp_path, "x", scheme={"name": "sl", "options": {"variant": "u-shaped"}})


def test_sl_compression_shrinks_uplink_and_keeps_accuracy(tmp_path: Path) -> None:
    fp32 = _run(tmp_path, "f", scheme={"name": "sl"})
    int8 = _run(tmp_path, "i", scheme={"name": "sl", "options": {"compression": "int8"}})
    assert int8["bytes_down"] == fp32["bytes_down"]  # gradients stay fp32
    assert int8["bytes_up"] < 0.45 * fp32["bytes_up"]
    assert abs(int8["accuracy"] - fp32["accuracy"]) < 0.05
    assert int8["round_latency_s"][0] < fp32["round_latency_s"][0]


def test_sl_resumes_after_a_kill_to_the_same_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tinylarge.schemes.sl import SplitLearning

    cfg = parse_config(small_task(scheme={"name": "sl", "options": {"compression": "fp16"}}))
    full = run_experiment(cfg, out=tmp_path / "full", progress=False)
    resumed = resume_after_kill(monkeypatch, SplitLearning, 2, cfg, tmp_path / "killed")
    drop = {"wall_time_s"}
    assert {k: v for k, v in resumed.items() if k not in drop} == {
        k: v for k, v in full.items() if k not in drop
    }


# -- the round clock: dropout, outage, deadline ---------------------------------


@pytest.mark.parametrize("variant", ["label-sharing", "u-shaped"])
def test_sl_honours_dropout_outage_and_a_deadline(variant: str, tmp_path: Path) -> None:
    """Turns end in a dropout or an outage; a deadline makes a straggler (its turn billed,
    rolled back) and no turn starts after it; metrics, dropped.csv and ledger agree."""
    run_under_dropout_outage_and_deadline(tmp_path, "sl", {"variant": variant})


def test_sl_rolls_a_stragglers_turn_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    straggler_leaves_no_trace(tmp_path, monkeypatch, {"name": "sl"}, turns=True)
