"""The small base every integration scheme subclasses.

A scheme is a protocol that moves tensors along links and runs compute on
nodes. It never bills costs itself and never knows the backend: it asks the
:class:`~tinylarge.sim.context.Context` to train, transfer and evaluate. The
round loop lives once, in :mod:`tinylarge.sim.engine`.

Subclasses set ``name`` (the registry key), ``Options`` (a frozen pydantic
model of the scheme's options, validated with the config) and implement
:meth:`setup` and :meth:`run_round`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

from tinylarge.registry import Registry

if TYPE_CHECKING:
    from tinylarge.sim.context import Context


class NoOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass
class RoundReport:
    """What a scheme reports after one round (costs come from the ledger)."""

    latency_s: float
    participants: int
    dropped: dict[int, str] = field(default_factory=dict)
    train_loss: float | None = None


class Scheme(ABC):
    """Base of all integration schemes."""

    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, ctx: Context, options: BaseModel) -> None:
        self.ctx = ctx
        self.options = options

    @abstractmethod
    def setup(self) -> None:
        """Build the initial models (deterministic from the run seed)."""

    @abstractmethod
    def run_round(self, rnd: int) -> RoundReport:
        """Run one round and return its report."""

    @abstractmethod
    def evaluate(self) -> dict[str, float | None]:
        """Test metrics: ``accuracy`` (device side), ``loss``, ``large_accuracy`` or None."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """Everything needed to resume after the last completed round."""

    @abstractmethod
    def load_state(self, state: dict[str, Any]) -> None: ...

    def summary_extras(self) -> dict[str, Any]:
        """Scheme-specific entries for summary.json."""
        return {}


S = TypeVar("S", bound=type[Scheme])
SCHEMES: Registry[type[Scheme]] = Registry("scheme")


def register_scheme(cls: S) -> S:
    """Class decorator: add a scheme to :data:`SCHEMES` under ``cls.name``."""
    SCHEMES.add(cls.name, cls)
    return cls
