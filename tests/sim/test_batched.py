"""Batched training against the per-client loop (tinylarge.sim.training.fit), client by client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tests.conftest import reproducible
from tests.schemes.test_contract import scheme_task

from tinylarge.config import parse_config
from tinylarge.models.weights import get_weights
from tinylarge.models.zoo import ModelSpec
from tinylarge.sim.backends import fit_many, make_backend
from tinylarge.sim.batched import batchable, fit_batch, plan
from tinylarge.sim.engine import run_experiment
from tinylarge.sim.training import FitTask, TrainSettings, fit

RNG = np.random.default_rng(3)
X = RNG.normal(size=(400, 1, 12, 12)).astype(np.float32)
Y = RNG.integers(0, 10, size=400)

MODELS = {
    "mlp": ModelSpec("mlp", (1, 12, 12), 10, {"hidden": [24, 16]}),
    "cnn-tiny": ModelSpec("cnn-tiny", (1, 12, 12), 10, {"width": 4}),
}
SETTINGS = {
    "sgd": TrainSettings(epochs=2, batch_size=8, lr=0.1),
    "momentum": TrainSettings(
        epochs=2, batch_size=8, lr=0.05, optimizer="momentum", weight_decay=1e-3
    ),
    "nesterov-cosine": TrainSettings(
        epochs=1, batch_size=5, lr=0.05, optimizer="momentum", nesterov=True, schedule="cosine"
    ),
}


def tasks_for(spec: ModelSpec, settings: TrainSettings, sizes: list[int]) -> list[FitTask]:
    torch.manual_seed(0)
    weights = get_weights(spec.build())
    return [
        FitTask(
            client=i,
            round=0,
            seed=1000 + i,
            spec=spec,
            weights=weights,
            indices=np.sort(RNG.choice(len(Y), size=n, replace=False)),
            settings=settings,
        )
        for i, n in enumerate(sizes)
    ]


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_batched_equals_the_loop(model: str, setting: str) -> None:
    # uneven clients: 16 and 13 samples take 2 steps of 8 (the 13's last batch is short),
    # 7 and 3 one, 24 three: grouped by step count, padding masked out of the loss
    sizes = [16, 13, 7, 3, 24, 16, 1]
    tasks = tasks_for(MODELS[model], SETTINGS[setting], sizes)
    assert all(batchable(t) for t in tasks)
    groups = plan(tasks)
    assert sorted(i for g in groups for i in g) == list(range(len(tasks)))
    assert any(len(g) > 1 for g in groups)
    for group in groups:
        batch = fit_batch([tasks[i] for i in group], X, Y)
        for i, got in zip(group, batch, strict=True):
            want = fit(tasks[i], X, Y)
            assert (got.client, got.num_samples, got.steps, got.examples) == (
                want.client,
                want.num_samples,
                want.steps,
                want.examples,
            )
            assert got.loss == pytest.approx(want.loss, rel=1e-5)
            for a, b in zip(got.weights, want.weights, strict=True):
                assert a.shape == b.shape
                assert a.dtype == b.dtype
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
            # and training moved the weights (the comparison is not of two no-ops)
            assert any(
                not np.allclose(a, w) for a, w in zip(got.weights, tasks[i].weights, strict=True)
            )


def test_steps_group_clients_and_other_work_trains_alone() -> None:
    spec, s = MODELS["mlp"], SETTINGS["sgd"]
    tasks = tasks_for(spec, s, [16, 13, 7, 0, 9])
    tasks.append(FitTask(client=9, round=0, seed=1, spec=spec, weights=tasks[0].weights,
                         indices=tasks[0].indices, settings=s, trainer="prox",
                         trainer_options={"mu": 0.1}))  # fmt: skip
    adam = s.with_(optimizer="adam")
    tasks.append(FitTask(client=10, round=0, seed=2, spec=spec, weights=tasks[0].weights,
                         indices=tasks[0].indices, settings=adam))  # fmt: skip
    assert not batchable(tasks[-1])
    assert not batchable(tasks[-2])
    # 16 and 13 samples: 2 steps an epoch; 7: 1; 9: 2 (with 16 and 13); 0 samples, prox
    # and adam alone
    assert sorted(plan(tasks)) == sorted([[0, 1, 4], [2], [3], [5], [6]])


def test_fit_many_on_the_batched_backend_is_the_loop_in_task_order() -> None:
    spec, s = MODELS["cnn-tiny"], SETTINGS["momentum"]
    tasks = tasks_for(spec, s, [16, 7, 13, 0, 24, 16])
    backend = make_backend("batched", X, Y, workers=1)
    batched = fit_many(backend, tasks)
    again = fit_many(backend, tasks)
    loop = fit_many(make_backend("sequential", X, Y), tasks)
    assert [r.client for r in batched] == [t.client for t in tasks]
    for a, b, c in zip(batched, loop, again, strict=True):
        for wa, wb, wc in zip(a.weights, b.weights, c.weights, strict=True):
            np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(wa, wc)  # reproducible: the same numbers again


def close(a: Any, b: Any, rel: float) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a == pytest.approx(b, rel=rel, abs=1e-9)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], rel) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(close(x, y, rel) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_batched_run_is_the_sequential_run(workers: int, tmp_path: Path) -> None:
    task = scheme_task("fedavg", training={"rounds": 2}, engine={"workers": workers})
    cfg = parse_config(task)
    seq = run_experiment(cfg, out=tmp_path / "seq", backend="sequential", progress=False)
    bat = run_experiment(cfg, out=tmp_path / "bat", backend="batched", progress=False)
    assert bat["backend"] == "batched"
    # float rounding of batched products may move a loss in the 6th digit, not a prediction
    assert close(reproducible(bat), reproducible(seq), rel=1e-4)


def test_relu_then_pool_runs_as_pool_then_relu_with_the_same_values_and_gradients() -> None:
    # windows that are all negative, all zero, tied positives and mixed: the swap
    # _forward makes must give the layers' own values and gradients, ties included
    from tinylarge.sim.batched import Flow, _forward

    x = torch.tensor(
        [
            [
                [
                    [-1.0, -2.0, 0.0, 0.0],
                    [-3.0, -0.5, 0.0, 0.0],
                    [2.0, 2.0, 1.0, -1.0],
                    [1.0, 2.0, 3.0, 0.5],
                ]
            ]
        ]
    )
    layers: list[torch.nn.Module] = [torch.nn.ReLU(), torch.nn.MaxPool2d(2)]
    a = x.clone().requires_grad_()
    want = torch.nn.Sequential(*layers)(a)
    want.backward(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]))
    b = x.clone().requires_grad_()
    got = _forward(layers, [[], []], Flow(b, "channels", 1)).x
    got.backward(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]))
    assert torch.equal(got, want)
    assert a.grad is not None
    assert b.grad is not None
    assert torch.equal(b.grad, a.grad)
    assert a.grad.abs().sum() > 0
