"""The HTML report of a sweep, built only from its table (``table.csv``, ``sweep.json``).

Self-contained like a run's report (:mod:`tinylarge.results.report`, whose plot and table
helpers it uses): the Pareto fronts of accuracy against device energy, simulated latency
and bytes on air, the costs per scheme and per device profile, and the recommended cell
per device profile and link under the sweep's objective, with why.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tinylarge.explore.pareto import energy_per_round_j, pareto_front, profiles, took_part
from tinylarge.results.report import _figure_png, _table

if TYPE_CHECKING:
    from tinylarge.results.sweepdir import SweepDir

Row = Mapping[str, Any]

#: (title, x label, cost of a row) of each front; accuracy is the y axis.
FRONTS: tuple[tuple[str, str, Callable[[Row], Any]], ...] = (
    ("device energy", "device energy, whole run (J)", lambda r: r.get("device_energy_j")),
    ("simulated latency", "simulated time, whole run (s)", lambda r: r.get("total_latency_s")),
    (
        "bytes on air",
        "bytes on air, up + down",
        lambda r: (
            None
            if r.get("bytes_up") is None
            else (r.get("bytes_up") or 0) + (r.get("bytes_down") or 0)
        ),
    ),
)


def _mean(values: Sequence[float | None]) -> float | None:
    nums = [float(v) for v in values if v is not None]
    return math.fsum(nums) / len(nums) if nums else None


def _label(row: Row, keys: Sequence[str]) -> str:
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={row.get(k)}" for k in keys)


def _front_plot(
    rows: Sequence[Row], xlabel: str, cost: Callable[[Row], Any]
) -> tuple[str, list[int]]:
    """A scatter of every cell by scheme, the front as a step line; and the front's rows."""
    pts = [
        (i, float(cost(r)), float(r["accuracy"]))
        for i, r in enumerate(rows)
        if cost(r) is not None and r.get("accuracy") is not None
    ]
    front = [pts[j][0] for j in pareto_front([(c, a) for _, c, a in pts])]
    positive = [c for _, c, _ in pts if c > 0]

    def draw(ax: Any) -> None:
        schemes = sorted({str(rows[i].get("scheme")) for i, _, _ in pts})
        for k, scheme in enumerate(schemes):
            for reached in (True, False):  # hollow: no byte on air, every device out of reach
                mine = [
                    (c, a)
                    for i, c, a in pts
                    if str(rows[i].get("scheme")) == scheme and _on_air(rows[i]) == reached
                ]
                if mine:
                    ax.scatter(
                        [c for c, _ in mine],
                        [a for _, a in mine],
                        s=18,
                        label=scheme if reached else None,
                        color=f"C{k % 10}",
                        facecolors=None if reached else "none",
                        alpha=0.8,
                    )
        fx = [float(cost(rows[i])) for i in front]
        fy = [float(rows[i]["accuracy"]) for i in front]
        ax.step(fx, fy, where="post", color="black", lw=1, label="Pareto front")
        for n, (x, y) in enumerate(zip(fx, fy, strict=True), start=1):
            ax.annotate(str(n), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
        if positive and len(positive) == len(pts):
            ax.set_xscale("log")
        elif positive:  # zero (nothing sent: every device in outage) sits in the linear part
            ax.set_xscale("symlog", linthresh=min(positive))
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy (device-side)")
        ax.legend(fontsize=6, ncol=2, loc="best")

    return _figure_png(draw), front


def _on_air(row: Row) -> bool:
    """Some byte crossed a link in the cell (else every device was out of reach)."""
    return bool(row.get("bytes_up") or row.get("bytes_down"))


def build_sweep_report(sweep: SweepDir) -> Path:
    """Write ``report.html`` into the sweep directory and return its path."""
    meta = sweep.meta()
    rows = sweep.table()
    keys = sweep.grid_keys()
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>tinylarge sweep {html.escape(sweep.path.name)}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;"
        "color:#222}table{border-collapse:collapse;margin:1em 0;font-size:90%;display:block;"
        "overflow-x:auto;max-width:100%}td,th{border:1px "
        "solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}"
        "td:first-child{text-align:left}td.why{text-align:left}img{max-width:100%}</style>"
        "</head><body>",
        f"<h1>Sweep {html.escape(str(sweep.path))}</h1>",
        f"<p>{len(rows)} cells of <code>{html.escape(str(meta['config']))}</code> over "
        + ", ".join(
            f"<code>{html.escape(a['key'])}</code> ({len(a['values'])} values)"
            for a in meta["grid"]
        )
        + f", {meta['seeds']} seed(s) each; {len(meta['invalid'])} invalid cells skipped. "
        "Every number below was measured in the sweep's runs and is read from table.csv "
        "(seeds: the mean; <code>_std</code> columns hold the spread).</p>",
    ]
    parts += _recommendation_section(sweep)
    parts += [
        "<h2>Pareto fronts</h2>",
        "<p>A cell is on a front when no other is at least as accurate for at most its cost. "
        "Hollow markers: cells where no byte crossed any link (every device out of reach); "
        "they cost nothing and keep what the scheme had without the devices.</p>",
    ]
    for title, xlabel, cost in FRONTS:
        png, front = _front_plot(rows, xlabel, cost)
        parts += [
            f"<h3>Accuracy against {html.escape(title)}</h3>",
            f"<img class='plot' alt='Pareto front: accuracy against {html.escape(title)}' "
            f"src='data:image/png;base64,{png}'>",
            _table(
                ["#", *keys, "accuracy", title],
                [
                    [n, *(rows[i].get(k) for k in keys), rows[i].get("accuracy"), cost(rows[i])]
                    for n, i in enumerate(front, start=1)
                ],
            ),
        ]
    parts += _scheme_section(rows)
    parts += _profile_section(rows)
    parts += [
        "<h2>Every cell</h2>",
        _table(
            [
                *keys,
                "accuracy",
                "server accuracy",
                "device J",
                "sim time s",
                "bytes up",
                "bytes down",
                "seeds",
                "cell",
            ],
            [
                [
                    *(r.get(k) for k in keys),
                    r.get("accuracy"),
                    r.get("large_accuracy"),
                    r.get("device_energy_j"),
                    r.get("total_latency_s"),
                    r.get("bytes_up"),
                    r.get("bytes_down"),
                    r.get("n_seeds"),
                    r.get("cell"),
                ]
                for r in rows
            ],
        ),
    ]
    if meta["invalid"]:
        parts += [
            "<h2>Invalid cells (skipped)</h2>",
            _table(
                ["cell", "why"],
                [[_coords(b["coords"]), b["reason"]] for b in meta["invalid"]],
            ),
        ]
    if meta["failed"]:
        parts += [
            "<h2>Runs that failed</h2>",
            _table(
                ["cell", "seed", "error"],
                [[f["cell"], f["seed"], f["error"]] for f in meta["failed"]],
            ),
        ]
    parts.append("</body></html>")
    out = sweep.path / "report.html"
    out.write_text("\n".join(parts))
    return out


