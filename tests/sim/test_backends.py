"""Ray against the sequential reference: same seed, same summary, for every scheme."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import reproducible
from tests.schemes.test_contract import SKIP_BACKEND_TABLE, scheme_task

from tinylarge.config import parse_config
from tinylarge.errors import TinylargeError
from tinylarge.schemes import SCHEMES
from tinylarge.sim import backends
from tinylarge.sim.engine import run_experiment

ray = pytest.importorskip("ray", reason="the ray extra is installed by `make test`")


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """One local Ray instance for the module; backends join it instead of starting their own."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def close(a: Any, b: Any) -> bool:
    """Equal up to float tolerance, recursively."""
    if isinstance(a, float) or isinstance(b, float):
        return a == pytest.approx(b, rel=1e-6, abs=1e-9)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@pytest.mark.parametrize("scheme", [s for s in SCHEMES.names() if s not in SKIP_BACKEND_TABLE])
def test_ray_matches_sequential(scheme: str, tmp_path: Path, ray_cluster: None) -> None:
    cfg = parse_config(scheme_task(scheme, training={"rounds": 2}, engine={"dropout_prob": 0.2}))
    seq = run_experiment(cfg, out=tmp_path / "seq", backend="sequential", progress=False)
    on_ray = run_experiment(cfg, out=tmp_path / "ray", backend="ray", progress=False)
    assert on_ray["backend"] == "ray"
    assert close(reproducible(on_ray), reproducible(seq))


def test_ray_backend_maps_in_order(ray_cluster: None) -> None:
    import numpy as np

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
