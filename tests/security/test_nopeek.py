"""Defenses of smashed data: NoPeek's distance correlation against the slow definition, the
cut noise's scale on what a device sends, the device's bill, and the one-line refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tinylarge.errors import TinylargeError
from tinylarge.schemes._split_task import Sending, run_parts
from tinylarge.security.leakage import distance_correlation
from tinylarge.security.nopeek import (
    NOISE_OPS_PER_VALUE,
    NOPEEK_PAIR_OPS,
    SmashedGuard,
    distance_correlation_loss,
    make_guard,
)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 12), dx=st.integers(1, 6), dz=st.integers(1, 6), seed=st.integers(0, 999))
def test_the_loss_is_the_leakage_measure(n: int, dx: int, dz: int, seed: int) -> None:
    """Same V-statistic as :func:`distance_correlation` (scipy distances, float64)."""
    rng = np.random.default_rng(seed)
    x, z = rng.normal(size=(n, dx)), rng.normal(size=(n, dz))
    got = float(distance_correlation_loss(torch.from_numpy(x), torch.from_numpy(z)))
    assert got == pytest.approx(distance_correlation(x, z), abs=1e-5)


def test_identical_inputs_correlate_fully_and_independent_ones_do_not() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1024, 8, generator=g, dtype=torch.float64)
    assert float(distance_correlation_loss(x, x)) == pytest.approx(1.0, abs=1e-6)
    assert float(distance_correlation_loss(x, 3 * x + 1)) == pytest.approx(1.0, abs=1e-6)
    independent = float(distance_correlation_loss(x, torch.randn(1024, 8, generator=g)))
    assert independent < 0.2  # the V-statistic's small-sample bias only


def test_the_loss_has_a_finite_gradient_with_repeated_samples() -> None:
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 1.0]])
    z = torch.tensor([[0.5], [0.5], [2.0]], requires_grad=True)
    loss = distance_correlation_loss(x, z)
    loss.backward()
    assert z.grad is not None
    assert torch.isfinite(z.grad).all()


@pytest.mark.parametrize("distribution", ["gaussian", "laplace"])
def test_cut_noise_on_what_the_device_sends_has_the_stated_scale(distribution: str) -> None:
    """The server part receives the device part's output plus noise of std ``sigma``."""
    torch.manual_seed(0)
    device = nn.Sequential(nn.Linear(4, 64), nn.ReLU())
    received: list[torch.Tensor] = []

    class Server(nn.Module):
        def forward(self, h: torch.Tensor) -> torch.Tensor:
            received.append(h.detach())
            return h.sum(dim=1, keepdim=True)

    guard = make_guard("cut-noise", {"sigma": 0.7, "distribution": distribution})
    sending = Sending(guard, torch.Generator().manual_seed(1), [])
    x = torch.randn(500, 4)
    run_parts([device, Server()], x, "fp32", sending=sending)
    noise = (received[0] - sending.smashed[0].detach()).flatten()
    assert float(noise.std()) == pytest.approx(0.7, rel=0.02)
    assert abs(float(noise.mean())) < 0.01
    # Gaussian kurtosis 3, Laplace 6: the distribution is the one asked for
    kurtosis = float(((noise - noise.mean()) ** 4).mean() / noise.var() ** 2)
    assert kurtosis == pytest.approx(3.0 if distribution == "gaussian" else 6.0, rel=0.1)
    # the same generator seed draws the same noise; sigma 0 sends the activations as they are
    again = Sending(guard, torch.Generator().manual_seed(1), [])
    received.clear()
    run_parts([device, Server()], x, "fp32", sending=again)
    assert torch.equal(received[0], sending.smashed[0].detach() + noise.reshape(500, 64))
    quiet = Sending(SmashedGuard("cut-noise", sigma=0.0), torch.Generator(), [])
    received.clear()
    run_parts([device, Server()], x, "fp32", sending=quiet)
    assert torch.equal(received[0], quiet.smashed[0].detach())


def test_the_device_pays_for_its_defense_by_hand() -> None:
    """Batches of 4 and 2, 64 input and 10 smashed values per sample."""
    nopeek = SmashedGuard("nopeek", weight=1.0)
    assert nopeek.work([4, 2], input_elements=64, smashed_elements=10).values == (16 + 4) * (
        64 + 3 * 10 + NOPEEK_PAIR_OPS
    )
    noise = SmashedGuard("cut-noise", sigma=0.5)
    assert noise.work([4, 2], input_elements=64, smashed_elements=10).values == 60 * 8
    assert NOISE_OPS_PER_VALUE == 8
    assert (
        SmashedGuard("nopeek", weight=0.0).work([4], input_elements=1, smashed_elements=1).values
        == 0
    )


