"""The fleet over time in a run report: where moving devices were and what rate they got.

Read only from the run directory: the resolved ``config.yaml`` (which device belongs to
which group), ``metrics.csv`` (when each round began: ``clock_s - latency_s``) and
``ledger.csv`` (each moving device's transfers with their start ``at_s``, distance to
the serving cell, rate and outage). A transfer's simulated time is its round's start
plus its ``at_s``. Runs without moving devices have no such events and get no figure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import yaml

from tinylarge.results.rundir import RunDir
from tinylarge.sim.ledger import Event, Ledger

#: A figure: a title and a function that draws on matplotlib axes.
Figure = tuple[str, Callable[[Any], None]]


def group_labels(config: dict[str, Any]) -> dict[str, str]:
    """``client-N`` -> the label of its device group (``"0: rpi4 on nr-sub6"``)."""
    out: dict[str, str] = {}
    cid = 0
    for i, g in enumerate(config.get("topology", {}).get("devices", [])):
        label = f"{i}: {g.get('profile')} on {g.get('link', 'wifi6')}"
        for _ in range(int(g.get("count", 1))):
            out[f"client-{cid}"] = label
            cid += 1
    return out


def fleet_samples(
    run: RunDir, rows: Sequence[dict[str, Any]], ledger: Ledger
) -> dict[str, list[tuple[float, Event]]]:
    """Per device group: ``(simulated time, event)`` of every moving device's transfer."""
    moving = [e for e in ledger if e.kind != "compute" and e.cell]
    if not moving:
        return {}
    starts = {int(r["round"]): float(r["clock_s"]) - float(r["latency_s"]) for r in rows}
    labels = group_labels(yaml.safe_load(run.config_path.read_text()) or {})
    out: dict[str, list[tuple[float, Event]]] = {}
    for e in moving:
        t = starts.get(e.round, 0.0) + e.at_s
        out.setdefault(labels.get(e.node, e.node), []).append((t, e))
    return out


def fleet_figures(run: RunDir, rows: Sequence[dict[str, Any]], ledger: Ledger) -> list[Figure]:
    """Distance to the serving cell and rate per transfer against simulated time, one colour
    per device group; transfers in outage are crosses (rate 0)."""
    samples = fleet_samples(run, rows, ledger)
    if not samples:
        return []

    def draw(field: str, ylabel: str, scale: float) -> Callable[[Any], None]:
        def plot(ax: Any) -> None:
            for i, (label, points) in enumerate(sorted(samples.items())):
                colour = f"C{i % 10}"
                ok = [(t, getattr(e, field) / scale) for t, e in points if not e.outage]
                lost = [(t, getattr(e, field) / scale) for t, e in points if e.outage]
                if ok:
                    ax.plot(*zip(*ok, strict=True), ".", color=colour, ms=4, label=label)
                if lost:
                    ax.plot(*zip(*lost, strict=True), "x", color=colour, ms=5,
                            label=f"{label}: outage")  # fmt: skip
            ax.set_xlabel("simulated time (s)")
            ax.set_ylabel(ylabel)
            ax.legend(fontsize=7)

        return plot

    return [
        ("Fleet over time: distance to the serving cell", draw("distance_m", "distance (m)", 1.0)),
        ("Fleet over time: rate per transfer", draw("rate_bps", "rate (Mbit/s)", 1e6)),
    ]
