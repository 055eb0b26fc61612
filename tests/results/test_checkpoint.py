"""Checkpoints that cannot run code: state trees round-trip; pickles are never loaded.

A checkpoint is an ``.npz`` of arrays plus the rest of the state as JSON
(:mod:`tinylarge.results.checkpoint`), read with ``allow_pickle=False``. The
round trip is checked with Hypothesis over the trees a scheme's ``state()``
may hold; the planted-pickle tests put a pickle whose unpickling would create a
marker file where a checkpoint is looked for, and resume the run from the
command line: it must stop with one line, exit code 2, and never create the
marker.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tests.conftest import small_task

from tinylarge.cli.app import main
from tinylarge.errors import TinylargeError
from tinylarge.results import checkpoint
from tinylarge.results.checkpoint import STATE_KEY
from tinylarge.results.rundir import RunDir

# -- round trip ---------------------------------------------------------------------------

DTYPES = [np.float32, np.float64, np.float16, np.int8, np.uint8, np.int32, np.int64, np.bool_]
arrays = st.sampled_from(DTYPES).flatmap(
    lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=3, max_side=4))
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)  # NaN, +-inf and -0.0 included
    | st.text(max_size=8)
)
keys = (
    st.text(max_size=6)
    | st.integers(-(2**40), 2**40)
    | st.tuples(st.integers(0, 9), st.text(max_size=3))
)
trees = st.recursive(
    scalars | arrays,
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=3).map(tuple)
        | st.dictionaries(keys, children, max_size=4)
    ),
    max_leaves=20,
)


def same(a: Any, b: Any) -> bool:
    """Equal as state trees: same types, NaN equal to NaN, arrays equal in dtype, shape, values."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return (
            a.dtype == b.dtype
            and a.shape == b.shape
            and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
        )
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return (
            list(a) == list(b)
            and all(type(k) is type(k2) for k, k2 in zip(a, b, strict=True))
            and all(same(a[k], b[k]) for k in a)
        )
    return bool(a == b)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("checkpoints")


@settings(max_examples=150, deadline=None)
@given(tree=trees)
def test_state_trees_round_trip(scratch: Path, tree: Any) -> None:
    state = {"round": 3, "scheme": tree}
    data = checkpoint.to_bytes(state)
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:  # readable without pickles
        assert STATE_KEY in npz.files
    path = scratch / "checkpoint.npz"
    path.write_bytes(data)
    assert same(checkpoint.load(path), state)


def test_tensors_sets_and_optimizer_states_round_trip(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.ones(4, 3)).sum().backward()
    opt.step()
    state = {
        "weights": [p.detach().clone() for p in model.parameters()],
        "optimizer": opt.state_dict(),
        "seen": {3, 1, 2},
        "scalar": np.float32(0.5),
        (1, "a"): {0: -math.inf},
    }
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(checkpoint.to_bytes(state))
    back = checkpoint.load(path)
    assert back["seen"] == {1, 2, 3}
    assert same(back["weights"], state["weights"])
    assert back[(1, "a")] == {0: -math.inf}
    assert back["scalar"] == np.float32(0.5)
    restored = torch.optim.Adam(model.parameters(), lr=0.1)
    restored.load_state_dict(back["optimizer"])  # what a scheme does on resume
    for group in restored.state_dict()["state"].values():
        assert torch.is_tensor(group["exp_avg"])
    assert restored.state_dict()["param_groups"] == opt.state_dict()["param_groups"]


@pytest.mark.parametrize(
    "bad",
    [
        {"x": np.array([object()], dtype=object)},
        {"x": object()},
        {"x": Path("somewhere")},
    ],
)
def test_what_json_and_npz_cannot_hold_is_refused_when_saving(bad: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match="cannot be stored"):
        checkpoint.to_bytes(bad)


# -- files that are not checkpoints -------------------------------------------------------


