"""Attacks and defenses in a FedAvg run: attackers are devices, an attack hurts plain FedAvg,
a robust rule holds, the backdoor is measured, bad settings are one line."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import reproducible, resume_after_kill

from tinylarge.config import ConfigError, parse_config
from tinylarge.schemes.fedavg import FedAvg
from tinylarge.schemes.options import scheme_options
from tinylarge.sim.engine import run_experiment
from tinylarge.sim.ledger import Ledger


def fleet(malicious: int | float = 0, **sections: Any) -> dict[str, Any]:
    """FedAvg of a small MLP on digits over 10 Raspberry Pis, ``malicious`` of them attackers."""
    cfg: dict[str, Any] = {
        "name": "byz",
        "seed": 1,
        "task": {"dataset": "digits", "partition": {"name": "iid"}},
        "model": {"name": "mlp", "options": {"hidden": 32}},
        "topology": {
            "server": {"profile": "jetson-orin-nano"},
            "devices": [{"profile": "rpi4", "count": 10, "link": "wifi6", "malicious": malicious}],
        },
        "training": {"rounds": 5, "local_epochs": 1, "batch_size": 16, "lr": 0.1},
    }
    cfg.update(sections)
    return cfg


def run(tmp_path: Path, name: str, cfg: dict[str, Any]) -> dict[str, Any]:
    return run_experiment(parse_config(cfg), out=tmp_path / name, progress=False)


def test_sign_flipping_breaks_fedavg_and_the_median_holds(tmp_path: Path) -> None:
    clean = run(tmp_path, "clean", fleet())
    attack = {"name": "sign-flip", "options": {"scale": 4.0}}
    plain = run(tmp_path, "plain", fleet(3, attack=attack))
    robust = run(tmp_path, "median", fleet(3, attack=attack, defense={"name": "median"}))
    assert plain["accuracy"] < clean["accuracy"] - 0.3  # the attack is real
    assert robust["accuracy"] > clean["accuracy"] - 0.1  # the median of 10 is noisier
    assert (robust["attack"], robust["defense"], robust["malicious"]) == ("sign-flip", "median", 3)


def test_attackers_are_devices_with_a_bill(tmp_path: Path) -> None:
    attack = {"name": "gaussian", "options": {"sigma": 1.0}}
    run(tmp_path, "g", fleet(0.2, attack=attack))
    events = list(Ledger.from_csv(tmp_path / "g" / "ledger.csv"))
    nodes = {e.node for e in events if e.kind == "upload"}
    assert len(nodes) == 10  # the two attackers upload like everyone else


def test_the_backdoor_is_measured_beside_accuracy(tmp_path: Path) -> None:
    attack = {"name": "backdoor", "options": {"target_label": 0}}
    s = run(tmp_path, "b", fleet(3, attack=attack))
    with (tmp_path / "b" / "metrics.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert all(r["backdoor_success"] != "" for r in rows)
    assert s["backdoor_success"] == pytest.approx(float(rows[-1]["backdoor_success"]))
    assert 0.0 <= s["backdoor_success"] <= 1.0


def test_fltrust_trains_on_the_servers_root_data(tmp_path: Path) -> None:
    attack = {"name": "sign-flip", "options": {"scale": 4.0}}
    cfg = fleet(3, attack=attack, defense={"name": "fltrust", "root_samples": 100})
    clean = run(tmp_path, "clean", fleet())
    s = run(tmp_path, "f", cfg)
    events = list(Ledger.from_csv(tmp_path / "f" / "ledger.csv"))
    roots = [e for e in events if e.what == "fltrust-root-train"]
    assert len(roots) == 5
    assert all(e.side == "server" and e.seconds > 0 for e in roots)
    assert s["accuracy"] > clean["accuracy"] - 0.1


def test_a_stateful_defense_resumes_to_the_same_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attack = {"name": "alie"}
    cfg = parse_config(fleet(2, attack=attack, defense={"name": "centered-clipping"}))
    full = run_experiment(cfg, out=tmp_path / "full", progress=False)
    resumed = resume_after_kill(monkeypatch, FedAvg, 3, cfg, tmp_path / "k")
    assert reproducible(resumed) == reproducible(full)


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        (fleet(2), "2 malicious devices but no attack"),
        (fleet(0, attack={"name": "alie"}), "no device is malicious"),
        (fleet(11, attack={"name": "alie"}), "exceeds the group's count 10"),
    ],
)
def test_an_attack_needs_attackers_and_attackers_an_attack(cfg: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_config(cfg)


@pytest.mark.parametrize(
    ("sections", "match"),
    [
        ({"defense": {"name": "krum", "options": {"f": 5}}}, "krum"),
        ({"defense": {"name": "trimmed-mean", "options": {"beta": 0.5}}}, "0.5"),
        ({"defense": {"name": "no-such-rule"}}, "no-such-rule"),
        ({"attack": {"name": "no-such-attack"}}, "no-such-attack"),
    ],
)
def test_bad_defenses_and_attacks_are_one_line(sections: dict[str, Any], match: str) -> None:
    cfg = parse_config(fleet(2, **{"attack": {"name": "alie"}, **sections}))
    with pytest.raises(ConfigError, match=match) as err:
        scheme_options(cfg)
    assert len(str(err.value).splitlines()) == 1


def test_schemes_outside_the_fedavg_family_refuse_attacks() -> None:
    cfg = parse_config(fleet(2, attack={"name": "alie"}, scheme={"name": "fml"}))
    with pytest.raises(ConfigError, match="attack: scheme 'fml'"):
        scheme_options(cfg)


def test_a_clean_twin_says_what_the_attack_cost(tmp_path: Path) -> None:
    attack = {"name": "sign-flip", "options": {"scale": 4.0}, "clean_twin": True}
    cfg = fleet(3, attack=attack, training={"rounds": 2, "lr": 0.1, "batch_size": 16})
    s = run(tmp_path, "t", cfg)
    twin = json.loads((tmp_path / "t" / "clean" / "summary.json").read_text())
    assert "attack" not in twin
    assert s["clean_accuracy"] == twin["accuracy"]
    assert s["accuracy_drop"] == pytest.approx(twin["accuracy"] - s["accuracy"])
    assert s["accuracy_drop"] > 0.2
    on_disk = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert on_disk["clean_accuracy"] == twin["accuracy"]


def test_the_backdoor_replacement_is_shared_among_the_colluding_attackers() -> None:
    """Bagdasaryan et al.'s gamma = n / eta replaces the average with one attacker's model;
    b attackers of a round each boost by n / b, so that together they replace it once."""
    from tinylarge.sim.context import Context

    ctx = Context(parse_config(fleet(4, attack={"name": "backdoor"})))
    assert ctx.adversary is not None
    assert ctx.adversary.options["boost"] == pytest.approx(10 / 4)
    given = Context(parse_config(fleet(4, attack={"name": "backdoor", "options": {"boost": 7}})))
    assert given.adversary is not None
    assert given.adversary.options["boost"] == 7


def test_a_boosted_label_flipper_sends_its_update_scaled() -> None:
    """Label flipping with ``boost`` b sends ``base + b * (trained - base)``; honest updates
    and an unboosted flipper's are passed through untouched."""
    import numpy as np

    from tinylarge.sim.aggregation import Update
    from tinylarge.sim.context import Context

    base = [np.ones((2, 3), np.float32), np.zeros(3, np.float32)]
    trained = [np.full((2, 3), 1.5, np.float32), np.full(3, -1.0, np.float32)]
    for boost in (1.0, 3.0):
        attack = {"name": "label-flip", "options": {"boost": boost}}
        ctx = Context(parse_config(fleet(1, attack=attack)))
        assert ctx.adversary is not None
        bad = next(iter(ctx.adversary.malicious))
        good = next(c for c in range(10) if c != bad)
        updates = [Update(bad, trained, 50), Update(good, trained, 50)]
        sent = ctx.adversary.corrupt(updates, base=base, rng=np.random.default_rng(0))
        assert np.allclose(sent[0].tensors[0], 1.0 + boost * 0.5)
        assert np.allclose(sent[0].tensors[1], -boost)
        assert sent[1] is updates[1]


@pytest.mark.parametrize(
    ("defense", "line"),
    [
        ({"name": "krum", "options": {"f": 4}}, "krum: f=4 Byzantine of n=10 clients"),
        ({"name": "bulyan", "options": {"f": 2}}, "bulyan: f=2 Byzantine of n=10 clients"),
        ({"name": "trimmed-mean", "options": {"beta": 0.5}}, "0 <= beta < 0.5"),
    ],
)
def test_the_cli_refuses_what_a_rule_cannot_tolerate_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], defense: dict[str, Any], line: str
) -> None:
    """More Byzantine clients than Krum tolerates, Bulyan's n < 4f + 3, a trimmed fraction
    of one half: ``validate`` and ``run`` print one line, exit 2 and write nothing."""
    import yaml

    from tinylarge.cli.app import main

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(fleet(2, attack={"name": "alie"}, defense=defense)))
    for argv in (["validate", str(path)], ["run", str(path), "--out", str(tmp_path / "r")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert line in err
        assert len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()