def test_nopeek_with_cut_noise_on_top_does_both_and_pays_for_both() -> None:
    """``nopeek`` with ``sigma``: the NoPeek term in the loss and the noise on what is sent,
    billed as the sum of the two defenses' work."""
    guard = make_guard("nopeek", {"weight": 6.0, "sigma": 1.0})
    x, z = torch.randn(16, 5), torch.randn(16, 3)
    penalty = guard.penalty(x, z)
    assert penalty is not None
    assert float(penalty) == pytest.approx(6.0 * float(distance_correlation_loss(x, z)), rel=1e-6)
    sent = guard.perturb(z, torch.Generator().manual_seed(2))
    alone = make_guard("cut-noise", {"sigma": 1.0}).perturb(z, torch.Generator().manual_seed(2))
    assert torch.equal(sent, alone)
    assert not torch.equal(sent, z)
    both = guard.work([4, 2], input_elements=64, smashed_elements=10).values
    assert both == (16 + 4) * (64 + 3 * 10 + NOPEEK_PAIR_OPS) + 60 * NOISE_OPS_PER_VALUE
    # without sigma NoPeek sends its activations as they are
    assert torch.equal(make_guard("nopeek", {"weight": 6.0}).perturb(z, torch.Generator()), z)


def test_nopeek_penalty_is_weighted_distance_correlation() -> None:
    x, z = torch.randn(16, 5), torch.randn(16, 3)
    penalty = SmashedGuard("nopeek", weight=2.5).penalty(x, z)
    assert penalty is not None
    assert float(penalty) == pytest.approx(2.5 * float(distance_correlation_loss(x, z)), rel=1e-6)
    assert SmashedGuard("cut-noise", sigma=1.0).penalty(x, z) is None


def test_bad_guard_options_are_refused() -> None:
    with pytest.raises(TinylargeError, match=r"defense 'nopeek': option weight"):
        make_guard("nopeek", {"weight": -1.0})
    with pytest.raises(TinylargeError, match=r"defense 'nopeek': option sigma"):
        make_guard("nopeek", {"weight": 1.0, "sigma": -0.5})
    with pytest.raises(TinylargeError, match=r"option sigmaa: unknown option; known: distribution"):
        make_guard("cut-noise", {"sigmaa": 1.0})
    with pytest.raises(TinylargeError, match="unknown split defense 'krum'"):
        make_guard("krum", {})


# -- refusals on the command line ----------------------------------------------------------------


def split_run(**sections: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": "sl-sec",
        "task": {"dataset": "digits"},
        "model": {"name": "cnn-tiny", "options": {"width": 4}},
        "topology": {"devices": [{"profile": "rpi4", "count": 2}]},
        "scheme": {"name": "sl"},
        "training": {"rounds": 1},
    }
    cfg.update(sections)
    return cfg


INVERSION = {"name": "model-inversion"}
BAD: list[tuple[dict[str, Any], str]] = [
    (split_run(scheme={"name": "fedavg"}, defense={"name": "nopeek"}), "schemes that send"),
    (split_run(scheme={"name": "fedavg"}, attack=INVERSION), "schemes that send smashed data"),
    (split_run(task={"dataset": "nsl-kdd"}, attack=INVERSION), "is not one (image datasets"),
    (split_run(attack={"name": "model-inversion", "options": {"epochs": 0}}), "option epochs"),
    (split_run(attack={"name": "model-inversion", "options": {"aux": 5}}), "unknown option"),
    (split_run(defense={"name": "cut-noise", "options": {"sigma": -1}}), "option sigma"),
    (split_run(defense={"name": "nopeek", "pre": "bucketing"}), "defense.pre: a field of the"),
    (split_run(defense={"name": "median"}), "takes defense cut-noise, nopeek"),
    (split_run(attack={**INVERSION, "clean_twin": True}), "attack.clean_twin"),
    (split_run(attack=INVERSION, training={"target_accuracy": 0.5}), "target_accuracy"),
    (
        split_run(
            attack=INVERSION,
            topology={"devices": [{"profile": "rpi4", "count": 2, "malicious": 1}]},
        ),
        "is the server's (honest-but-curious)",
    ),
]


@pytest.mark.parametrize(("cfg", "line"), BAD, ids=[b[1][:24] for b in BAD])
def test_the_cli_refuses_a_split_attack_or_defense_where_it_cannot_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cfg: dict[str, Any], line: str
) -> None:
    from tinylarge.cli.app import main

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert line in err
    assert len(err.splitlines()) == 1
    assert "Traceback" not in err


def test_the_cli_accepts_the_split_attack_and_each_defense(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tinylarge.cli.app import main

    for i, defense in enumerate(
        [{"name": "nopeek", "options": {"weight": 1.0}}, {"name": "cut-noise"}]
    ):
        path = tmp_path / f"ok{i}.yaml"
        path.write_text(yaml.safe_dump(split_run(attack=INVERSION, defense=defense)))
        assert main(["validate", str(path)]) == 0, capsys.readouterr().err
