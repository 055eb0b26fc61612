"""The device cost model against every published MLPerf Tiny result (issue 16).

Fits the inference-stack model (:mod:`tinylarge.hardware.stack_fit`) to the published
int8 rows (:func:`tinylarge.hardware.mlperf.fit_rows`: one per device, stack and
benchmark), then prints, in Markdown:

1. every row: predicted against published latency, and energy where published (predicted
   energy = predicted latency x the fitted power of that device and stack);
2. the fit's error on the rows it was fitted to;
3. the leave-one-board-out error: fit without a board, predict its rows; per stack and
   overall, over the rows whose stack was published on at least two other boards, and the
   worst board.

``--write`` also writes the fitted figures to src/tinylarge/hardware/stack_rates.yaml
(package data the catalogue prices devices with). ``--out FILE`` writes the tables there.

    TINYLARGE_DATA=../shared/datasets .venv/bin/python bench/calibration.py [--write] [--out F]
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
from pathlib import Path

import yaml

from tinylarge.hardware.mlperf import fit_rows
from tinylarge.hardware.stack_fit import (
    OVERHEAD_CYCLES,
    RIDGE,
    Prediction,
    benchmark_features,
    fit,
    leave_one_board_out,
    median_abs,
    predict_rows,
)
from tinylarge.hardware.stacks import rates_document

RATES_PATH = Path(__file__).resolve().parents[1] / "src/tinylarge/hardware/stack_rates.yaml"
#: LOBO counts a row when its stack was published on at least this many other boards.
MIN_OTHER_BOARDS = 2


def _power(rows: list) -> dict[tuple[str, str], float]:
    by: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    for r in rows:
        if r.power_w is not None:
            by[(r.device, r.stack)].append(r.power_w)
    return {k: statistics.median(v) for k, v in by.items()}


def row_table(preds: list[Prediction], power: dict[tuple[str, str], float]) -> str:
    lines = [
        "| stack | device | clock MHz | bench | round | published ms | predicted ms | error "
        "| published mJ | predicted mJ | error |",
        "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for p in preds:
        r = p.row
        e_pub = e_pred = e_err = ""
        if r.energy_j is not None and (r.device, r.stack) in power:
            predicted_j = p.predicted_s * power[(r.device, r.stack)]
            e_pub, e_pred = f"{r.energy_j * 1e3:.3f}", f"{predicted_j * 1e3:.3f}"
            e_err = f"{predicted_j / r.energy_j - 1:+.1%}"
        lines.append(
            f"| {r.stack} | {r.device} | {r.clock_hz / 1e6:g} | {r.benchmark} | {r.round} | "
            f"{r.latency_s * 1e3:.2f} | {p.predicted_s * 1e3:.2f} | {p.error:+.1%} | "
            f"{e_pub} | {e_pred} | {e_err} |"
        )
    return "\n".join(lines)


def device_table(preds: list[Prediction]) -> str:
    """Per device: its rows within 15% (what ``tinylarge profile --device D --stack S`` gives,
    tests/hardware/test_calibration.py) and the rows beyond."""
    by: dict[str, list[Prediction]] = collections.defaultdict(list)
    for p in preds:
        by[p.row.device].append(p)
    lines = ["| device | rows | within 15% | beyond 15% |", "|---|---:|---:|---|"]
    for device, ps in sorted(by.items()):
        beyond = "; ".join(
            f"{p.row.stack} {p.row.benchmark} {p.error:+.0%}" for p in ps if abs(p.error) > 0.15
        )
        within = sum(abs(p.error) <= 0.15 for p in ps)
        lines.append(f"| {device} | {len(ps)} | {within} | {beyond or '-'} |")
    return "\n".join(lines)


def lobo_table(preds: list[Prediction]) -> tuple[str, dict[str, float]]:
    counted = [p for p in preds if p.other_boards >= MIN_OTHER_BOARDS]
    by_stack: dict[str, list[Prediction]] = collections.defaultdict(list)
    for p in counted:
        by_stack[p.row.stack].append(p)
    lines = [
        "| stack | boards | rows | median abs error | worst board (its median abs error) |",
        "|---|---|---:|---:|---|",
    ]
    for stack, ps in sorted(by_stack.items()):
        per_board = collections.defaultdict(list)
        for p in ps:
            per_board[p.row.device].append(p.error)
        worst = max(per_board, key=lambda b: median_abs(per_board[b]))
        lines.append(
            f"| {stack} | {', '.join(sorted(per_board))} | {len(ps)} | "
            f"{median_abs([p.error for p in ps]):.1%} | "
            f"{worst} ({median_abs(per_board[worst]):.1%}) |"
        )
    per_board_all = collections.defaultdict(list)
    for p in counted:
        per_board_all[p.row.device].append(p.error)
    worst = max(per_board_all, key=lambda b: median_abs(per_board_all[b]))
    overall = median_abs([p.error for p in counted])
    lines.append(
        f"| **overall** | {len(per_board_all)} boards | {len(counted)} | **{overall:.1%}** | "
        f"{worst} ({median_abs(per_board_all[worst]):.1%}) |"
    )
    lines += [
        "",
        "| held-out board | rows | median abs error | worst row |",
        "|---|---:|---:|---|",
    ]
    for board, errors in sorted(per_board_all.items(), key=lambda kv: -median_abs(kv[1])):
        worst_row = max((p for p in counted if p.row.device == board), key=lambda p: abs(p.error))
        lines.append(
            f"| {board} | {len(errors)} | {median_abs(errors):.1%} | {worst_row.row.stack} "
            f"{worst_row.row.benchmark} {worst_row.error:+.1%} |"
        )
    stats = {"overall": overall, "rows": len(counted), "all_rows": len(preds)}
    stats.update({s: median_abs([p.error for p in ps]) for s, ps in by_stack.items()})
    return "\n".join(lines), stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write stack_rates.yaml")
    parser.add_argument("--out", type=Path, default=None, help="also write the tables here")
    args = parser.parse_args(argv)
    rows = list(fit_rows())
    feats = benchmark_features()
    model = fit(rows, feats)
    if args.write:
        doc = rates_document(model.cycles, model.core_factor, OVERHEAD_CYCLES, rows)
        header = (
            "# Written by bench/calibration.py --write: the inference-stack model fitted to the\n"
            "# published MLPerf Tiny rows (tinylarge.hardware.stack_fit; docs/devices.md).\n"
            "# cycles_per_mac: on a Cortex-M4F; core_factor multiplies them per core class;\n"
            "# power_w: median power of the published energy runs per device and stack.\n"
        )
        RATES_PATH.write_text(header + yaml.safe_dump(doc, sort_keys=False), "utf-8")
    fitted = predict_rows(model, rows, feats)
    power = _power(rows)
    lobo = leave_one_board_out(rows, feats)
    lobo_md, stats = lobo_table(lobo)
    within = sum(abs(p.error) <= 0.15 for p in fitted)
    energy_errors = [
        p.predicted_s * power[(p.row.device, p.row.stack)] / p.row.energy_j - 1
        for p in fitted
        if p.row.energy_j is not None and (p.row.device, p.row.stack) in power
    ]
    cores = ", ".join(f"{c} {k:.3f}" for c, k in model.core_factor.items())
    text = "\n\n".join(
        [
            "### Fit",
            f"{len(rows)} published rows ({len({r.device for r in rows})} devices, "
            f"{len({r.stack for r in rows})} stacks), ridge {RIDGE}, "
            f"{OVERHEAD_CYCLES:g} cycles per operator (fixed). Core factors: {cores}.",
            "Latency error on the fitted rows: median "
            f"{median_abs([p.error for p in fitted]):.1%}, "
            f"worst {max(abs(p.error) for p in fitted):.1%}; {within} of {len(fitted)} rows "
            f"within 15%. Energy (fitted power x predicted latency), {len(energy_errors)} rows: "
            f"median {median_abs(energy_errors):.1%}, worst {max(map(abs, energy_errors)):.1%}.",
            "Per device, with each row's stack:",
            device_table(fitted),
            "### Leave one board out",
            f"Rows whose stack was published on at least {MIN_OTHER_BOARDS} other boards "
            f"({stats['rows']} of {stats['all_rows']} predictable rows; a board that is the "
            "only one of its core class or stack family cannot be predicted without itself).",
            lobo_md,
            "### Every row (in-sample)",
            row_table(fitted, power),
        ]
    )
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
