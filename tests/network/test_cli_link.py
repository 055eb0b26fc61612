"""`tinylarge link`: JSON output, human output and one-line errors with exit code 2."""

from __future__ import annotations

import json
import math

import pytest

from tinylarge.cli.app import main
from tinylarge.network import Link

SCENARIO = ["link", "--scenario", "uma", "--los", "--carrier-ghz", "3.5", "--distance-m", "200"]


def run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert main([*argv, "--json"]) == 0
    out: dict[str, object] = json.loads(capsys.readouterr().out)
    return out


def test_scenario_json_matches_the_link(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_json([*SCENARIO, "--payload-bytes", "500000"], capsys)
    for key in ("pathloss_db", "snr_db", "rate_bps", "time_s", "energy_j", "outage"):
        assert key in out
    expected = Link.from_scenario("uma", los=True, carrier_ghz=3.5, distance_m=200.0).transfer(
        500_000
    )
    assert out["pathloss_db"] == pytest.approx(expected.pathloss_db)
    assert out["rate_bps"] == pytest.approx(expected.rate_bps)
    assert out["time_s"] == pytest.approx(expected.time_s)
    assert out["energy_j"] == pytest.approx(expected.energy_j)
    assert out["outage"] is False
    # inputs echoed
    assert out["scenario"] == "uma"
    assert out["los"] is True
    assert out["carrier_ghz"] == 3.5
    assert out["distance_m"] == 200.0
    assert out["bandwidth_mhz"] == 20.0
    assert out["payload_bytes"] == 500_000


def test_scenario_options_change_the_budget(capsys: pytest.CaptureFixture[str]) -> None:
    base = run_json(SCENARIO, capsys)
    wide = run_json([*SCENARIO, "--bandwidth-mhz", "100", "--tx-power-dbm", "26"], capsys)
    assert wide["snr_db"] == pytest.approx(base["snr_db"] + 3 - 10 * math.log10(5))  # type: ignore[operator]
    nlos = run_json([*SCENARIO[:3], "--nlos", *SCENARIO[4:]], capsys)
    assert nlos["pathloss_db"] > base["pathloss_db"]  # type: ignore[operator]


def test_preset_lora_time_is_the_time_on_air(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_json(["link", "--preset", "lora-sf7", "--payload-bytes", "10"], capsys)
    assert out["time_s"] == pytest.approx(0.041216)
    assert out["frames"] == 1
    assert out["preset"] == "lora-sf7"
    assert out["distance_m"] == 2000.0


def test_preset_distance_and_outage(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_json(
        ["link", "--preset", "lora-sf7", "--payload-bytes", "10", "--distance-m", "8000"], capsys
    )
    assert out["outage"] is True
    assert out["time_s"] is None  # inf is not JSON; strict output writes null
    assert out["rate_bps"] == 0.0


def test_deterministic_without_fading_and_seeded_with_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b = run_json(SCENARIO, capsys), run_json(SCENARIO, capsys)
    assert a == b
    faded = [*SCENARIO, "--fading", "rayleigh", "--shadowing", "--seed"]
    s1, s1b, s2 = (run_json([*faded, seed], capsys) for seed in ("1", "1", "2"))
    assert s1 == s1b
    assert s1["snr_db"] != s2["snr_db"]
    assert s1["fading"] == "rayleigh"
    assert s1["seed"] == 1


def test_human_output_is_a_key_value_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["link", "--preset", "nb-iot", "--payload-bytes", "1000"]) == 0
    out = capsys.readouterr().out
    for key in ("pathloss_db", "snr_db", "rate_bps", "time_s", "energy_j", "outage"):
        assert key in out


def scenario(name: str, *flags: str) -> list[str]:
    return ["link", "--scenario", name, *flags]


def preset(name: str, *flags: str) -> list[str]:
    return ["link", "--preset", name, *flags]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        ([*SCENARIO[:-1], "-5"], "distance_m=-5"),
        (scenario("rma", "--los", "--carrier-ghz", "40", "--distance-m", "100"), "0.5-30 GHz"),
        (scenario("uma", "--los", "--carrier-ghz", "3.5", "--distance-m", "5"), "10-5000 m"),
        (scenario("uma", "--carrier-ghz", "3.5", "--distance-m", "100"), "--los/--nlos"),
        (scenario("uma", "--los", "--distance-m", "100"), "--carrier-ghz"),
        (preset("zigbee", "--payload-bytes", "10"), "known: 6g-subthz"),
        (preset("wifi6"), "--payload-bytes"),
        (preset("wifi6", "--payload-bytes", "10", "--los"), "only apply to --scenario"),
        (preset("wifi6", "--payload-bytes", "-1"), "payload"),
        (preset("wifi6", "--payload-bytes", "1", "--distance-m", "nan"), "finite"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["link", "--payload-bytes", "10"],  # neither --scenario nor --preset
        ["link", "--scenario", "uma", "--preset", "wifi6"],  # both
        [*SCENARIO, "--nlos"],  # --los and --nlos
        ["link", "--scenario", "suburban", "--los"],  # not a scenario
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
