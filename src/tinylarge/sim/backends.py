"""Backends run clients' work: in-process or on Ray.

Algorithms never know which backend runs them. A backend maps a module-level
function ``fn(task, x_train, y_train) -> result`` over a list of tasks and
returns the results in the same order; ``fit_many`` is that map over
:func:`~tinylarge.sim.training.fit`. Schemes with other client-side work (split
learning, distillation, ...) pass their own module-level function. The
sequential backend is the reference; Ray must give the same results, so a task
function must be deterministic given its task (seed it from the task).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import numpy as np

from tinylarge.errors import TinylargeError
from tinylarge.registry import Registry
from tinylarge.sim.training import FitResult, FitTask, fit

T = TypeVar("T")
R = TypeVar("R")
TaskFn = Callable[[T, np.ndarray, np.ndarray], R]


class Backend(Protocol):
    name: str

    def map(self, fn: TaskFn[T, R], tasks: Sequence[T]) -> list[R]: ...

    def close(self) -> None: ...


def fit_many(backend: Backend, tasks: Sequence[FitTask]) -> list[FitResult]:
    """Local training of several clients on ``backend``."""
    return backend.map(fit, tasks)


BackendFactory = Callable[..., Backend]
BACKENDS: Registry[BackendFactory] = Registry("backend")


class SequentialBackend:
    """Trains clients one after another in this process (the reference)."""

    name = "sequential"

    def __init__(self, x: np.ndarray, y: np.ndarray, **_: Any) -> None:
        self._x, self._y = x, y

    def map(self, fn: TaskFn[T, R], tasks: Sequence[T]) -> list[R]:
        return [fn(t, self._x, self._y) for t in tasks]

    def close(self) -> None:
        pass


class RayBackend:
    """Trains clients as Ray tasks, locally or on a cluster.

    The training set is put in Ray's object store once per run; each task gets
    a reference. ``address=None`` starts a local Ray instance; ``"auto"`` or
    ``"ray://host:10001"`` joins a running cluster (``ray.init(address=...)``).
    """

    name = "ray"

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        address: str | None = None,
        num_cpus: int | None = None,
    ) -> None:
        try:
            import ray
        except ImportError:
            raise TinylargeError(
                "backend 'ray' needs Ray: pip install 'tinylarge[ray]' "
                "(or use --backend sequential)"
            ) from None
        self._ray = ray
        self._owns = not ray.is_initialized()
        if self._owns:
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "configure_logging": False,
            }
            if address:
                kwargs["address"] = address
            else:
                kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
            ray.init(**kwargs)
        self._x_ref = ray.put(x)
        self._y_ref = ray.put(y)
        self._remotes: dict[Any, Any] = {}

    def map(self, fn: TaskFn[T, R], tasks: Sequence[T]) -> list[R]:
        remote = self._remotes.get(fn)
        if remote is None:
            remote = self._remotes[fn] = self._ray.remote(num_cpus=1)(fn)
        futures = [remote.remote(t, self._x_ref, self._y_ref) for t in tasks]
        results: list[R] = self._ray.get(futures)
        return results

    def close(self) -> None:
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()


BACKENDS.add("sequential", SequentialBackend)
BACKENDS.add("ray", RayBackend)


def make_backend(name: str, x: np.ndarray, y: np.ndarray, *, address: str | None = None) -> Backend:
    factory = BACKENDS[name]
    backend: Backend = factory(x, y, address=address)
    return backend