def _coords(coords: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in coords.items())


def _recommendation_section(sweep: SweepDir) -> list[str]:
    return [
        "<h2>Recommendation per device profile and link</h2>",
        f"<p>Objective: {html.escape(sweep.objective_text())}. Per profile and link, the "
        "cell with the highest accuracy among those where the profile took part (it fitted) "
        "and stayed within the budget; the energy is the profile's compute and radio joules "
        "in the ledger per device and round. Rebuild with another budget: "
        f"<code>tinylarge sweep --report {html.escape(str(sweep.path))} --energy-budget J"
        "</code>.</p>",
        _table(*sweep.recommendation_table()).replace("<td>", "<td class='why'>"),
    ]


def _scheme_section(rows: Sequence[Row]) -> list[str]:
    schemes = list(dict.fromkeys(str(r.get("scheme")) for r in rows))
    by = {s: [r for r in rows if str(r.get("scheme")) == s] for s in schemes}

    def mean(s: str, col: str) -> float | None:
        return _mean([r.get(col) for r in by[s]])

    compute = [mean(s, "device_compute_energy_j") or 0.0 for s in schemes]
    radio = [
        max(0.0, (mean(s, "device_energy_j") or 0.0) - c)
        for s, c in zip(schemes, compute, strict=True)
    ]
    up = [mean(s, "bytes_up") or 0.0 for s in schemes]
    down = [mean(s, "bytes_down") or 0.0 for s in schemes]

    def energy(ax: Any) -> None:
        ax.bar(schemes, compute, label="compute")
        ax.bar(schemes, radio, bottom=compute, label="radio and other")
        ax.set_ylabel("device energy, mean over cells (J)")
        ax.legend(fontsize=7)

    def traffic(ax: Any) -> None:
        ax.bar(schemes, up, label="up")
        ax.bar(schemes, down, bottom=up, label="down")
        ax.set_ylabel("bytes on air, mean over cells")
        ax.legend(fontsize=7)

    return [
        "<h2>Costs per scheme</h2>",
        "<p>Means over each scheme's cells (every link and setting it ran with).</p>",
        _table(
            [
                "scheme",
                "cells",
                "accuracy",
                "device J",
                "compute J",
                "sim time s",
                "bytes up",
                "bytes down",
            ],
            [
                [
                    s,
                    len(by[s]),
                    mean(s, "accuracy"),
                    mean(s, "device_energy_j"),
                    mean(s, "device_compute_energy_j"),
                    mean(s, "total_latency_s"),
                    mean(s, "bytes_up"),
                    mean(s, "bytes_down"),
                ]
                for s in schemes
            ],
        ),
        "<img class='plot' alt='Device energy per scheme' "
        f"src='data:image/png;base64,{_figure_png(energy)}'>",
        "<img class='plot' alt='Bytes on air per scheme' "
        f"src='data:image/png;base64,{_figure_png(traffic)}'>",
    ]


