"""The sweep table: flattening, seeds to mean and std, CSV and Parquet round trips."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from tinylarge.explore.table import aggregate, flatten, read_csv, write_csv, write_parquet

RUNS = [
    {"k": "a", "cell": "c1", "seed": 0, **flatten({"acc": 0.5, "rounds": 2, "ok": True,
     "per_profile": {"p": {"j": 1.0}}, "lat": [1.0], "name": "x"})},
    {"k": "a", "cell": "c1", "seed": 1, **flatten({"acc": 0.7, "rounds": 2, "ok": True,
     "per_profile": {"p": {"j": 3.0}}, "lat": [2.0], "name": "y"})},
    {"k": "b", "cell": "c2", "seed": 0, **flatten({"acc": None, "rounds": 2, "ok": False,
     "per_profile": {}, "lat": [], "name": "x"})},
]  # fmt: skip


def test_seeds_become_mean_and_sample_std() -> None:
    one, two = aggregate(RUNS, keys=["k"])
    assert (one["k"], one["cell"], one["n_seeds"]) == ("a", "c1", 2)
    assert one["acc"] == pytest.approx(0.6)
    assert one["acc_std"] == pytest.approx(statistics.stdev([0.5, 0.7]))
    assert (one["rounds"], one["rounds_std"]) == (2, 0.0)  # equal ints stay ints
    assert one["per_profile.p.j"] == 2.0
    assert one["ok"] is True
    assert one["lat"] == "[1.0]|[2.0]"  # not numbers: the distinct values
    assert one["name"] == "x|y"
    assert two["acc"] is None  # no number from any seed
    assert "acc_std" not in two  # no spread of nothing
    assert "seed" not in one


def test_csv_round_trip_keeps_numbers_booleans_and_empties(tmp_path: Path) -> None:
    rows = aggregate(RUNS, keys=["k"])
    write_csv(tmp_path / "t.csv", rows)
    back = read_csv(tmp_path / "t.csv")
    assert [r["acc"] for r in back] == [rows[0]["acc"], None]
    assert [r["ok"] for r in back] == [True, False]
    assert back[0]["acc_std"] == rows[0]["acc_std"]  # full precision
    assert back[1]["per_profile.p.j"] is None  # a column only the other cell has


def test_parquet_holds_the_same_table(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet", reason="the parquet extra is not installed")
    rows = aggregate(RUNS, keys=["k"])
    assert write_parquet(tmp_path / "t.parquet", rows) is None
    back = pq.read_table(tmp_path / "t.parquet").to_pylist()
    assert back[0]["acc"] == rows[0]["acc"]
    assert back[1]["per_profile.p.j"] is None
    assert back[0]["name"] == "x|y"
