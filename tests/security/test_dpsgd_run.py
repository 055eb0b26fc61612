"""DP-SGD on the devices in a run: each device's account composed from the steps it took, the
fit check with per-sample gradients, the bill, reproducible and resumable, refused where it
cannot be honoured."""

from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from tests.conftest import reproducible, resume_after_kill, small_task

from tinylarge.cli.app import main
from tinylarge.config import ConfigError, parse_config
from tinylarge.errors import TinylargeError
from tinylarge.hardware.fit import format_bytes
from tinylarge.models.zoo import ModelSpec
from tinylarge.results.rundir import RunDir
from tinylarge.schemes.fedavg import FedAvg
from tinylarge.schemes.options import scheme_options
from tinylarge.security.accounting import DpSpec, epsilon
from tinylarge.security.dpsgd import DpSgdSpec
from tinylarge.sim.context import Context
from tinylarge.sim.engine import run_experiment
from tinylarge.sim.ledger import Event, Ledger
from tinylarge.sim.training import FitTask, TrainSettings, fit, init_weights

pytest.importorskip("opacus", reason="needs the privacy extra: pip install 'tinylarge[privacy]'")

DELTA = 1e-4  # digits: 1,347 training records, 1/N = 7.4e-4
RPI_ONLY = {"server": {"profile": "jetson-orin-nano"}, "devices": [{"profile": "rpi4", "count": 2}]}


def dpsgd_task(dpsgd: dict[str, Any], **sections: Any) -> dict[str, Any]:
    training = {"rounds": 3, "fraction": 0.5, **sections.pop("training", {})}
    private = {"max_grad_norm": 1.0, "delta": DELTA, **dpsgd}
    return small_task(privacy={"dpsgd": private}, training=training, **sections)


