"""Backends run clients' work: in-process, on worker processes, batched, or on Ray.

Algorithms never know which backend runs them. A backend maps a module-level
function ``fn(task, x_train, y_train) -> result`` over a list of tasks and
returns the results in the same order; ``fit_many`` is that map over
:func:`~tinylarge.sim.training.fit`. Schemes with other client-side work (split
learning, distillation, ...) pass their own module-level function. The
sequential backend is the reference; every other backend must give the same
results, so a task function must be deterministic given its task (seed it from
the task).

- ``sequential``: one task after another in this process (the reference).
- ``process``: persistent worker processes on this machine (one per core by
  default, ``engine.workers``), started once per run by forkserver (spawn where
  there is none). The training set is written once to a memory-mapped file that
  every worker maps, so a task carries only its indices and weights; tasks go
  to workers in contiguous chunks, so one chunk's tasks share one pickled copy
  of the global weights. Same numbers as ``sequential``, bit for bit.
- ``batched``: the process pool again, but ``fit_many`` trains clients of one
  architecture together (:mod:`tinylarge.sim.batched`: stacked parameters,
  batched matrix products and grouped convolutions) where they can be; other
  work runs task by task. With one worker it runs in this process. Same numbers
  as ``sequential`` up to float rounding.
- ``ray``: Ray tasks, locally or on a cluster.
"""

from __future__ import annotations

import io
import itertools
import math
import mmap
import multiprocessing as mp
import os
import pickle
import shutil
import tempfile
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from tinylarge.errors import TinylargeError
from tinylarge.registry import Registry
from tinylarge.sim.training import FitResult, FitTask, fit, seeded

T = TypeVar("T")
R = TypeVar("R")
TaskFn = Callable[[T, np.ndarray, np.ndarray], R]


class Backend(Protocol):
    name: str

    def map(self, fn: TaskFn[T, R], tasks: Sequence[T]) -> list[R]: ...

    def close(self) -> None: ...


def fit_many(backend: Backend, tasks: Sequence[FitTask]) -> list[FitResult]:
    """Local training of several clients on ``backend``: task by task, or on a backend that
    batches (``batched``), in training groups of :func:`tinylarge.sim.batched.plan` spread
    over its workers."""
    if not getattr(backend, "batched", False):
        return backend.map(fit, tasks)
    from tinylarge.sim.batched import fit_group, plan

    workers = int(getattr(backend, "workers", 1))
    groups = plan(tasks, max_group=max(1, min(256, math.ceil(len(tasks) / workers))))
    done = backend.map(fit_group, [[tasks[i] for i in g] for g in groups])
    out: list[FitResult | None] = [None] * len(tasks)
    for positions, results in zip(groups, done, strict=True):
        for i, r in zip(positions, results, strict=True):
            out[i] = r
    assert all(r is not None for r in out)
    return out  # type: ignore[return-value]


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


class WorkerError(RuntimeError):
    """A task failed in a worker process (a programming error, not the user's)."""


#: A worker's view of the training set (set by :func:`_attach` in each worker process).
_WORKER_DATA: tuple[np.ndarray, np.ndarray] | None = None


def _attach(folder: str) -> None:
    """Worker start-up: one intra-op thread, and the training set memory-mapped, not copied."""
    global _WORKER_DATA
    seeded(0)  # one thread; the seed is each task's own
    d = Path(folder)
    _WORKER_DATA = (np.load(d / "x.npy", mmap_mode="r"), np.load(d / "y.npy", mmap_mode="r"))


def _run_chunk(fn: TaskFn[T, R], chunk: Sequence[T], folder: str) -> tuple[bytes, str | None]:
    assert _WORKER_DATA is not None, "worker started without its data"
    x, y = _WORKER_DATA
    return _export([fn(t, x, y) for t in chunk], folder)


#: Arrays of at least this many bytes come back from a worker through a shared file.
_SLAB_MIN_BYTES = 1024
_ALIGN = 64


