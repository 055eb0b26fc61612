"""Hinton's distillation loss and the training loop that uses it."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.compress.conftest import Trained
from torch import nn

from tinylarge.compress import distill
from tinylarge.compress.distill import KDConfig
from tinylarge.compress.train import TrainConfig, accuracy, predict_logits, train_model
from tinylarge.data import Dataset
from tinylarge.errors import TinylargeError
from tinylarge.models.zoo import build_model


def test_docstring_examples() -> None:
    assert doctest.testmod(distill).failed == 0


def test_alpha_zero_is_cross_entropy() -> None:
    gen = torch.Generator().manual_seed(0)
    s, t = torch.randn(16, 5, generator=gen), torch.randn(16, 5, generator=gen)
    y = torch.randint(0, 5, (16,), generator=gen)
    loss = distill.distillation_loss(s, t, y, temperature=3.0, alpha=0.0)
    assert torch.allclose(loss, nn.functional.cross_entropy(s, y))


@settings(max_examples=30, deadline=None)
@given(
    temperature=st.floats(0.5, 10.0),
    seed=st.integers(0, 2**16),
)
def test_soft_term_matches_a_slow_reference(temperature: float, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    s, t = torch.randn(4, 3, generator=gen), torch.randn(4, 3, generator=gen)
    y = torch.zeros(4, dtype=torch.long)
    got = float(distill.distillation_loss(s, t, y, temperature=temperature, alpha=1.0))
    ref = 0.0
    for i in range(4):
        p = np.exp(t[i].numpy() / temperature)
        p /= p.sum()
        q = np.exp(s[i].numpy() / temperature)
        q /= q.sum()
        ref += float(np.sum(p * (np.log(p) - np.log(q))))
    ref = ref / 4 * temperature**2
    assert got == pytest.approx(ref, rel=1e-4, abs=1e-6)
    assert got >= -1e-6


def test_bad_hyper_parameters_are_user_errors() -> None:
    with pytest.raises(TinylargeError, match="temperature"):
        KDConfig(temperature=0.0)
    with pytest.raises(TinylargeError, match="alpha"):
        KDConfig(alpha=1.5)
    with pytest.raises(TinylargeError, match="optimizer"):
        TrainConfig(optimizer="lbfgs")


def test_a_student_trained_on_teacher_logits_imitates_the_teacher(trained_mlp: Trained) -> None:
    """Pure distillation (alpha=1) with the labels scrambled: only the teacher can teach."""
    ds = trained_mlp.dataset
    teacher_logits = predict_logits(trained_mlp.model, ds.x_train)
    wrong = (ds.y_train + 1) % ds.num_classes
    torch.manual_seed(5)
    student = build_model("mlp", input_shape=ds.input_shape, num_classes=10, hidden=32)
    cfg = TrainConfig(epochs=15, batch_size=32, lr=3e-3, seed=5)
    train_model(
        student, ds.x_train, wrong, config=cfg, teacher_logits=teacher_logits,
        kd=KDConfig(temperature=2.0, alpha=1.0),
    )  # fmt: skip
    assert accuracy(predict_logits(student, ds.x_test), ds.y_test) > 0.85


def test_training_is_reproducible(digits: Dataset) -> None:
    outs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model("mlp", input_shape=digits.input_shape, num_classes=10, hidden=16)
        train_model(model, digits.x_train, digits.y_train, config=TrainConfig(epochs=2, seed=9))
        outs.append(predict_logits(model, digits.x_test))
    np.testing.assert_array_equal(outs[0], outs[1])


def _reference_training(
    model: nn.Module, x: np.ndarray, y: np.ndarray, teacher: np.ndarray, *, seed: int
) -> float:
    """The obvious loop, written out: Adam at 3e-3, batches of 32, 2 epochs, cosine decay of
    the rate to 0 over all steps, ``0.3 * T^2 KL + 0.7 CE`` at ``T = 3``; last epoch's mean."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    xs, ys, ts = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(teacher)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    steps_per_epoch = -(-len(xs) // 32)
    total_steps, step, last = 2 * steps_per_epoch, 0, 0.0
    model.train()
    for _ in range(2):
        order = torch.randperm(len(xs), generator=gen)
        losses = []
        for i in range(0, len(xs), 32):
            idx = order[i : i + 32]
            for group in opt.param_groups:
                group["lr"] = 3e-3 * 0.5 * (1.0 + np.cos(np.pi * step / total_steps))
            step += 1
            opt.zero_grad()
            out = model(xs[idx])
            soft = nn.functional.kl_div(
                nn.functional.log_softmax(out / 3.0, dim=1),
                nn.functional.softmax(ts[idx] / 3.0, dim=1),
                reduction="batchmean",
            )
            loss = 0.3 * (soft * 9.0) + 0.7 * nn.functional.cross_entropy(out, ys[idx])
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        last = sum(losses) / len(losses)
    return last


def test_distillation_on_the_one_loop_is_the_obvious_loop(trained_mlp: Trained) -> None:
    """train_model runs sim.training's loop: it is the textbook loop, bit for bit."""
    ds = trained_mlp.dataset
    teacher = predict_logits(trained_mlp.model, ds.x_train)
    models = []
    for _ in range(2):
        torch.manual_seed(11)
        models.append(build_model("mlp", input_shape=ds.input_shape, num_classes=10, hidden=16))
    got = train_model(
        models[0], ds.x_train, ds.y_train, teacher_logits=teacher,
        config=TrainConfig(epochs=2, batch_size=32, lr=3e-3, seed=4, schedule="cosine"),
        kd=KDConfig(temperature=3.0, alpha=0.3),
    )  # fmt: skip
    ref = _reference_training(models[1], ds.x_train, ds.y_train, teacher, seed=4)
    assert got == ref
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        assert torch.equal(a, b)


def test_the_soft_term_has_one_home() -> None:
    from tinylarge.sim import training

    assert distill.kd_loss is training.kd_loss
