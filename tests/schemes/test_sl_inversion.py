"""Attacks on split learning in a run: the server's model inversion at the end of sl and fsl,
the devices' NoPeek and cut noise in their training, who pays for what, and the example."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from tests.conftest import kill_in_round

from tinylarge.config import parse_config
from tinylarge.data import load_dataset
from tinylarge.models.cuts import segments
from tinylarge.models.zoo import ModelSpec
from tinylarge.schemes._split_task import SplitTask, split_fit
from tinylarge.schemes.sl import SplitLearning
from tinylarge.security.leakage import distance_correlation
from tinylarge.security.nopeek import SmashedGuard
from tinylarge.sim.engine import run_experiment
from tinylarge.sim.ledger import Ledger
from tinylarge.sim.training import TrainSettings, build

ATTACK = {"name": "model-inversion", "options": {"aux_samples": 400, "epochs": 8, "lr": 3e-3}}


def split_run(scheme: str = "sl", cut: int | dict[str, int] = 2, **sections: Any) -> dict[str, Any]:
    """Split learning of cnn-tiny on the digits set by 3 Raspberry Pis, the server attacking."""
    cfg: dict[str, Any] = {
        "name": "slinv",
        "seed": 2,
        "task": {"dataset": "digits", "partition": {"name": "iid"}},
        "model": {"name": "cnn-tiny", "options": {"width": 4}},
        "topology": {
            "server": {"profile": "jetson-orin-nano"},
            "devices": [{"profile": "rpi4", "count": 3, "link": "wifi6"}],
        },
        "scheme": {"name": scheme, "options": {"cut": cut}},
        "training": {"rounds": 2, "local_epochs": 1, "batch_size": 16, "lr": 0.1},
        "attack": ATTACK,
    }
    cfg.update(sections)
    return cfg


def run(tmp_path: Path, name: str, cfg: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return run_experiment(parse_config(cfg), out=tmp_path / name, progress=False, **kw)


@pytest.mark.parametrize("scheme", ["sl", "fsl"])
def test_the_server_inverts_a_shallow_cut_after_the_last_round(tmp_path: Path, scheme: str) -> None:
    s = run(tmp_path, scheme, split_run(scheme))
    assert (s["attack"], s["defense"], s["malicious"]) == ("model-inversion", None, 0)
    inv = s["inversion"]["2"]
    assert inv["layer"] == "1:ReLU"
    assert s["inversion_ssim"] == inv["ssim"]
    assert s["inversion_ssim"] > s["inversion_baseline_ssim"] + 0.3
    assert s["inversion_psnr"] > s["inversion_baseline_psnr"] + 5
    # the class prior (mean auxiliary image of each victim's class) sits between the
    # untrained decoder and the attack on an undefended shallow cut
    assert inv["class_prior_ssim"] == s["inversion_class_prior_ssim"]
    assert s["inversion_baseline_ssim"] < s["inversion_class_prior_ssim"] < s["inversion_ssim"]
    events = list(Ledger.from_csv(tmp_path / scheme / "ledger.csv"))
    attack = [e for e in events if e.what == "inversion-attack"]
    assert len(attack) == 1
    assert (attack[0].round, attack[0].side, attack[0].node) == (1, "server", "server")
    assert attack[0].seconds == pytest.approx(s["inversion_server_s"])
    assert attack[0].seconds > 0
    # server work after the device phase: the last round's latency includes it
    last = [e for e in events if e.round == 1]
    assert attack[0].at_s + attack[0].seconds == pytest.approx(
        max(e.at_s + e.seconds for e in last)
    )


def test_a_deeper_cut_leaks_less_and_every_cut_in_use_is_attacked(tmp_path: Path) -> None:
    shallow = run(tmp_path, "shallow", split_run(cut=2))
    deep = run(tmp_path, "deep", split_run(cut=6))
    assert list(deep["inversion"]) == ["6"]
    assert deep["inversion_ssim"] < shallow["inversion_ssim"]
    mixed = split_run(cut={"rpi4": 2, "rpi5": 5})
    mixed["topology"]["devices"] = [
        {"profile": "rpi4", "count": 2, "link": "wifi6"},
        {"profile": "rpi5", "count": 1, "link": "wifi6"},
    ]
    s = run(tmp_path, "mixed", mixed)
    assert sorted(s["inversion"]) == ["2", "5"]
    # the headline is the cut the attack recovers best
    assert s["inversion_ssim"] == max(v["ssim"] for v in s["inversion"].values())


def test_cut_noise_lowers_what_the_attack_recovers_and_the_device_pays(tmp_path: Path) -> None:
    plain = run(tmp_path, "plain", split_run())
    noisy = run(
        tmp_path, "noisy", split_run(defense={"name": "cut-noise", "options": {"sigma": 1.0}})
    )
    assert noisy["defense"] == "cut-noise"
    assert noisy["inversion_ssim"] < 0.8 * plain["inversion_ssim"]
    # the class prior reads only the attacker's images and the victims: the defense cannot move it
    assert noisy["inversion_class_prior_ssim"] == plain["inversion_class_prior_ssim"]
    events = list(Ledger.from_csv(tmp_path / "noisy" / "ledger.csv"))
    paid = [e for e in events if e.what == "defense-cut-noise"]
    trained = [e for e in events if e.what == "split-train"]
    assert len(paid) == len(trained) == 6  # every turn of 3 devices in 2 rounds
    assert all(e.side == "device" and e.seconds > 0 for e in paid)
    assert noisy["defense_device_seconds"] == pytest.approx(sum(e.seconds for e in paid))
    assert noisy["device_energy_j"] > plain["device_energy_j"]


def test_nopeek_training_decorrelates_the_smashed_data() -> None:
    """One client's split training with NoPeek at weight 5 against none, from the same
    weights and seed: the smashed data of held-out digits correlates less with them."""
    ds = load_dataset("digits", seed=0)
    spec = ModelSpec("cnn-tiny", ds.input_shape, ds.num_classes, {"width": 4})
    model = spec.build()
    settings = TrainSettings(epochs=3, batch_size=32, lr=0.1)

    def trained(guard: SmashedGuard | None) -> float:
        task = SplitTask(
            client=0, round=0, seed=1, spec=spec, weights=[w.copy() for w in _weights(model)],
            cuts=(2,), compression="fp32", indices=np.arange(len(ds.y_train)),
            settings=settings, guard=guard,
        )  # fmt: skip
        r = split_fit(task, ds.x_train, ds.y_train)
        device = segments(build(spec, r.weights), (2,))[0]
        import torch

        with torch.no_grad():
            z = device(torch.from_numpy(ds.x_test[:200])).numpy()
        return distance_correlation(ds.x_test[:200], z)

    assert trained(SmashedGuard("nopeek", weight=5.0)) < trained(None) - 0.05


def _weights(model: Any) -> list[np.ndarray]:
    from tinylarge.models.weights import get_weights

    return get_weights(model)


def test_the_plan_prices_the_defense_the_run_bills(tmp_path: Path) -> None:
    """What ``tinylarge plan`` predicts for a device's round includes its guard's work."""
    from tinylarge.schemes.base import PlanRequest
    from tinylarge.sim.context import Context
    from tinylarge.sim.engine import build_scheme

    def planned(defense: dict[str, Any] | None) -> float:
        cfg = split_run() if defense is None else split_run(defense=defense)
        ctx = Context(parse_config(cfg))
        plan = build_scheme(ctx).plan(PlanRequest())
        return float(next(r["device_compute_s"] for r in plan.rows if r["cut"] == 2))

    assert planned({"name": "nopeek", "options": {"weight": 1.0}}) > planned(None)


def test_a_resumed_run_keeps_the_attacks_scores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = parse_config(split_run(training={"rounds": 3, "batch_size": 16, "lr": 0.1}))
    whole = run_experiment(cfg, out=tmp_path / "whole", progress=False)
    kill_in_round(
        monkeypatch, SplitLearning, 2,
        lambda: run_experiment(cfg, out=tmp_path / "cut", progress=False),
    )  # fmt: skip
    resumed = run_experiment(cfg, out=tmp_path / "cut", progress=False, resume=True)
    assert resumed["inversion"] == whole["inversion"]
    # and a run resumed after its last round reports them from the checkpoint
    again = run_experiment(cfg, out=tmp_path / "cut", progress=False, resume=True)
    assert again["inversion"] == whole["inversion"]


def test_the_example_attack_beats_the_baseline_and_the_defense_lowers_it(tmp_path: Path) -> None:
    """examples/sl_inversion.yaml, smaller (fewer images and rounds), with and without its
    defense."""
    example = yaml.safe_load(
        (Path(__file__).parents[2] / "examples" / "sl_inversion.yaml").read_text()
    )
    example["task"]["subset"] = 1500
    example["training"]["rounds"] = 1
    example["attack"]["options"].update(aux_samples=500, epochs=4, victim_samples=64)
    defended = run(tmp_path, "defended", example)
    plain = run(tmp_path, "plain", {k: v for k, v in example.items() if k != "defense"})
    assert plain["inversion_ssim"] > plain["inversion_baseline_ssim"] + 0.3
    assert defended["inversion_ssim"] < plain["inversion_ssim"]
    assert (
        json.loads((tmp_path / "defended" / "summary.json").read_text())["defense"]
        == example["defense"]["name"]
    )
