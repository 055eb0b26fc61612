"""Every backend against the sequential reference: same seed, same summary, for every scheme.

The process backend must equal sequential bit for bit (up to the float tolerance of
:func:`close`); Ray likewise. The batched backend's fast path is checked against the
per-client loop in tests/sim/test_batched.py.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.conftest import reproducible
from tests.schemes.test_contract import SKIP_BACKEND_TABLE, scheme_task

from tinylarge.config import parse_config
from tinylarge.errors import TinylargeError
from tinylarge.schemes import SCHEMES
from tinylarge.sim import backends
from tinylarge.sim.engine import run_experiment

HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="the ray extra is installed by `make test`")
TABLE = [s for s in SCHEMES.names() if s not in SKIP_BACKEND_TABLE]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """One local Ray instance for the module; backends join it instead of starting their own."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


_SEQUENTIAL: dict[str, dict[str, Any]] = {}


def sequential(scheme: str, tmp_path: Path) -> dict[str, Any]:
    """The reference summary of ``scheme``'s table task (run once per test session)."""
    if scheme not in _SEQUENTIAL:
        cfg = parse_config(table_task(scheme))
        _SEQUENTIAL[scheme] = run_experiment(
            cfg, out=tmp_path / "seq", backend="sequential", progress=False
        )
    return _SEQUENTIAL[scheme]


def table_task(scheme: str) -> dict[str, Any]:
    task: dict[str, Any] = scheme_task(
        scheme, training={"rounds": 2}, engine={"dropout_prob": 0.2, "workers": 2}
    )
    return task


def close(a: Any, b: Any) -> bool:
    """Equal up to float tolerance, recursively."""
    if isinstance(a, float) or isinstance(b, float):
        return a == pytest.approx(b, rel=1e-6, abs=1e-9)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@pytest.mark.parametrize("scheme", TABLE)
def test_process_matches_sequential(scheme: str, tmp_path: Path) -> None:
    cfg = parse_config(table_task(scheme))
    seq = sequential(scheme, tmp_path)
    on_workers = run_experiment(cfg, out=tmp_path / "process", backend="process", progress=False)
    assert on_workers["backend"] == "process"
    assert close(reproducible(on_workers), reproducible(seq))


@needs_ray
@pytest.mark.parametrize("scheme", TABLE)
def test_ray_matches_sequential(scheme: str, tmp_path: Path, ray_cluster: None) -> None:
    cfg = parse_config(table_task(scheme))
    seq = sequential(scheme, tmp_path)
    on_ray = run_experiment(cfg, out=tmp_path / "ray", backend="ray", progress=False)
    assert on_ray["backend"] == "ray"
    assert close(reproducible(on_ray), reproducible(seq))


def test_process_backend_maps_in_order_and_shares_large_arrays() -> None:
    b = backends.make_backend("process", np.arange(5.0), np.arange(5), workers=2)
    try:
        assert b.map(_scaled_sum, list(range(1, 12))) == [10.0 * k for k in range(1, 12)]
        big = b.map(_big_array, [3, 4])  # through a shared slab file, not the pipe
        assert [a.shape for a in big] == [(3, 1000), (4, 1000)]
        assert big[1][2, 7] == 4 * 10.0
        big[0][0, 0] = -1.0  # copy-on-write views: writable, private
        assert big[0][0, 0] == -1.0
    finally:
        b.close()


def test_process_worker_errors_are_one_line() -> None:
    b = backends.make_backend("process", np.arange(5.0), np.arange(5), workers=1)
    try:
        with pytest.raises(backends.WorkerError) as err:
            b.map(_fails, [1])
        assert str(err.value) == (
            "backend 'process': _fails failed in a worker: ZeroDivisionError: division by zero"
        )
        with pytest.raises(TinylargeError, match=r"^a user error$"):
            b.map(_user_error, [1])  # a user's error keeps its type and its one line
    finally:
        b.close()


def _big_array(task: int, x: Any, y: Any) -> np.ndarray:
    return np.full((task, 1000), float(task * x.sum()))


def _fails(task: int, x: Any, y: Any) -> float:
    return task / 0


def _user_error(task: int, x: Any, y: Any) -> float:
    raise TinylargeError("a user error")


@needs_ray
def test_ray_backend_maps_in_order(ray_cluster: None) -> None:
    import ray

    b = backends.make_backend("ray", np.arange(5.0), np.arange(5))
    try:
        assert b.map(_scaled_sum, [1, 2, 3]) == [10.0, 20.0, 30.0]
    finally:
        b.close()
    assert ray.is_initialized()  # joined the running instance, did not shut it down


def _scaled_sum(task: int, x: Any, y: Any) -> float:
    return float(task * x.sum())


def test_missing_ray_is_a_user_error_with_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_ray(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "ray":
            raise ImportError("no ray")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(TinylargeError, match=r"pip install 'tinylarge\[ray\]'"):
        backends.RayBackend(None, None)  # type: ignore[arg-type]
