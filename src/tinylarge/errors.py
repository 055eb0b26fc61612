"""Errors a user can cause and fix.

Every :class:`TinylargeError` is reported by the command line as one line on
stderr with exit code 2 and never as a traceback. Raise it (or a subclass) for
bad input: an unknown name, a field of the wrong type, a missing data file, a
model that cannot fit. Programming errors stay ordinary exceptions.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Exit code of the command line for any user error.
USER_ERROR_EXIT_CODE = 2


class TinylargeError(ValueError):
    """A user error: the message is one actionable line."""


class UnknownNameError(TinylargeError, KeyError):
    """A name that is not in a registry; the message lists the registered names."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.known = sorted(known)
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(self.known)}")

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class DataFileMissingError(TinylargeError, FileNotFoundError):
    """A dataset file that is not where it is expected."""
