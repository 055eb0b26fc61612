import math
import random
from collections.abc import Iterable
from pathlib import Path

import pytest

from tinylarge.sim.ledger import CostField, Event, Ledger, Side


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


def scan(events: Iterable[Event], field: CostField, side: Side | None) -> dict[str, float]:
    """Per-node sums the slow way: every event, in ledger order, from 0.0."""
    out: dict[str, float] = {}
    for e in events:
        if side is None or e.side == side:
            out[e.node] = out.get(e.node, 0.0) + float(getattr(e, field))
    return out


def random_events(rng: random.Random, n: int, rnd: int) -> list[Event]:
    """``n`` events of round ``rnd`` on 5 devices and the server, joules such as 0.1 and 0.7
    whose float sums depend on the order they are added in."""
    out = []
    for _ in range(n):
        node = rng.choice(["client-0", "client-1", "client-2", "client-3", "client-4", "server"])
        side = "server" if node == "server" else "device"
        out.append(
            ev(round=rnd, node=node, side=side, joules=rng.choice([0.1, 0.2, 0.3, 0.7, 1 / 3]),
               seconds=rng.random(), macs=rng.randrange(10**6), bytes=rng.randrange(10**4))
        )  # fmt: skip
    return out


def test_running_node_totals_equal_a_fresh_scan_however_the_ledger_grew(tmp_path: Path) -> None:
    rng = random.Random(0)
    keys: list[tuple[CostField, Side | None]] = [
        (f, s) for f in ("joules", "seconds", "macs", "bytes") for s in ("device", "server", None)
    ]
    led = Ledger(random_events(rng, 50, -1))
    for rnd in range(6):  # query, then grow by record and by extend: the sums must follow
        for field, side in keys:
            assert dict(led.node_totals(field, side=side)) == scan(led, field, side)
            assert led.per_node(field, side=side) == scan(led, field, side)
        new = random_events(rng, 40, rnd)
        for e in new[:20]:
            led.record(e)
        led.extend(new[20:])
    assert led.node_totals("joules", side="device")["client-0"] != math.fsum(
        e.joules for e in led.select(node="client-0")
    )  # the order matters here: a sum in another order would not pass the checks above
    # a reloaded ledger, and one cut back to round 2 as a resume does (RunDir.truncate_to)
    led.to_csv(tmp_path / "ledger.csv")
    back = Ledger.from_csv(tmp_path / "ledger.csv")
    cut = Ledger(e for e in back if e.round <= 2)
    for field, side in keys:
        assert dict(back.node_totals(field, side=side)) == scan(led, field, side)
        assert dict(cut.node_totals(field, side=side)) == scan(
            (e for e in led if e.round <= 2), field, side
        )
    totals = led.node_totals("joules", side="device")
    with pytest.raises(TypeError):
        totals["client-0"] = 0.0  # type: ignore[index]  # read-only: callers cannot corrupt it
