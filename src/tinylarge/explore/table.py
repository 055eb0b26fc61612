"""A sweep's results as one table: every summary key of every run, with its grid coordinates.

A run's summary.json is flattened (nested mappings into dotted columns such as
``per_profile.stm32h743.radio_j`` and ``fits.nrf52840``; lists such as
``round_latency_s`` as JSON text), one row per run (``runs.csv``). The cell table
(``table.csv``, and ``table.parquet`` when pyarrow is installed) has one row per cell:
numeric columns are the mean over the cell's seeds with the sample standard deviation in
``<column>_std`` (empty with a single seed: no spread was measured), other columns the
common value or the distinct values joined by ``|``.

>>> flatten({"a": 1, "per": {"x": {"j": 0.5}}, "lat": [1.0, 2.0]})
{'a': 1, 'per.x.j': 0.5, 'lat': '[1.0, 2.0]'}
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tinylarge.results.rundir import _parse as parse_cell

#: Columns every table row starts with besides the grid keys.
CELL = "cell"
SEED = "seed"
SEEDS = "n_seeds"
#: A column that only describes how the run executed, not what it computed.
WALL_CLOCK_COLUMNS = ("wall_time_s", "backend")


def flatten(summary: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys, lists as JSON text, scalars as they are."""
    out: dict[str, Any] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            out[name] = json.dumps(value)
        else:
            out[name] = value
    return out


def _numeric(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def aggregate(rows: Sequence[Mapping[str, Any]], *, keys: Sequence[str]) -> list[dict[str, Any]]:
    """One row per cell (rows sharing ``cell``), in first-seen order: ``keys`` (the grid
    coordinates) and ``cell`` as they are, ``n_seeds``, then per column the mean and
    ``<column>_std`` where every seed gave a number, else the value(s)."""
    groups: dict[Any, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row[CELL], []).append(row)
    columns = _columns(rows)
    out = []
    for cell, runs in groups.items():
        agg: dict[str, Any] = {k: runs[0][k] for k in keys}
        agg[CELL] = cell
        agg[SEEDS] = len(runs)
        for col in columns:
            if col in keys or col in (CELL, SEED):
                continue
            values = [r.get(col) for r in runs]
            if all(_numeric(v) for v in values):
                nums = [float(v) for v in values if v is not None]
                mean = math.fsum(nums) / len(nums)
                agg[col] = (
                    int(values[0]) if len(set(nums)) == 1 and isinstance(values[0], int) else mean
                )
                agg[f"{col}_std"] = statistics.stdev(nums) if len(nums) > 1 else None
            else:
                distinct = list(dict.fromkeys(values))
                agg[col] = distinct[0] if len(distinct) == 1 else "|".join(map(str, distinct))
        out.append(agg)
    return out


def _columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every column of ``rows``, in first-seen order."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _parse(v: str) -> Any:
    """A cell of :func:`write_csv`: a run directory's CSV cell, or a boolean."""
    if v in ("true", "false"):
        return v == "true"
    return parse_cell(v)


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """``rows`` as CSV with every column any row has (empty where a row has none); floats
    at full precision, so reading it back gives the same numbers."""
    columns = _columns(rows)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_text(row.get(c)) for c in columns])
    tmp.replace(path)


def read_csv(path: Path) -> list[dict[str, Any]]:
    """A table written by :func:`write_csv`, with numbers, booleans and empties parsed."""
    with path.open(newline="") as fh:
        return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def write_parquet(path: Path, rows: Sequence[Mapping[str, Any]]) -> str | None:
    """``rows`` as Parquet; ``None`` when written, else why not (pyarrow is missing)."""
    try:
        import pyarrow as pa  # type: ignore[import-not-found,unused-ignore]
        import pyarrow.parquet as pq  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return (
            f"{path.name} not written: Parquet needs pyarrow (pip install 'tinylarge[parquet]'); "
            "the CSV holds the same table"
        )
    columns = _columns(rows)
    data = {c: _arrow_column([r.get(c) for r in rows]) for c in columns}
    pq.write_table(pa.table(data), path)
    return None


def _arrow_column(values: list[Any]) -> list[Any]:
    """A column Arrow can type: text if any value is text, floats if ints and floats mix."""
    present = [v for v in values if v is not None]
    if any(isinstance(v, str) for v in present):
        return [None if v is None else _text(v) for v in values]
    if any(isinstance(v, float) for v in present):
        return [None if v is None else float(v) for v in values]
    return values
