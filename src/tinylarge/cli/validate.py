"""`tinylarge validate` (being written)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Add the `validate` command to the subparsers `sub`."""
    parser: argparse.ArgumentParser = sub.add_parser("validate", help="(being written)")
    parser.set_defaults(func=lambda args: 0)
