"""Strict JSON for files and stdout: no NaN or infinity, tuples as lists."""

from __future__ import annotations

import json
import math
from typing import Any


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as ``None`` and tuples as lists, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """Indented, strict JSON (parsable by any JSON reader)."""
    return json.dumps(json_safe(value), indent=2, allow_nan=False)
