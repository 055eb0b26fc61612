"""SecAgg+ in a FedAvg run: the same model as plaintext FedAvg, every stage billed on the
clients' links and devices, dropouts between stages survived, aborts reported and survived."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import reproducible, resume_after_kill, small_task

from tinylarge.config import ConfigError, parse_config
from tinylarge.results.report import build_report
from tinylarge.schemes.fedavg import FedAvg
from tinylarge.schemes.options import scheme_options
from tinylarge.security.accounting import Accountant, DpSpec, epsilon
from tinylarge.sim.engine import run_experiment
from tinylarge.sim.ledger import Event, Ledger

pytest.importorskip("cryptography", reason="needs pip install 'tinylarge[privacy]'")

STAGES = (
    "secagg-public-keys",
    "secagg-encrypted-shares",
    "secagg-masked-input",
    "secagg-unmask-shares",
)


def secagg_task(threshold: int = 2, shares: int = 3, **sections: Any) -> dict[str, Any]:
    """The small task's 4 clients with SecAgg+ (3 shares: a ring; 5: the complete graph)."""
    secagg = {"num_shares": shares, "reconstruction_threshold": threshold}
    return small_task(privacy={"secagg": secagg}, training={"rounds": 2}, **sections)


def events(run: Path) -> list[Event]:
    return list(Ledger.from_csv(run / "ledger.csv"))


