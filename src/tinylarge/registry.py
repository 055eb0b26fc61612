"""A small name -> object registry with a ``register`` decorator.

Unknown-name errors list ``sorted(registry)``, so they never go stale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from tinylarge.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects (classes, factories, profiles).

    >>> schemes: Registry[int] = Registry("scheme")
    >>> schemes.add("fedavg", 1)
    >>> schemes["fedavg"]
    1
    >>> "fedprox" in schemes
    False
    """

    def __init__(self, kind: str, *, load: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        #: Called once, before the first lookup, to import the modules that register entries
        #: (so a registry of heavy objects costs nothing until it is used).
        self._load = load

    def _loaded(self) -> dict[str, T]:
        if self._load is not None:
            load, self._load = self._load, None
            load()
        return self._items

    def add(self, name: str, item: T) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def deco(item: T) -> T:
            self.add(name, item)
            return item

        return deco

    def __getitem__(self, name: str) -> T:
        items = self._loaded()
        try:
            return items[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, items) from None

    def __contains__(self, name: object) -> bool:
        return name in self._loaded()

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._loaded()))

    def __len__(self) -> int:
        return len(self._loaded())

    def names(self) -> list[str]:
        return sorted(self._loaded())

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._loaded().items())
