"""Shared output helpers: JSON for machines, rich tables for people."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from tinylarge.jsonutil import dumps

#: Tables are wide; when stdout is not a terminal (a pipe, a file) do not wrap at 80 columns.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def print_json(obj: Any) -> None:
    """Print ``obj`` as indented, strict JSON on stdout."""
    print(dumps(obj))


def print_table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None
) -> None:
    """Print a table for people; numbers right-aligned."""
    table = Table(title=title, show_lines=False)
    first = rows[0] if rows else []
    for i, col in enumerate(columns):
        numeric = i < len(first) and isinstance(first[i], (int, float))
        table.add_column(col, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(_fmt(v) for v in row))
    console.print(table)


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1e6 or abs(value) < 1e-3:
            return f"{value:.3g}"
        return f"{value:.4g}"
    return str(value)
