"""Input checks shared by the network modules; each raises a one-line TinylargeError."""

from __future__ import annotations

import math

from tinylarge.errors import TinylargeError


def finite(name: str, value: float) -> float:
    """Return ``value`` as float if it is a finite number, else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TinylargeError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise TinylargeError(f"{name} must be finite, got {value!r}")
    return float(value)


def positive(name: str, value: float, unit: str = "") -> float:
    """Return ``value`` if it is finite and > 0, else raise."""
    v = finite(name, value)
    if v <= 0:
        raise TinylargeError(f"{name}={value:g}{unit} must be > 0")
    return v


def non_negative(name: str, value: float, unit: str = "") -> float:
    """Return ``value`` if it is finite and >= 0, else raise."""
    v = finite(name, value)
    if v < 0:
        raise TinylargeError(f"{name}={value:g}{unit} must be >= 0")
    return v


def in_range(name: str, value: float, low: float, high: float, *, unit: str, source: str) -> float:
    """Return ``value`` if ``low <= value <= high``, else raise naming the allowed range."""
    v = finite(name, value)
    if not low <= v <= high:
        raise TinylargeError(
            f"{name}={value:g}{unit} is outside {low:g}-{high:g}{unit} allowed by {source}"
        )
    return v


def fraction(name: str, value: float) -> float:
    """Return ``value`` if ``0 < value <= 1``, else raise."""
    v = finite(name, value)
    if not 0.0 < v <= 1.0:
        raise TinylargeError(f"{name}={value:g} must be in (0, 1]")
    return v


def byte_count(name: str, value: int) -> int:
    """Return ``value`` if it is an int >= 0, else raise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TinylargeError(f"{name} must be an integer >= 0, got {value!r}")
    return value