def _profile_section(rows: Sequence[Row]) -> list[str]:
    pids = list(dict.fromkeys(p for r in rows for p in profiles(r)))
    schemes = list(dict.fromkeys(str(r.get("scheme")) for r in rows))
    table_rows: list[list[Any]] = []
    per_round: dict[tuple[str, str], float | None] = {}
    for pid in pids:
        for s in schemes:
            mine = [r for r in rows if str(r.get("scheme")) == s and pid in profiles(r)]
            ran = [r for r in mine if took_part(r, pid)]
            if not mine:
                continue

            def col(name: str, rs: Sequence[Row] = ran, p: str = pid) -> float | None:
                return _mean(
                    [
                        None
                        if r.get(f"per_profile.{p}.{name}") is None
                        else r[f"per_profile.{p}.{name}"]
                        / r[f"per_profile.{p}.devices"]
                        / r["rounds"]
                        for r in rs
                    ]
                )

            per_round[(pid, s)] = _mean([energy_per_round_j(r, pid) for r in ran])
            table_rows.append(
                [
                    pid,
                    s,
                    f"{len(ran)}/{len(mine)}",
                    col("compute_j"),
                    col("radio_j"),
                    col("compute_s"),
                    col("airtime_s"),
                    col("bytes_up"),
                ]
            )

    def draw(ax: Any) -> None:
        width = 0.8 / max(1, len(schemes))
        for k, s in enumerate(schemes):
            xs = [i + k * width for i in range(len(pids))]
            ys = [per_round.get((p, s)) or 0.0 for p in pids]
            ax.bar(xs, ys, width=width, label=s, color=f"C{k % 10}")
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(pids))], pids)
        ax.set_yscale("symlog", linthresh=1e-4)
        ax.set_ylabel("J per device a round")
        ax.legend(fontsize=6, ncol=3)

    return [
        "<h2>Costs per device profile</h2>",
        "<p>Per device of the profile and per round, mean over the cells where it took part "
        "(took part: cells where it fitted, of the cells of that scheme).</p>",
        _table(
            [
                "profile",
                "scheme",
                "took part",
                "compute J",
                "radio J",
                "compute s",
                "airtime s",
                "bytes up",
            ],
            table_rows,
        ),
        "<img class='plot' alt='Energy per device a round, per profile and scheme' "
        f"src='data:image/png;base64,{_figure_png(draw)}'>",
    ]