class Planted:
    """Unpickling this creates ``marker``: what an attacker's code could do instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def malicious_pickle(marker: Path) -> bytes:
    payload = pickle.dumps({"round": 0, "scheme": Planted(marker)})
    return payload


def test_the_planted_payload_is_live(tmp_path: Path) -> None:
    # the control: unpickling the payload does run code (so the tests below mean something)
    marker = tmp_path / "marker"
    pickle.loads(malicious_pickle(marker))
    assert marker.exists()


def _npz_with_object_array(marker: Path) -> bytes:
    buf = io.BytesIO()
    blob = np.frombuffer(json.dumps({"__array__": "a0"}).encode(), dtype=np.uint8)
    np.savez(buf, **{STATE_KEY: blob, "a0": np.array([Planted(marker)], dtype=object)})
    return buf.getvalue()


def _crafted(tree: Any, **arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    blob = np.frombuffer(json.dumps(tree).encode(), dtype=np.uint8)
    np.savez(buf, **{STATE_KEY: blob}, **arrays)
    return buf.getvalue()


def _deep(depth: int) -> bytes:
    buf = io.BytesIO()
    blob = np.frombuffer(("[" * depth + "]" * depth).encode(), dtype=np.uint8)
    np.savez(buf, **{STATE_KEY: blob})
    return buf.getvalue()


@pytest.mark.parametrize(
    "make",
    [
        malicious_pickle,
        _npz_with_object_array,
        lambda marker: b"PK\x03\x04 truncated zip",
        lambda marker: b"",
        lambda marker: _crafted({"__array__": "a7"}),  # names an array that is not there
        lambda marker: _crafted({"__float__": "__import__('os')"}),
        lambda marker: _crafted({"__dict__": 5}),
        lambda marker: _crafted({"__what__": 1}),
        lambda marker: _crafted([1], **{"a0": np.zeros(2)}),  # a state, but not a dict
        lambda marker: _deep(100_000),  # JSON nested deeper than Python recurses
    ],
)
def test_load_refuses_anything_but_a_checkpoint(tmp_path: Path, make: Any) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(make(marker))
    with pytest.raises(TinylargeError) as info:
        RunDir(tmp_path).load_checkpoint()
    assert "\n" not in str(info.value)
    assert not marker.exists()


# -- resuming a run directory someone sent you ---------------------------------------------


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A fedavg run stopped after its last checkpoint (no summary.json), and its config."""
    root = tmp_path_factory.mktemp("sent")
    cfg = root / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(small_task(training={"rounds": 2})))
    run = root / "run"
    assert main(["run", str(cfg), "--out", str(run), "--quiet", "--no-report"]) == 0
    (run / "summary.json").unlink()
    assert (run / "checkpoint.npz").is_file()
    return cfg, run


@pytest.mark.parametrize(
    ("name", "make", "fragment"),
    [
        ("checkpoint.pkl", malicious_pickle, "pickles are never loaded"),
        ("checkpoint.npz", malicious_pickle, "not a tinylarge checkpoint"),
        ("checkpoint.npz", _npz_with_object_array, "not a tinylarge checkpoint"),
    ],
)
def test_resume_refuses_a_planted_pickle(
    stopped_run: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    make: Any,
    fragment: str,
) -> None:
    cfg, original = stopped_run
    run = tmp_path / "run"
    shutil.copytree(original, run)
    (run / "checkpoint.npz").unlink()
    marker = tmp_path / "marker"
    (run / name).write_bytes(make(marker))
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    capsys.readouterr()
    assert main(["run", str(cfg), "--out", str(run), "--resume", "--quiet", "--no-report"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert fragment in err
    assert not marker.exists()  # nothing was executed
    assert not (run / "summary.json").exists()  # nothing was accepted
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # nor rewritten


def test_the_untouched_run_resumes(
    stopped_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the control: the same directory with its own checkpoint completes
    cfg, original = stopped_run
    run = tmp_path / "run"
    shutil.copytree(original, run)
    assert main(["run", str(cfg), "--out", str(run), "--resume", "--quiet", "--no-report"]) == 0
    assert json.loads((run / "summary.json").read_text())["rounds"] == 2
