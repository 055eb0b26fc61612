from pathlib import Path

import pytest

from tinylarge.sim.ledger import Event, Ledger


def ev(**kw: object) -> Event:
    base: dict[str, object] = {
        "round": 0,
        "node": "client-0",
        "side": "device",
        "kind": "compute",
        "what": "local-train",
        "profile": "rpi4",
        "seconds": 1.0,
        "joules": 2.0,
    }
    base.update(kw)
    return Event(**base)  # type: ignore[arg-type]


def sample() -> Ledger:
    led = Ledger()
    led.record(ev(macs=1000))
    led.record(
        ev(kind="upload", what="weights", bytes=400, seconds=0.5, joules=0.25, link="ble-2m")
    )
    led.record(ev(kind="download", what="weights", bytes=300, seconds=0.1, joules=0.05))
    led.record(ev(round=1, node="client-1", kind="upload", bytes=100, seconds=0.2, joules=0.1))
    led.record(ev(node="server", side="server", profile="l4", macs=50, seconds=0.01, joules=0.7))
    return led


def test_aggregates_split_by_kind_side_and_round() -> None:
    led = sample()
    assert led.bytes_up() == 500
    assert led.bytes_down() == 300
    assert led.bytes_up(round=0) == 400
    assert led.device_energy_j() == pytest.approx(2.0 + 0.25 + 0.05 + 0.1)
    assert led.total("joules", side="server") == pytest.approx(0.7)
    assert led.device_macs() == 1000
    assert led.rounds() == [0, 1]
    assert led.per_node("bytes") == {"client-0": 700.0, "client-1": 100.0, "server": 0.0}


def test_rejects_bad_events() -> None:
    with pytest.raises(ValueError, match="kind"):
        ev(kind="teleport")
    with pytest.raises(ValueError, match="negative"):
        ev(joules=-1.0)
    with pytest.raises(ValueError, match="side"):
        ev(side="cloud")


def test_csv_round_trip_is_exact(tmp_path: Path) -> None:
    led = sample()
    led.record(ev(seconds=0.1 + 0.2, joules=1 / 3))
    path = tmp_path / "ledger.csv"
    led.to_csv(path)
    back = Ledger.from_csv(path)
    assert back.events == led.events
