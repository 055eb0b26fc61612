"""An HTML report of a run directory, built only from what the run recorded.

The report reads ``summary.json``, ``metrics.csv`` and ``ledger.csv`` and writes
``report.html`` (self-contained: plots are embedded PNGs) beside them. Every
number in it comes from those files; nothing is recomputed from models.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tinylarge.errors import TinylargeError
from tinylarge.results.figures import scheme_sections
from tinylarge.results.rundir import RunDir
from tinylarge.sim.ledger import Ledger


def _figure_png(draw: Any) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 3.2), dpi=110)
    draw(ax)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _table(headers: list[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    if v is None:
        return "n/a"
    return str(v)


def build_report(run_dir: str | Path, *, ledger: Ledger | None = None) -> Path:
    """Write ``report.html`` into a completed run directory and return its path.

    ``ledger``: the run's ledger when the caller has already read it (``tinylarge run``
    reads it once for the report and the printed summary); else it is read from the run."""
    run = RunDir(run_dir)
    if not run.path.is_dir():
        what = "is a file" if run.path.exists() else "does not exist"
        raise TinylargeError(f"run directory {str(run.path)!r} {what}")
    if not run.complete:
        raise TinylargeError(
            f"{str(run.path)!r} has no summary.json: the run did not complete "
            "(finish it with `tinylarge run CONFIG --out DIR --resume`)"
        )
    s = run.read_summary()
    rows = run.read_metrics()
    if ledger is None:
        ledger = Ledger.from_csv(run.ledger_path)
    evaluated = [r for r in rows if r["accuracy"] is not None]
    plots: list[tuple[str, str]] = []
    if evaluated:

        def accuracy(ax: Any) -> None:
            ax.plot(
                [r["round"] + 1 for r in evaluated],
                [r["accuracy"] for r in evaluated],
                "o-",
                label="device-side model",
            )
            large = [r for r in evaluated if r.get("large_accuracy") is not None]
            if large:
                ax.plot(
                    [r["round"] + 1 for r in large],
                    [r["large_accuracy"] for r in large],
                    "s--",
                    label="server-side model",
                )
            ax.set_xlabel("round")
            ax.set_ylabel("test accuracy")
            ax.legend()

        plots.append(("Accuracy per round", _figure_png(accuracy)))

        def acc_vs_clock(ax: Any) -> None:
            ax.plot([r["clock_s"] for r in evaluated], [r["accuracy"] for r in evaluated], "o-")
            ax.set_xlabel("simulated time (s)")
            ax.set_ylabel("test accuracy")

        plots.append(("Accuracy against simulated time", _figure_png(acc_vs_clock)))

    private = [r for r in rows if r.get("epsilon") is not None]
    if private:

        def epsilon(ax: Any) -> None:
            ax.plot([r["round"] + 1 for r in private], [r["epsilon"] for r in private], "o-")
            ax.set_xlabel("round")
            ax.set_ylabel(f"epsilon at delta {s.get('delta'):g}")

        plots.append(("Privacy spent (epsilon) per round", _figure_png(epsilon)))

    def latency(ax: Any) -> None:
        ax.bar([r["round"] + 1 for r in rows], [r["latency_s"] for r in rows])
        ax.set_xlabel("round")
        ax.set_ylabel("round latency (s)")

    plots.append(("Simulated latency per round", _figure_png(latency)))
    per = s.get("per_profile", {})
    if per:

        def energy(ax: Any) -> None:
            names = list(per)
            compute = [per[n]["compute_j"] for n in names]
            radio = [per[n]["radio_j"] for n in names]
            ax.bar(names, compute, label="compute")
            ax.bar(names, radio, bottom=compute, label="radio")
            ax.set_ylabel("device energy (J)")
            ax.tick_params(axis="x", rotation=30)
            ax.legend()

        plots.append(("Device energy per profile", _figure_png(energy)))
    from tinylarge.results.fleet import fleet_figures  # moving devices: the fleet over time

    plots += [(title, _figure_png(draw)) for title, draw in fleet_figures(run, rows, ledger)]

    headline = [
        ["scheme", s.get("scheme")],
        ["dataset", s.get("dataset")],
        ["model", s.get("model")],
        ["rounds", s.get("rounds")],
        ["seed", s.get("seed")],
        ["accuracy (device-side)", s.get("accuracy")],
        ["accuracy (server-side)", s.get("large_accuracy")],
        ["simulated time (s)", s.get("total_latency_s")],
        ["device energy (J)", s.get("device_energy_j")],
        ["bytes up", s.get("bytes_up")],
        ["bytes down", s.get("bytes_down")],
        ["flash bytes (device model)", s.get("flash_bytes")],
        ["peak SRAM bytes (device model)", s.get("peak_sram_bytes")],
        ["wall time (s)", s.get("wall_time_s")],
        ["ledger events", len(ledger)],
    ]
    if "delta" in s:
        headline += [
            ["epsilon (unbounded if empty)", s.get("epsilon")],
            ["delta", s.get("delta")],
            ["noise multiplier", s.get("noise_multiplier")],
            ["accountant", s.get("accountant")],
        ]
    if "privacy_device_energy_j" in s:
        headline += [
            ["privacy: device energy (J)", s.get("privacy_device_energy_j")],
            ["privacy: device seconds", s.get("privacy_device_seconds")],
            ["privacy: bytes on air", s.get("privacy_bytes")],
        ]
    if "handovers" in s:
        headline += [
            ["handovers (moving devices)", s.get("handovers")],
            ["transfers in outage (moving devices)", s.get("outage_transfers")],
        ]
    aborted = [r for r in rows if r.get("secagg_aborted")]
    if any(r.get("secagg_survivors") is not None for r in rows):
        headline.append(["secure aggregation: rounds aborted", len(aborted)])
    fits = [[pid, ok] for pid, ok in s.get("fits", {}).items()]
    excluded = [[pid, v["count"], v["reason"]] for pid, v in s.get("excluded", {}).items()]
    profile_rows = [
        [
            pid,
            v["tier"],
            v.get("stack") or "-",
            v["link"],
            v["devices"],
            v["compute_j"],
            v["radio_j"],
            v["bytes_up"],
            v["bytes_down"],
        ]
        for pid, v in per.items()
    ]
    metric_cols = [
        "round",
        "accuracy",
        "loss",
        "latency_s",
        "participants",
        "dropped",
        "bytes_up",
        "bytes_down",
        "device_energy_j",
    ]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>tinylarge run {html.escape(run.path.name)}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;"
        "color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:3px 8px;text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}"
        "img{max-width:100%}</style></head><body>",
        f"<h1>Run {html.escape(str(run.path))}</h1>",
        "<p>Every figure below was measured in this run: it is read from summary.json, "
        "metrics.csv and ledger.csv.</p>",
        "<h2>Summary</h2>",
        _table(["", ""], headline),
        "<h2>Device fit</h2>",
        _table(["profile", "fits"], fits),
    ]
    if excluded:
        parts += ["<h3>Excluded devices</h3>", _table(["profile", "count", "reason"], excluded)]
    for sec in scheme_sections(s, rows, ledger):  # the scheme's own figures (results/figures.py)
        parts += [f"<h2>{html.escape(sec.title)}</h2>", _table(list(sec.headers), sec.rows)]
        if sec.note:
            parts.append(f"<p>{html.escape(sec.note)}</p>")
    if profile_rows:
        parts += [
            "<h2>Where the energy and the bytes went</h2>",
            _table(
                [
                    "profile",
                    "tier",
                    "stack",
                    "link",
                    "devices",
                    "compute J",
                    "radio J",
                    "bytes up",
                    "bytes down",
                ],
                profile_rows,
            ),
        ]
    for title, png in plots:
        parts.append(
            f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' "
            f"src='data:image/png;base64,{png}'>"
        )
    parts += [
        "<h2>Per round</h2>",
        _table(metric_cols, [[r.get(c) for c in metric_cols] for r in rows]),
        "</body></html>",
    ]
    out = run.path / "report.html"
    out.write_text("\n".join(parts))
    return out
