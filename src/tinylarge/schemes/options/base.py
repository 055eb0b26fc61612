"""The base of every scheme's options and the registry of them, by scheme name."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel, ConfigDict

from tinylarge.registry import Registry

if TYPE_CHECKING:
    from tinylarge.config import ExperimentConfig


class SchemeOptions(BaseModel):
    """Base of every scheme's options: frozen, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def refuse(self, cfg: ExperimentConfig) -> list[str]:
        """Settings of ``cfg`` these options cannot honour: ``"field.path: why"``, one each."""
        return []


class NoOptions(SchemeOptions):
    """A scheme without options."""


#: The options model of every scheme, by scheme name.
OPTIONS: Registry[type[SchemeOptions]] = Registry("scheme")
C = TypeVar("C", bound=type[SchemeOptions])


def register_options(*names: str) -> Callable[[C], C]:
    """Class decorator: these are the options of the schemes ``names``."""

    def deco(cls: C) -> C:
        for name in names:
            OPTIONS.add(name, cls)
        return cls

    return deco


def set_fields(model: BaseModel, *names: str) -> list[str]:
    """Which of ``names`` the user set in ``model`` to something other than their defaults.

    A field spelled out at its default counts as unset: a run directory's config.yaml
    writes every default, and reading it back (``tinylarge export``, a resume) must not
    refuse what the user never set.
    """
    fields = type(model).model_fields
    return [
        n
        for n in names
        if n in model.model_fields_set
        and getattr(model, n) != fields[n].get_default(call_default_factory=True)
    ]
