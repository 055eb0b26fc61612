"""Choices of a command-line option, loaded when argparse first needs them.

The names a flag accepts (link presets, TR 38.901 scenarios, zoo models, device
tiers) live in registries whose modules import numpy or more. Building the
parser must not import them (``tinylarge --version`` and ``--help`` stay
light), so an option takes a :class:`LazyChoices`: argparse asks it for
membership when the flag is given and for the list when it prints help or an
"invalid choice" error, and only then are the names loaded. Give the option a
``metavar`` (argparse would list the choices in the usage line otherwise) and
write ``%(choices)s`` in its help to show them.

>>> tiers = LazyChoices(lambda: ["mcu", "sbc"])
>>> "mcu" in tiers, list(tiers)
(True, ['mcu', 'sbc'])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator


class LazyChoices:
    """The names ``load()`` returns, loaded once, on first use."""

    def __init__(self, load: Callable[[], Iterable[str]]) -> None:
        self._load: Callable[[], Iterable[str]] | None = load
        self._names: list[str] = []

    def _loaded(self) -> list[str]:
        if self._load is not None:
            self._names = list(self._load())
            self._load = None
        return self._names

    def __contains__(self, name: object) -> bool:
        return name in self._loaded()

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaded())

    def __len__(self) -> int:
        return len(self._loaded())