class _SlabPickler(pickle.Pickler):
    """Pickles results, leaving large arrays out (as references into a slab file)."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.arrays: list[np.ndarray] = []
        self.size = 0

    def persistent_id(self, obj: Any) -> Any:
        if type(obj) is np.ndarray and obj.nbytes >= _SLAB_MIN_BYTES and not obj.dtype.hasobject:
            at = self.size
            self.arrays.append(obj)
            self.size += -(-obj.nbytes // _ALIGN) * _ALIGN
            return (at, obj.dtype.str, obj.shape)
        return None


def _export(results: Any, folder: str) -> tuple[bytes, str | None]:
    """A worker's results as pickle bytes and, for their large arrays, a file in ``folder``
    that the driver maps instead of receiving the arrays through a pipe."""
    buf = io.BytesIO()
    pickler = _SlabPickler(buf)
    pickler.dump(results)
    if not pickler.arrays:
        return buf.getvalue(), None
    fd, path = tempfile.mkstemp(prefix="slab-", dir=folder)
    with os.fdopen(fd, "wb") as f:
        for a in pickler.arrays:
            data = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
            f.write(data.data)
            f.write(b"\0" * (-a.nbytes % _ALIGN))
    return buf.getvalue(), path


class _SlabUnpickler(pickle.Unpickler):
    def __init__(self, payload: bytes, slab: mmap.mmap | None) -> None:
        super().__init__(io.BytesIO(payload))
        self.slab = slab

    def persistent_load(self, pid: Any) -> np.ndarray:
        at, dtype, shape = pid
        dt = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        return np.frombuffer(self.slab, dtype=dt, count=count, offset=at).reshape(shape)  # type: ignore[arg-type]


def _import(payload: bytes, path: str | None) -> Any:
    """The results of :func:`_export`: large arrays are copy-on-write views of the mapped
    slab file (writable; a write stays private), which is unlinked at once."""
    slab = None
    if path is not None:
        with open(path, "rb") as f:
            slab = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        os.unlink(path)
    return _SlabUnpickler(payload, slab).load()


def _chunks(items: Sequence[T], count: int) -> list[Sequence[T]]:
    """``items`` cut into ``count`` contiguous chunks of near-equal length (none empty)."""
    count = max(1, min(count, len(items)))
    bounds = [round(i * len(items) / count) for i in range(count + 1)]
    return [items[a:b] for a, b in itertools.pairwise(bounds)]


class ProcessBackend:
    """Trains clients on persistent worker processes of this machine (see the module docstring).

    ``workers``: processes (default one per core). Workers start on the first ``map``
    and live until :meth:`close`. A task that fails in a worker raises here: a user error
    as itself, anything else as a one-line :class:`WorkerError` whose cause holds the
    worker's traceback; a worker that dies (killed, out of memory) is a one-line user
    error naming what to try.
    """

    name = "process"
    batched = False
    #: Chunks per worker and map: small enough to balance uneven tasks, few enough that a
    #: chunk's pickled weights and the round trip stay small beside its work.
    chunks_per_worker = 4

    def __init__(
        self, x: np.ndarray, y: np.ndarray, *, workers: int | None = None, **_: Any
    ) -> None:
        self.workers = int(workers or os.cpu_count() or 1)
        self._x, self._y = x, y
        self._folder: str | None = None
        self._pool: ProcessPoolExecutor | None = None

    def _start(self) -> ProcessPoolExecutor:
        if self._pool is None:
            base = "/dev/shm" if os.path.isdir("/dev/shm") else None
            self._folder = tempfile.mkdtemp(prefix="tinylarge-data-", dir=base)
            # removed by close(), or when the backend is collected or the interpreter exits
            weakref.finalize(self, shutil.rmtree, self._folder, True)
            np.save(Path(self._folder) / "x.npy", np.ascontiguousarray(self._x))
            np.save(Path(self._folder) / "y.npy", np.ascontiguousarray(self._y))
            methods = mp.get_all_start_methods()
            context = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
            if "forkserver" in methods:  # import torch and the trainers once, in the server
                context.set_forkserver_preload(["tinylarge.sim.batched"])
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=context,
                initializer=_attach,
                initargs=(self._folder,),
            )
        return self._pool

    def map(self, fn: TaskFn[T, R], tasks: Sequence[T]) -> list[R]:
        if not tasks:
            return []
        pool = self._start()
        chunks = _chunks(tasks, self.workers * self.chunks_per_worker)
        assert self._folder is not None
        futures: list[Future[tuple[bytes, str | None]]] = [
            pool.submit(_run_chunk, fn, c, self._folder) for c in chunks
        ]
        out: list[R] = []
        try:
            for f in futures:
                out.extend(_import(*f.result()))
        except BrokenProcessPool:
            self.close()
            raise TinylargeError(
                f"backend {self.name!r}: a worker process died (killed, or out of memory?); "
                "try fewer workers (engine.workers) or --backend sequential"
            ) from None
        except TinylargeError:
            raise
        except Exception as exc:
            for f in futures:
                f.cancel()
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise WorkerError(
                f"backend {self.name!r}: {getattr(fn, '__name__', fn)} failed in a worker: "
                f"{type(exc).__name__}: {first}"
            ) from exc
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


class BatchedBackend(ProcessBackend):
    """The process backend whose ``fit_many`` trains same-architecture clients together
    (:mod:`tinylarge.sim.batched`); with one worker, in this process."""

    name = "batched"
    batched = True

    def map(self, fn: TaskFn[T, R], tasks: Sequence[T]) -> list[R]:
        if self.workers == 1:
            return [fn(t, self._x, self._y) for t in tasks]
        return super().map(fn, tasks)


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
BACKENDS.add("process", ProcessBackend)
BACKENDS.add("batched", BatchedBackend)
BACKENDS.add("ray", RayBackend)


def make_backend(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    *,
    address: str | None = None,
    workers: int | None = None,
) -> Backend:
    """Backend ``name`` over the training set ``(x, y)`` (``address``: Ray's cluster;
    ``workers``: processes of the process and batched backends, default one per core)."""
    factory = BACKENDS[name]
    kwargs: dict[str, Any] = {"address": address} if name == "ray" else {"workers": workers}
    backend: Backend = factory(x, y, **kwargs)
    return backend
