"""The fleet over time in a run report: where moving devices were and what rate they got.

Read only from the run directory: the resolved ``config.yaml`` (which device belongs to
which group), ``metrics.csv`` (when each round began: ``clock_s - latency_s``) and
``ledger.csv`` (each moving device's transfers with their start ``at_s``, distance to
the serving cell, rate and outage). A transfer's simulated time is its round's start
plus its ``at_s``. Runs without moving devices have no such events and get no figure.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from tinylarge.errors import TinylargeError
from tinylarge.results.rundir import RunDir
from tinylarge.sim.ledger import Event, Ledger

#: A figure: a title and a function that draws on matplotlib axes.
Figure = tuple[str, Callable[[Any], None]]


def group_labels(config: dict[str, Any]) -> dict[str, str]:
    """``client-N`` -> the label of its device group (``"0: rpi4 on nr-sub6"``)."""
    out: dict[str, str] = {}
    cid = 0
    for i, g in enumerate(config.get("topology", {}).get("devices", [])):
        label = f"{i}: {g.get('name') or g.get('profile')} on {g.get('link', 'wifi6')}"
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

    rates = [e.rate_bps / 1e6 for pts in samples.values() for _, e in pts if e.rate_bps > 0]
    #: Where a transfer in outage (rate 0) is drawn on the rate's log axis.
    floor = min(rates, default=1.0) / 3.0

    def draw(field: str, ylabel: str, scale: float, *, log: bool) -> Callable[[Any], None]:
        def plot(ax: Any) -> None:
            for i, (label, points) in enumerate(sorted(samples.items())):
                colour = f"C{i % 10}"
                ok = [(t, getattr(e, field) / scale) for t, e in points if not e.outage]
                lost = [
                    (t, floor if log else getattr(e, field) / scale) for t, e in points if e.outage
                ]
                if ok:
                    ax.plot(*zip(*ok, strict=True), ".", color=colour, ms=4, label=label)
                if lost:
                    ax.plot(*zip(*lost, strict=True), "x", color=colour, ms=5,
                            label=f"{label}: outage" + (" (rate 0)" if log else ""))  # fmt: skip
            if log:
                ax.set_yscale("log")
            ax.set_xlabel("simulated time (s)")
            ax.set_ylabel(ylabel)
            ax.legend(fontsize=7)

        return plot

    return [
        (
            "Fleet over time: distance to the serving cell",
            draw("distance_m", "distance (m)", 1.0, log=False),
        ),
        ("Fleet over time: rate per transfer", draw("rate_bps", "rate (Mbit/s)", 1e6, log=True)),
    ]


def save_fleet_png(run_dir: str | Path, out: str | Path) -> Path:
    """Both fleet figures of ``run_dir`` stacked in one PNG (the docs' plot):
    ``python -m tinylarge.results.fleet RUN_DIR OUT.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = RunDir(run_dir)
    figures = fleet_figures(run, run.read_metrics(), Ledger.from_csv(run.ledger_path))
    if not figures:
        raise TinylargeError(f"{str(run.path)!r} has no moving devices: no fleet to plot")
    fig, axes = plt.subplots(len(figures), 1, figsize=(7.0, 3.0 * len(figures)), dpi=110)
    for ax, (title, draw) in zip(axes, figures, strict=True):
        draw(ax)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(out)
    fig.savefig(path)
    plt.close(fig)
    return path


if __name__ == "__main__":  # pragma: no cover - a docs helper
    if len(sys.argv) != 3:
        sys.exit("usage: python -m tinylarge.results.fleet RUN_DIR OUT.png")
    try:
        print(save_fleet_png(sys.argv[1], sys.argv[2]))
    except TinylargeError as exc:
        sys.exit(f"error: {exc}")
