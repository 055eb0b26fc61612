"""Option handling shared by the attacks: one-line errors naming the attack and the option."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, TypeVar

from tinylarge.errors import TinylargeError

A = TypeVar("A", bound="AttackOptions")


@dataclasses.dataclass
class AttackOptions:
    """Base of every attack: its dataclass fields are its options (``from_options`` checks them)."""

    #: The registered name, for error messages.
    NAME = "attack"

    @classmethod
    def option_names(cls) -> list[str]:
        return sorted(
            f.name for f in dataclasses.fields(cls) if f.init and f.metadata.get("option")
        )

    @classmethod
    def from_options(cls: type[A], options: Mapping[str, Any], **context: Any) -> A:
        """The attack built from its config ``options`` and the run's ``context`` (not options)."""
        known = cls.option_names()
        unknown = sorted(set(options) - set(known))
        if unknown:
            allowed = ", ".join(known) if known else "none"
            raise TinylargeError(
                f"attack {cls.NAME!r}: unknown option {unknown[0]!r}; known: {allowed}"
            )
        return cls(**dict(options), **context)

    def check(self, *, num_clients: int, num_byzantine: int) -> None:
        """Refuse settings that depend on the client counts (none by default)."""


def option(default: Any) -> Any:
    """A dataclass field that is a config option."""
    return dataclasses.field(default=default, metadata={"option": True})


def number(
    attack: str,
    key: str,
    value: object,
    *,
    low: float,
    low_open: bool = False,
    high: float | None = None,
) -> float:
    """``value`` as a finite float ``>= low`` (``> low`` if ``low_open``) and ``<= high``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TinylargeError(
            f"attack {attack!r}: option {key} must be a finite number, got {value!r}"
        )
    v = float(value)
    if (v <= low if low_open else v < low) or (high is not None and v > high):
        bound = f"{'>' if low_open else '>='} {low:g}" + (
            "" if high is None else f" and <= {high:g}"
        )
        raise TinylargeError(f"attack {attack!r}: option {key} must be {bound}, got {value!r}")
    return v


def integer(attack: str, key: str, value: object, *, low: int, high: int | None = None) -> int:
    """``value`` as an int ``>= low`` and ``< high``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TinylargeError(f"attack {attack!r}: option {key} must be an integer, got {value!r}")
    if value < low or (high is not None and value >= high):
        bound = f">= {low}" + ("" if high is None else f" and < {high}")
        raise TinylargeError(f"attack {attack!r}: option {key} must be {bound}, got {value!r}")
    return value
