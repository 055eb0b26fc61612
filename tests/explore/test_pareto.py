"""Pareto fronts against their definition; the recommendation on tables worked by hand."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tinylarge.explore.pareto import energy_per_round_j, pareto_front, recommend
from tinylarge.explore.spec import SweepObjective


def dominated(p: tuple[float, float], q: tuple[float, float]) -> bool:
    """``q`` dominates ``p``: costs at most as much, at least as accurate, better in one."""
    return q[0] <= p[0] and q[1] >= p[1] and (q[0] < p[0] or q[1] > p[1])


small = st.integers(0, 6).map(float)


@given(st.lists(st.tuples(small, small), max_size=25))
def test_front_is_exactly_the_undominated_points(points: list[tuple[float, float]]) -> None:
    front = pareto_front(points)
    undominated = {p for p in points if not any(dominated(p, q) for q in points)}
    assert {points[i] for i in front} == undominated
    assert len(front) == len(undominated)  # one index per distinct front point
    assert [points[i][0] for i in front] == sorted(points[i][0] for i in front)


def row(
    cell: str, scheme: str, acc: float | None, **profiles: tuple[str, float, float]
) -> dict[str, Any]:
    """A cell-table row with two rounds and two devices per profile; ``profiles`` maps a
    profile to (link, compute J, radio J) over the run, or ``excluded``."""
    r: dict[str, Any] = {"cell": cell, "scheme.name": scheme, "scheme": scheme, "rounds": 2,
                         "accuracy": acc}  # fmt: skip
    for pid, (link, compute, radio) in profiles.items():
        pre = f"per_profile.{pid}"
        r |= {f"{pre}.link": link, f"{pre}.devices": 2, f"{pre}.compute_j": compute,
              f"{pre}.radio_j": radio}  # fmt: skip
    return r


TABLE = [
    # mcu costs per device a round: a 1.0 J, b 0.25 J, c 0.125 J (excluded), d 0.5 J
    row("a", "fedavg", 0.90, mcu=("ble", 3.0, 1.0), pi=("wifi", 0.4, 0.0)),
    row("b", "fsl", 0.80, mcu=("ble", 0.5, 0.5), pi=("wifi", 4.0, 0.0)),
    {
        **row("c", "kd", 0.95, mcu=("ble", 0.25, 0.25), pi=("wifi", 0.4, 0.0)),
        "excluded.mcu.count": 2,
    },
    row("d", "ftl", 0.85, mcu=("nb", 1.0, 1.0), pi=("wifi", 0.4, 0.0)),
    row("e", "cascade", None, mcu=("nb", 0.0, 0.0), pi=("wifi", 0.0, 0.0)),
]


def test_energy_per_device_and_round() -> None:
    assert energy_per_round_j(TABLE[0], "mcu") == 1.0
    assert energy_per_round_j(TABLE[1], "pi") == 1.0
    assert energy_per_round_j(TABLE[0], "nobody") is None


def test_recommendation_worked_by_hand() -> None:
    objective = SweepObjective(energy_budget_j=0.6)
    recs = {(r.profile, r.link): r for r in recommend(TABLE, grid_keys=["scheme.name"],
                                                        objective=objective)}  # fmt: skip
    assert set(recs) == {("mcu", "ble"), ("mcu", "nb"), ("pi", "wifi")}
    # mcu on ble: a is over budget (1 J), c did not fit, b (0.25 J) is left
    ble = recs[("mcu", "ble")]
    assert (ble.cell, ble.choice, ble.metric, ble.energy_per_round_j) == (
        "b", (("scheme.name", "fsl"),), 0.80, 0.25)  # fmt: skip
    assert (ble.settings, ble.within_budget) == (3, 1)
    assert "scheme.name=fedavg reaches 90.0% but needs 1 J" in ble.why
    assert "did not fit in 1" in ble.why
    # mcu on nb: d needs 0.5 J, within; e has no accuracy (nothing deployed)
    assert recs[("mcu", "nb")].cell == "d"
    # pi on wifi: c is the most accurate (0.1 J; only the mcu was excluded); b is 1 J
    assert recs[("pi", "wifi")].cell == "c"
    assert recs[("pi", "wifi")].within_budget == 3  # a, c, d; b is over, e has no accuracy


def test_no_setting_within_the_budget_says_the_cheapest() -> None:
    rec = recommend(TABLE[:2], grid_keys=["scheme.name"], objective=SweepObjective(
        energy_budget_j=0.1))[0]  # fmt: skip
    assert (rec.profile, rec.cell, rec.choice) == ("mcu", None, ())
    assert "the cheapest, scheme.name=fsl, needs 0.25 J" in rec.why


def test_without_a_budget_the_most_accurate_and_ties_go_to_the_cheaper() -> None:
    twin = row("a2", "fedprox", 0.90, mcu=("ble", 1.0, 1.0), pi=("wifi", 0.4, 0.0))
    recs = recommend([*TABLE, twin], grid_keys=["scheme.name"],
                     objective=SweepObjective(energy_budget_j=None))  # fmt: skip
    assert {(r.profile, r.link): r.cell for r in recs}[("mcu", "ble")] == "a2"


def test_given_keys_split_the_recommendation() -> None:
    rows = [{**r, "distance": d} for r in TABLE[:2] for d in (10, 300)]
    for r in rows:
        r["cell"] = f"{r['cell']}{r['distance']}"
    rows[0]["accuracy"] = 0.1  # a at 10 m is now worse than b at 10 m
    objective = SweepObjective(energy_budget_j=None, given=["distance"])
    recs = recommend(rows, grid_keys=["scheme.name", "distance"], objective=objective)
    got = {(r.profile, r.given): r.cell for r in recs}
    assert got[("mcu", (("distance", 10),))] == "b10"
    assert got[("mcu", (("distance", 300),))] == "a300"
    assert all(r.choice == (("scheme.name", r.cell and {"a": "fedavg", "b": "fsl"}[r.cell[0]]),)
               for r in recs)  # fmt: skip