def metrics(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_secure_aggregation_trains_the_same_model_as_plaintext(tmp_path: Path) -> None:
    secure = run_experiment(parse_config(secagg_task()), out=tmp_path / "s", progress=False)
    plain = run_experiment(
        parse_config(small_task(training={"rounds": 2})), out=tmp_path / "p", progress=False
    )
    # quantization at 2**22 levels over +-8 moves each weight by at most ~4e-6
    assert secure["loss"] == pytest.approx(plain["loss"], abs=1e-3)
    assert secure["accuracy"] == pytest.approx(plain["accuracy"], abs=0.01)
    # the masked update replaces the plaintext upload; the protocol costs bytes and joules
    ups = [e for e in events(tmp_path / "s") if e.kind == "upload"]
    assert not [e for e in ups if e.what == "weights"]
    assert secure["bytes_up"] > plain["bytes_up"]
    assert secure["device_energy_j"] > plain["device_energy_j"]
    assert [r["secagg_survivors"] for r in metrics(tmp_path / "s")] == ["4", "4"]
    # what privacy cost the devices: every secagg event, and nothing else
    secagg = [e for e in events(tmp_path / "s") if e.side == "device" and "secagg" in e.what]
    assert secure["privacy_bytes"] == sum(e.bytes for e in secagg)
    assert secure["privacy_device_energy_j"] == pytest.approx(sum(e.joules for e in secagg))
    assert "privacy_bytes" not in plain


def test_every_stage_is_a_transfer_and_its_crypto_is_billed_before_it(tmp_path: Path) -> None:
    run_experiment(parse_config(secagg_task()), out=tmp_path / "s", progress=False)
    evs = events(tmp_path / "s")
    for node in {e.node for e in evs if e.side == "device"}:
        mine = [e for e in evs if e.node == node and e.round == 0]
        uploads = [e.what for e in mine if e.kind == "upload"]
        assert uploads == list(STAGES)
        for stage in STAGES[:3]:  # stage 4's shares are only looked up: no crypto
            crypto = next(e for e in mine if e.what == f"{stage}-crypto")
            up = next(e for e in mine if e.what == stage and e.kind == "upload")
            assert crypto.kind == "compute"
            assert crypto.seconds > 0
            assert up.at_s >= crypto.at_s + crypto.seconds - 1e-12
    # the public keys are two 32-byte X25519 keys
    assert {e.bytes for e in evs if e.what == "secagg-public-keys"} == {64}
    assert [e for e in evs if e.what == "secagg-unmask" and e.side == "server"]


def _deadline_between_stages(tmp_path: Path) -> float:
    """A deadline the BLE boards meet with their keys and miss with their masked input."""
    run_experiment(parse_config(secagg_task()), out=tmp_path / "probe", progress=False)
    evs = [e for e in events(tmp_path / "probe") if e.round == 0]
    ble = {e.node for e in evs if e.link == "ble-2m"}
    keys = max(
        e.at_s + e.seconds for e in evs if e.node in ble and e.what == "secagg-encrypted-shares"
    )
    masked = max(
        e.at_s + e.seconds for e in evs if e.node in ble and e.what == "secagg-masked-input"
    )
    assert keys < masked
    return (keys + masked) / 2


def test_clients_that_drop_after_sharing_keys_are_unmasked_by_their_neighbours(
    tmp_path: Path,
) -> None:
    deadline = _deadline_between_stages(tmp_path)
    cfg = parse_config(secagg_task(shares=5, engine={"deadline_s": deadline}))
    summary = run_experiment(cfg, out=tmp_path / "d", progress=False)
    rows = metrics(tmp_path / "d")
    assert [r["secagg_survivors"] for r in rows] == ["2", "2"]
    assert [r["dropped_reasons"] for r in rows] == ["straggler:2", "straggler:2"]
    assert summary["accuracy"] > 0.5  # it learned from the two survivors


def test_on_a_ring_a_survivor_needs_live_neighbours(tmp_path: Path) -> None:
    """SecAgg+ with 3 shares among 4 clients: when both BLE boards drop after sharing keys,
    a survivor whose ring neighbours are those two cannot have its self mask removed."""
    deadline = _deadline_between_stages(tmp_path)
    cfg = parse_config(secagg_task(engine={"deadline_s": deadline}))
    run_experiment(cfg, out=tmp_path / "d", progress=False)
    reasons = {r["secagg_aborted"] for r in metrics(tmp_path / "d")}
    assert reasons == {
        "secure aggregation aborted in stage 3: client 0 has 1 live neighbours (itself "
        "included), threshold 2"
    }


def test_too_few_clients_abort_the_round_and_the_run_goes_on(tmp_path: Path) -> None:
    deadline = _deadline_between_stages(tmp_path)
    cfg = parse_config(secagg_task(threshold=3, shares=5, engine={"deadline_s": deadline}))
    summary = run_experiment(cfg, out=tmp_path / "a", progress=False)
    rows = metrics(tmp_path / "a")
    assert all("aborted in stage" in r["secagg_aborted"] for r in rows)
    assert all(r["secagg_survivors"] == "0" for r in rows)
    assert summary["rounds"] == 2  # the run went on
    assert summary["accuracy"] < 0.3  # nothing was ever aggregated: the initial model
    html = build_report(tmp_path / "a").read_text()
    assert "secure aggregation: rounds aborted</td><td>2" in html


@pytest.mark.parametrize(
    ("secagg", "match"),
    [
        ({"num_shares": 3, "reconstruction_threshold": 5}, "exceeds num_shares 3"),
        ({"num_shares": 3, "reconstruction_threshold": 2, "modulus_range": 2**22},
         "can sum past modulus_range"),
        ({"num_shares": 3, "reconstruction_threshold": 2, "modulus_range": 1000},
         "power of two"),
    ],
)  # fmt: skip
def test_bad_secagg_settings_are_one_line(secagg: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        parse_config(small_task(privacy={"secagg": secagg}))
    assert "\n" not in str(err.value)


def test_an_even_num_shares_is_checked_as_it_will_run(tmp_path: Path) -> None:
    """Below the round's client count SecAgg+'s ring needs an odd size, so num_shares 4 runs
    as 3 with 6 clients: threshold 4 is refused up front, not in the first round."""
    cfg = small_task(privacy={"secagg": {"num_shares": 4, "reconstruction_threshold": 4}})
    cfg["topology"]["devices"][0]["count"] = 4  # 6 clients a round
    with pytest.raises(ConfigError, match=r"with 6 clients a round: .*exceeds num_shares 3"):
        parse_config(cfg)
    # with 4 clients num_shares 4 is the complete graph, and threshold 4 runs
    ok = small_task(
        privacy={"secagg": {"num_shares": 4, "reconstruction_threshold": 4}}, training={"rounds": 1}
    )
    assert run_experiment(parse_config(ok), out=tmp_path / "r", progress=False)["rounds"] == 1


def test_schemes_without_secure_averaging_refuse_it() -> None:
    cfg = parse_config(secagg_task(scheme={"name": "fedgkt"}))
    with pytest.raises(ConfigError, match=r"privacy\.secagg: scheme 'fedgkt'"):
        scheme_options(cfg)


# -- distributed DP: each device clips and adds its share of the noise before masking --------
def ddp_task(z: float, **sections: Any) -> dict[str, Any]:
    """Distributed DP on the small task: client-side clipping, SecAgg on the complete graph."""
    dp = {"clipping": "client-fixed", "noise_multiplier": z, "clipping_norm": 1.0, "delta": 1e-3}
    secagg = {"num_shares": 5, "reconstruction_threshold": 2}
    training = {"rounds": 2, **sections.pop("training", {})}
    return small_task(privacy={"dp": dp, "secagg": secagg}, training=training, **sections)


def test_without_noise_distributed_dp_equals_central_dp(tmp_path: Path) -> None:
    """z = 0: the secure sum of clipped updates over the expected count is what the server
    computes in the clear (up to SecAgg's quantization)."""
    secure = run_experiment(parse_config(ddp_task(0.0)), out=tmp_path / "s", progress=False)
    central = ddp_task(0.0)
    del central["privacy"]["secagg"]
    clear = run_experiment(parse_config(central), out=tmp_path / "c", progress=False)
    assert secure["loss"] == pytest.approx(clear["loss"], abs=1e-3)
    assert math.isinf(secure["epsilon"])  # unbounded: no noise


def test_the_accountant_is_told_the_noise_that_arrived(tmp_path: Path) -> None:
    full = run_experiment(parse_config(ddp_task(1.0)), out=tmp_path / "f", progress=False)
    n = 4
    assert full["epsilon"] == pytest.approx(
        epsilon(DpSpec(1.0, sampling_rate=1.0, steps=2, delta=1e-3, sampling="fixed", population=n))
    )
    # the BLE boards drop after sharing keys: only 2 of 4 noise shares are in each sum
    deadline = _deadline_between_stages(tmp_path)
    cfg = parse_config(ddp_task(1.0, engine={"deadline_s": deadline}))
    dropped = run_experiment(cfg, out=tmp_path / "d", progress=False)
    acct = Accountant(delta=1e-3, sampling="fixed", population=n)
    acct.step(math.sqrt(2 / 4), 1.0, count=2)
    assert dropped["epsilon"] == pytest.approx(acct.epsilon())
    assert dropped["epsilon"] > full["epsilon"]
    # each device drew and added its noise: twice the element-wise work of clipping alone
    clip_only = ddp_task(1.0)
    del clip_only["privacy"]["secagg"]
    run_experiment(parse_config(clip_only), out=tmp_path / "c", progress=False)

    def clip_seconds(run: Path) -> float:
        return sum(e.seconds for e in events(run) if e.what == "dp-clip")

    assert clip_seconds(tmp_path / "f") == pytest.approx(2 * clip_seconds(tmp_path / "c"))


def test_server_side_clipping_cannot_see_masked_updates() -> None:
    cfg = ddp_task(1.0)
    cfg["privacy"]["dp"]["clipping"] = "server-fixed"
    with pytest.raises(ConfigError, match="cannot clip them; use clipping: client-fixed"):
        parse_config(cfg)


def test_a_resumed_run_keeps_the_noise_each_round_carried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deadline = _deadline_between_stages(tmp_path)
    cfg = parse_config(ddp_task(1.0, engine={"deadline_s": deadline}, training={"rounds": 3}))
    full = run_experiment(cfg, out=tmp_path / "full", progress=False)
    resumed = resume_after_kill(monkeypatch, FedAvg, 2, cfg, tmp_path / "k")
    assert reproducible(resumed) == reproducible(full)
