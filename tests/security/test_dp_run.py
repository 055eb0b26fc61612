"""DP-FedAvg in a run: epsilon per round from the accountant, clipping billed where it runs,
resumable, refused where it cannot be honoured."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import reproducible, resume_after_kill, small_task

from tinylarge.cli.app import main
from tinylarge.config import ConfigError, parse_config
from tinylarge.results.report import build_report
from tinylarge.schemes.fedavg import FedAvg
from tinylarge.schemes.options import scheme_options
from tinylarge.security.accounting import DpSpec, epsilon
from tinylarge.sim.engine import run_experiment
from tinylarge.sim.ledger import Ledger

pytest.importorskip(
    "dp_accounting", reason="needs the privacy extra: pip install 'tinylarge[privacy]'"
)


def dp_task(dp: dict[str, Any], **sections: Any) -> dict[str, Any]:
    training = {"rounds": 3, "fraction": 0.5, **sections.pop("training", {})}
    return small_task(privacy={"dp": {"delta": 1e-3, **dp}}, training=training, **sections)


def metrics(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("sampling", ["fixed", "poisson"])
def test_epsilon_per_round_is_the_accountants(tmp_path: Path, sampling: str) -> None:
    cfg = parse_config(dp_task({"noise_multiplier": 1.0}, training={"sampling": sampling}))
    summary = run_experiment(cfg, out=tmp_path / "r", progress=False)
    n = cfg.topology.num_devices
    per_round = round(0.5 * n)
    spec = {
        "fixed": {"noise_multiplier": 1.0, "sampling": "fixed", "population": n},
        "poisson": {"noise_multiplier": 1.0, "sampling": "poisson", "population": n},
    }[sampling]
    eps = [float(r["epsilon"]) for r in metrics(tmp_path / "r")]
    for rounds, got in enumerate(eps, start=1):
        want = epsilon(
            DpSpec(sampling_rate=per_round / n, steps=rounds, delta=1e-3, **spec)  # type: ignore[arg-type]
        )
        assert got == pytest.approx(want)
    assert eps == sorted(eps)
    assert eps[0] > 0
    for key in ("epsilon", "delta", "noise_multiplier", "accountant"):
        assert key in summary
    assert summary["epsilon"] == pytest.approx(eps[-1])
    assert (summary["delta"], summary["noise_multiplier"], summary["accountant"]) == (
        1e-3,
        1.0,
        "rdp",
    )
    assert summary["dp_sampling"] == sampling


def test_target_epsilon_is_met_by_the_solved_noise(tmp_path: Path) -> None:
    cfg = parse_config(dp_task({"target_epsilon": 4.0}))
    summary = run_experiment(cfg, out=tmp_path / "r", progress=False)
    assert summary["epsilon"] <= 4.0
    assert summary["epsilon"] == pytest.approx(4.0, rel=0.02)
    assert summary["noise_multiplier"] > 0


def test_noise_costs_accuracy(tmp_path: Path) -> None:
    quiet = run_experiment(
        parse_config(dp_task({"noise_multiplier": 0.0, "clipping_norm": 100.0})),
        out=tmp_path / "quiet",
        progress=False,
    )
    loud = run_experiment(
        parse_config(dp_task({"noise_multiplier": 50.0, "clipping_norm": 100.0})),
        out=tmp_path / "loud",
        progress=False,
    )
    assert loud["accuracy"] < quiet["accuracy"] - 0.2
    assert quiet["epsilon"] == float("inf")
    assert loud["epsilon"] < 1


def test_client_side_clipping_is_billed_on_devices_before_upload(tmp_path: Path) -> None:
    cfg = parse_config(dp_task({"noise_multiplier": 1.0, "clipping": "client-fixed"}))
    run_experiment(cfg, out=tmp_path / "r", progress=False)
    events = list(Ledger.from_csv(tmp_path / "r" / "ledger.csv"))
    clips = [e for e in events if e.what == "dp-clip"]
    assert clips
    assert all(e.side == "device" and e.kind == "compute" for e in clips)
    for c in clips:
        up = next(
            e for e in events if e.node == c.node and e.round == c.round and e.kind == "upload"
        )
        assert up.at_s >= c.at_s + c.seconds - 1e-12
    server = run_experiment(
        parse_config(dp_task({"noise_multiplier": 1.0})), out=tmp_path / "s", progress=False
    )
    assert not [e for e in Ledger.from_csv(tmp_path / "s" / "ledger.csv") if e.what == "dp-clip"]
    assert server["accuracy"] is not None


def test_adaptive_clipping_is_resumed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = parse_config(
        dp_task(
            {"noise_multiplier": 0.3, "clipping": "server-adaptive", "clipped_count_stddev": 1.0},
            training={"rounds": 4},
        )
    )
    full = run_experiment(cfg, out=tmp_path / "full", progress=False)
    norms = [float(r["clipping_norm"]) for r in metrics(tmp_path / "full")]
    assert len(set(norms)) == len(norms)  # it adapts every round
    resumed = resume_after_kill(monkeypatch, FedAvg, 2, cfg, tmp_path / "killed")
    assert reproducible(resumed) == reproducible(full)


def test_schemes_that_do_not_average_privately_refuse_it() -> None:
    cfg = parse_config(dp_task({"noise_multiplier": 1.0}, scheme={"name": "sl"}))
    with pytest.raises(ConfigError, match=r"privacy\.dp: scheme 'sl' does not average"):
        scheme_options(cfg)
    cfg = parse_config(small_task(scheme={"name": "fml"}, training={"sampling": "poisson"}))
    with pytest.raises(ConfigError, match=r"training\.sampling"):
        scheme_options(cfg)


def test_delta_must_be_below_one_over_n() -> None:
    with pytest.raises(ConfigError, match=r"delta 0.5 must be below 1/n"):
        parse_config(dp_task({"noise_multiplier": 1.0, "delta": 0.5}))


def test_the_guarantee_is_shown_after_the_run_and_in_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "dp.yaml"
    cfg.write_text(yaml.safe_dump(dp_task({"noise_multiplier": 1.0}, training={"rounds": 2})))
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert f"({summary['epsilon']:.3g}, 0.001)-DP" in printed
    html = build_report(out).read_text()
    assert "Privacy spent (epsilon) per round" in html
    assert "noise multiplier" in html
