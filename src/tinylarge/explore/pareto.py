"""Pareto fronts and the recommendation per device profile and link: pure functions over
the rows of a sweep's cell table (:mod:`tinylarge.explore.table`).

A cell is on the front of accuracy against a cost when no other cell is at least as
accurate for at most the cost and strictly better in one of the two. The recommendation
for a device profile on a link is the cell that maximises the objective's metric among the
cells where that profile ran on that link, took part (it was not excluded for not
fitting) and kept each of its devices within the energy budget per round; the energy is
the profile's compute and radio joules from the ledger (``per_profile.<id>.compute_j``,
``radio_j``) over its devices and the rounds run. Ties go to the cheaper cell.

>>> pareto_front([(1.0, 0.5), (2.0, 0.7), (3.0, 0.6), (1.0, 0.4)])
[0, 1]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tinylarge.explore.spec import SweepObjective

PER_PROFILE = "per_profile."


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points ``(cost, value)`` no other point dominates (cost at most,
    value at least, one strictly), by rising cost; of equal points the first."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1], i))
    front: list[int] = []
    best = float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def profiles(row: Mapping[str, Any]) -> list[str]:
    """The device profiles of a table row (its ``per_profile.<id>.link`` columns)."""
    return [
        col[len(PER_PROFILE) : -len(".link")]
        for col in row
        if col.startswith(PER_PROFILE) and col.endswith(".link") and row[col] is not None
    ]


def took_part(row: Mapping[str, Any], profile: str) -> bool:
    """The profile ran in the cell: it has devices and none was excluded for not fitting."""
    return bool(row.get(f"{PER_PROFILE}{profile}.devices")) and not row.get(
        f"excluded.{profile}.count"
    )


def energy_per_round_j(row: Mapping[str, Any], profile: str) -> float | None:
    """Joules one device of ``profile`` spent a round (compute and radio), or None."""
    pre = f"{PER_PROFILE}{profile}."
    devices, rounds = row.get(f"{pre}devices"), row.get("rounds")
    compute, radio = row.get(f"{pre}compute_j"), row.get(f"{pre}radio_j")
    if not devices or not rounds or compute is None or radio is None:
        return None
    return float(compute + radio) / float(devices) / float(rounds)


@dataclass(frozen=True)
class Recommendation:
    """The recommended cell for one profile on one link (and one value of each given key),
    or none, with the sentence that says why."""

    profile: str
    link: str
    given: tuple[tuple[str, Any], ...]
    cell: str | None
    choice: tuple[tuple[str, Any], ...]
    metric: float | None
    energy_per_round_j: float | None
    settings: int
    within_budget: int
    why: str


def describe_objective(objective: SweepObjective) -> str:
    """The objective as a sentence."""
    budget = objective.energy_budget_j
    limit = (
        "with no energy budget"
        if budget is None
        else f"with each device of the profile spending at most {budget:g} J a round "
        "(compute and radio)"
    )
    return f"the highest {objective.metric.replace('_', ' ')} {limit}"


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def _setting(row: Mapping[str, Any], keys: Sequence[str]) -> str:
    return ", ".join(f"{k}={row[k]}" for k in keys) or str(row.get("cell"))


def recommend(
    rows: Sequence[Mapping[str, Any]],
    *,
    grid_keys: Sequence[str],
    objective: SweepObjective,
) -> list[Recommendation]:
    """One recommendation per (profile, link, given values) of the cell table ``rows``."""
    given_keys = [k for k in objective.given if k in grid_keys]
    metric = objective.metric
    groups: dict[tuple[str, str, tuple[tuple[str, Any], ...]], list[Mapping[str, Any]]] = {}
    for row in rows:
        for pid in profiles(row):
            given = tuple((k, row[k]) for k in given_keys)
            groups.setdefault((pid, str(row[f"{PER_PROFILE}{pid}.link"]), given), []).append(row)
    out = []
    for (pid, link, given), group in groups.items():
        choice_keys = [
            k for k in grid_keys if k not in given_keys and str(group[0].get(k)) != link
        ]  # the link itself is the group, not a choice
        ran = [r for r in group if took_part(r, pid) and r.get(metric) is not None]
        costed = [(r, energy_per_round_j(r, pid)) for r in ran]
        inside = [
            (r, e)
            for r, e in costed
            if e is not None
            and (objective.energy_budget_j is None or e <= objective.energy_budget_j)
        ]
        best = min(
            inside,
            key=lambda re: (-float(re[0][metric]), re[1], str(re[0].get("cell"))),
            default=None,
        )
        why = _why(pid, link, group, ran, costed, inside, best, choice_keys, objective)
        out.append(
            Recommendation(
                profile=pid,
                link=link,
                given=given,
                cell=None if best is None else str(best[0]["cell"]),
                choice=() if best is None else tuple((k, best[0][k]) for k in choice_keys),
                metric=None if best is None else float(best[0][metric]),
                energy_per_round_j=None if best is None else best[1],
                settings=len(group),
                within_budget=len(inside),
                why=why,
            )
        )
    return sorted(out, key=lambda r: (r.profile, r.link, str(r.given)))


def _why(
    pid: str,
    link: str,
    group: Sequence[Mapping[str, Any]],
    ran: Sequence[Mapping[str, Any]],
    costed: Sequence[tuple[Mapping[str, Any], float | None]],
    inside: Sequence[tuple[Mapping[str, Any], float | None]],
    best: tuple[Mapping[str, Any], float | None] | None,
    keys: Sequence[str],
    objective: SweepObjective,
) -> str:
    metric = objective.metric.replace("_", " ")
    budget = objective.energy_budget_j
    unfit = len(group) - len([r for r in group if took_part(r, pid)])
    excluded = f"; {pid} did not fit in {unfit} of them" if unfit else ""
    if best is None:
        if not ran:
            return f"{pid} took part in none of the {len(group)} settings on {link}{excluded}"
        known = [(r, e) for r, e in costed if e is not None]
        if not known:
            return f"no setting on {link} recorded {pid}'s energy"
        cheapest = min(known, key=lambda c: c[1])
        return (
            f"none of the {len(ran)} settings where {pid} took part on {link} keeps a device "
            f"within {budget:g} J a round; the cheapest, {_setting(cheapest[0], keys)}, "
            f"needs {cheapest[1]:.3g} J{excluded}"
        )
    row, energy = best
    assert energy is not None
    std = row.get(f"{objective.metric}_std")
    spread = f" (std {100 * std:.1f} points over {row.get('n_seeds')} seeds)" if std else ""
    budget_text = "" if budget is None else f", within the {budget:g} J budget"
    text = (
        f"{metric} {_pct(float(row[objective.metric]))}{spread} at {energy:.3g} J per {pid} "
        f"device a round{budget_text}: the best of {len(inside)} settings "
        f"{'within it' if budget is not None else 'that ran'} on {link}"
    )
    better = [
        (r, e)
        for r, e in costed
        if e is not None and float(r[objective.metric]) > float(row[objective.metric])
    ]
    if better:
        top, e_top = max(better, key=lambda re: float(re[0][objective.metric]))
        text += (
            f"; {_setting(top, keys)} reaches {_pct(float(top[objective.metric]))} "
            f"but needs {e_top:.3g} J"
        )
    pre = f"{PER_PROFILE}{pid}."
    if not row.get(f"{pre}bytes_up") and not row.get(f"{pre}bytes_down"):
        text += (
            f"; no byte crossed {pid}'s link (its devices were out of reach): the accuracy is "
            "what the scheme had without them"
        )
    return text + excluded