def metrics(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def local_training(run: Path) -> list[Event]:
    return [e for e in Ledger.from_csv(run / "ledger.csv") if e.what == "local-train"]


def cli(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, err.getvalue()


# -- the account ---------------------------------------------------------------------------------
def test_epsilon_per_round_is_the_largest_device_account(tmp_path: Path) -> None:
    sigma, rounds = 1.1, 4
    cfg = parse_config(dpsgd_task({"noise_multiplier": sigma}, training={"rounds": rounds}))
    summary = run_experiment(cfg, out=tmp_path / "r", progress=False)
    records = {c.node: len(c.indices) for c in Context(cfg).clients}
    batch = cfg.training.batch_size
    events = local_training(tmp_path / "r")
    trained = dict.fromkeys(records, 0)  # rounds each device has trained in so far
    for row in metrics(tmp_path / "r"):
        for e in events:
            if e.round == int(row["round"]):
                trained[e.node] += 1
        # Abadi et al.'s account written out: Poisson rate q = B / N, an epoch is N // B steps,
        # a device composes its own steps only; the run's epsilon is the largest device's
        want = max(
            epsilon(DpSpec(sigma, batch / n, trained[node] * (n // batch), DELTA))
            for node, n in records.items()
            if trained[node]
        )
        assert float(row["epsilon"]) == pytest.approx(want)
    assert len(set(trained.values())) > 1  # devices sat out different rounds
    assert summary["epsilon"] == pytest.approx(float(metrics(tmp_path / "r")[-1]["epsilon"]))
    assert (summary["delta"], summary["noise_multiplier"], summary["accountant"]) == (
        DELTA,
        sigma,
        "rdp",
    )
    assert summary["dpsgd_sampling"] == "poisson"
    assert summary["max_grad_norm"] == 1.0
    worst = summary["dpsgd_worst_device"]
    n = worst["records"]
    assert worst["steps"] == trained[f"client-{worst['client']}"] * (n // batch)
    assert worst["sample_rate"] == pytest.approx(batch / n)


def test_fit_takes_floor_n_over_b_poisson_steps_an_epoch() -> None:
    x = np.random.default_rng(0).normal(size=(100, 1, 8, 8)).astype(np.float32)
    y = np.arange(100) % 10
    spec = ModelSpec("mlp", (1, 8, 8), 10, {"hidden": 32})
    task = FitTask(
        client=0,
        round=0,
        seed=5,
        spec=spec,
        weights=init_weights(spec, seed=0),
        indices=np.arange(90),
        settings=TrainSettings(epochs=3, batch_size=16, lr=0.1),
        dpsgd=DpSgdSpec(1.0, 1.0),
    )
    result = fit(task, x, y)
    assert result.steps == 3 * (90 // 16)
    assert result.examples != 3 * 90  # Poisson batches: rarely exactly the records
    # 15 steps of binomial(90, 16/90): within 4 standard errors of 15 * 16
    assert abs(result.examples - 15 * 16) < 4 * np.sqrt(15 * 16 * (1 - 16 / 90))
    again = fit(task, x, y)
    assert all(np.array_equal(a, b) for a, b in zip(result.weights, again.weights, strict=True))


def test_target_epsilon_is_met_by_a_device_in_every_round(tmp_path: Path) -> None:
    every = parse_config(dpsgd_task({"target_epsilon": 3.0}, training={"fraction": 1.0}))
    summary = run_experiment(every, out=tmp_path / "every", progress=False)
    assert summary["noise_multiplier_solved"] is True
    assert summary["epsilon"] <= 3.0
    assert summary["epsilon"] == pytest.approx(3.0, rel=0.01)
    half = parse_config(dpsgd_task({"target_epsilon": 3.0}))
    sampled = run_experiment(half, out=tmp_path / "half", progress=False)
    assert sampled["noise_multiplier"] == summary["noise_multiplier"]  # solved before the run
    assert sampled["epsilon"] < 3.0


# -- training ------------------------------------------------------------------------------------
def test_without_noise_or_clipping_at_rate_one_it_is_full_batch_training(tmp_path: Path) -> None:
    """q = 1 (a batch larger than any partition) takes every record every step, once an epoch;
    with no noise and a clipping bound no gradient reaches, DP-SGD's step is plain SGD's."""
    training = {"batch_size": 1024, "fraction": 1.0, "rounds": 3}
    plain = small_task(topology=RPI_ONLY, training=training)
    private = dpsgd_task(
        {"noise_multiplier": 0.0, "max_grad_norm": 1e6}, topology=RPI_ONLY, training=training
    )
    a = run_experiment(parse_config(plain), out=tmp_path / "plain", progress=False)
    b = run_experiment(parse_config(private), out=tmp_path / "dp", progress=False)
    wa = RunDir(tmp_path / "plain").load_checkpoint()["scheme"]["weights"]
    wb = RunDir(tmp_path / "dp").load_checkpoint()["scheme"]["weights"]
    for x, y in zip(wa, wb, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)  # float32 sums in other orders
    assert b["accuracy"] == pytest.approx(a["accuracy"], abs=0.005)
    assert b["epsilon"] == float("inf")  # no noise, no privacy


def test_same_numbers_on_a_rerun_and_on_ray(tmp_path: Path) -> None:
    cfg = parse_config(dpsgd_task({"noise_multiplier": 1.0}, training={"rounds": 2}))
    first = run_experiment(cfg, out=tmp_path / "a", progress=False)
    again = run_experiment(cfg, out=tmp_path / "b", progress=False)
    assert reproducible(again) == reproducible(first)
    ray = pytest.importorskip("ray", reason="the ray extra is installed by `make test`")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        on_ray = run_experiment(cfg, out=tmp_path / "ray", backend="ray", progress=False)
    finally:
        ray.shutdown()
    assert on_ray["backend"] == "ray"
    assert reproducible(on_ray) == reproducible(first)


def test_resume_after_a_kill_gives_the_same_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = parse_config(dpsgd_task({"noise_multiplier": 1.0}, training={"rounds": 4}))
    full = run_experiment(cfg, out=tmp_path / "full", progress=False)
    resumed = resume_after_kill(monkeypatch, FedAvg, 2, cfg, tmp_path / "killed")
    assert reproducible(resumed) == reproducible(full)
    assert metrics(tmp_path / "killed") == metrics(tmp_path / "full")


def test_composes_with_secure_aggregation(tmp_path: Path) -> None:
    cfg = dpsgd_task({"noise_multiplier": 1.0}, training={"rounds": 1, "fraction": 1.0})
    cfg["privacy"]["secagg"] = {"num_shares": 3, "reconstruction_threshold": 2}
    summary = run_experiment(parse_config(cfg), out=tmp_path / "r", progress=False)
    assert metrics(tmp_path / "r")[0]["secagg_survivors"] == "4"
    assert 0 < summary["epsilon"] < float("inf")


# -- fit and bill --------------------------------------------------------------------------------
MCU_FLEET = {
    "server": {"profile": "jetson-orin-nano"},
    "devices": [
        {"profile": "rpi4", "count": 2, "link": "wifi6"},
        {"profile": "nrf52840", "count": 2, "link": "ble-2m"},
    ],
}


@pytest.mark.parametrize(("batch", "fits"), [(8, True), (32, False)])
def test_an_mcu_that_trains_plainly_may_not_fit_dpsgd(
    tmp_path: Path, batch: int, fits: bool
) -> None:
    plain = Context(parse_config(small_task(topology=MCU_FLEET, training={"batch_size": batch})))
    nrf = next(c for c in plain.clients if c.profile.id == "nrf52840")
    assert plain.training_fit(plain.spec, nrf.profile).fits  # 256 KiB of SRAM
    cfg = parse_config(
        dpsgd_task({"noise_multiplier": 1.0}, topology=MCU_FLEET, training={"batch_size": batch})
    )
    summary = run_experiment(cfg, out=tmp_path / "r", progress=False)
    assert summary["fits"]["nrf52840"] is fits
    nodes = {e.node for e in Ledger.from_csv(tmp_path / "r" / "ledger.csv")}
    assert ("client-2" in nodes or "client-3" in nodes) is fits
    if fits:
        return
    # DP-SGD's memory by hand for the mlp 64-32-10 (P = 2,410 parameters in 4 tensors) at B
    # = 32: per-sample gradients B P 4, norms B (2 * 4 + 2) 4, the clipped sum P 4, the noise
    # of the largest tensor (64 x 32) 4
    params = 64 * 32 + 32 + 32 * 10 + 10
    extra = batch * params * 4 + batch * (2 * 4 + 2) * 4 + params * 4 + 64 * 32 * 4
    assert extra == 327_592
    reason = summary["excluded"]["nrf52840"]["reason"]
    assert f"+ DP-SGD's per-sample gradients {format_bytes(extra)} > SRAM 256 KiB" in reason
    assert summary["excluded"]["nrf52840"]["count"] == 2


def test_dpsgd_is_billed_with_its_extra_work(tmp_path: Path) -> None:
    """At q = 1 both runs take every record once an epoch in one step, so the bills differ
    only in the backward factor: per example the per-sample gradients (a layer's MACs plus
    its outputs) and the clipping (2 P), per step the noise (3 P)."""
    training = {"batch_size": 1024, "fraction": 1.0, "rounds": 2}
    plain = small_task(topology=RPI_ONLY, training=training)
    private = dpsgd_task({"noise_multiplier": 1.0}, topology=RPI_ONLY, training=training)
    a = run_experiment(parse_config(plain), out=tmp_path / "plain", progress=False)
    b = run_experiment(parse_config(private), out=tmp_path / "dp", progress=False)
    macs, params = 64 * 32 + 32 * 10, 64 * 32 + 32 + 32 * 10 + 10
    per_sample_grads = (64 * 32 + 32) + (32 * 10 + 10)
    records = {c.node: len(c.indices) for c in Context(parse_config(plain)).clients}
    plain_events = {(e.round, e.node): e for e in local_training(tmp_path / "plain")}
    dp_events = local_training(tmp_path / "dp")
    assert len(dp_events) == len(plain_events) == 4
    for e in dp_events:
        n = records[e.node]
        factor = 2 + (n * (per_sample_grads + 2 * params) + 3 * params) / (n * macs)
        assert e.macs == round((1 + factor) * macs * n)
        p = plain_events[(e.round, e.node)]
        assert p.macs == 3 * macs * n
        assert e.joules / p.joules == pytest.approx((1 + factor) / 3)
    assert b["device_compute_energy_j"] > a["device_compute_energy_j"]


def test_dpsgd_costs_more_joules_at_the_usual_rate(tmp_path: Path) -> None:
    plain = run_experiment(parse_config(small_task()), out=tmp_path / "plain", progress=False)
    private = run_experiment(
        parse_config(dpsgd_task({"noise_multiplier": 1.0}, training={"rounds": 4, "fraction": 1})),
        out=tmp_path / "dp",
        progress=False,
    )
    assert private["device_compute_energy_j"] > 1.5 * plain["device_compute_energy_j"]


# -- refusals ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("scheme", "match"),
    [
        ("fedprox", r"privacy\.dpsgd: scheme 'fedprox' adds a proximal term"),
        ("sl", r"privacy\.dpsgd: scheme 'sl' does not train its devices"),
        ("fml", r"schemes that train with DP-SGD: fedavg, fedadam, fedyogi"),
    ],
)
def test_schemes_that_do_not_train_through_fit_refuse_it(scheme: str, match: str) -> None:
    cfg = parse_config(dpsgd_task({"noise_multiplier": 1.0}, scheme={"name": scheme}))
    with pytest.raises(ConfigError, match=match):
        scheme_options(cfg)


def test_fedadam_trains_with_dpsgd() -> None:
    scheme_options(parse_config(dpsgd_task({"noise_multiplier": 1.0}, scheme={"name": "fedadam"})))


@pytest.mark.parametrize(
    ("privacy", "match"),
    [
        ({"dp": {"noise_multiplier": 1.0}}, r"dpsgd with dp: one run reports one"),
        ({"dpsgd": {"poisson_sampling": False}}, r"poisson_sampling: false"),
        ({"dpsgd": {"target_epsilon": 1.0}}, r"exactly one of noise_multiplier"),
        ({"dpsgd": {"noise_multiplier": None}}, r"exactly one of noise_multiplier"),
        ({"dpsgd": {"max_grad_norm": None}}, r"max_grad_norm"),
    ],
)
def test_bad_settings_are_refused_in_one_line(privacy: dict[str, Any], match: str) -> None:
    cfg = dpsgd_task({"noise_multiplier": 1.0})
    for key, value in privacy.items():
        cfg["privacy"][key] = {**cfg["privacy"].get(key, {}), **value}
    cfg["privacy"]["dpsgd"] = {k: v for k, v in cfg["privacy"]["dpsgd"].items() if v is not None}
    with pytest.raises(ConfigError, match=match) as info:
        parse_config(cfg)
    assert "\n" not in str(info.value)


def run_cli_refusal(tmp_path: Path, cfg: dict[str, Any]) -> str:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code, err = cli("run", str(path), "--out", str(tmp_path / "out"), "--quiet", "--no-report")
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out" / "summary.json").exists()
    return err


def test_batchnorm_is_refused_at_set_up(tmp_path: Path) -> None:
    model = {"name": "cnn-large", "options": {"width": 4}}
    err = run_cli_refusal(tmp_path, dpsgd_task({"noise_multiplier": 1.0}, model=model))
    assert "BatchNorm2d" in err
    assert "GroupNorm" in err
    with pytest.raises(TinylargeError, match="Opacus has no per-sample gradient"):
        run_experiment(
            parse_config(dpsgd_task({"noise_multiplier": 1.0}, model=model)),
            out=tmp_path / "again",
            progress=False,
        )


def test_delta_must_be_below_one_over_the_fleets_records(tmp_path: Path) -> None:
    err = run_cli_refusal(tmp_path, dpsgd_task({"noise_multiplier": 1.0, "delta": 1e-3}))
    assert "privacy.dpsgd.delta 0.001 must be below 1/N = 0.000742" in err
    assert "N = 1,347 training records" in err
    assert "record-level DP" in err
