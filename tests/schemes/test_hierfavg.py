"""HierFAVG: devices -> edge servers -> cloud.

The equivalence first: with one edge and one edge aggregation per cloud round,
HierFAVG is FedAvg, bit for bit (Liu et al. 2020 state it; the edge's average of one
edge is itself). Then the hierarchy on the clock: kappa2 edge rounds per cloud round,
edges in their own cells, backhaul transfers and edge work billed to the edges; and
``tinylarge validate`` on the topology's edges.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from tests.conftest import small_task

from tinylarge.cli.app import main
from tinylarge.config import parse_config
from tinylarge.models.weights import nbytes
from tinylarge.results.rundir import RunDir
from tinylarge.sim.engine import run_experiment
from tinylarge.sim.ledger import Ledger

GROUPS = [
    {"profile": "rpi4", "count": 2, "link": "wifi6", "name": "pis"},
    {"profile": "stm32h743", "count": 2, "link": "ble-2m", "name": "boards"},
]


def task(scheme: str, options: dict[str, Any] | None = None, **topology: Any) -> dict[str, Any]:
    cfg = small_task(
        scheme={"name": scheme, "options": options or {}},
        training={"rounds": 3, "fraction": 0.75},
        engine={"dropout_prob": 0.2},
    )
    cfg["topology"] = {**cfg["topology"], "devices": GROUPS, **topology}
    return cfg


def weights(out: Path) -> list[np.ndarray]:
    return list(RunDir(out).load_checkpoint()["scheme"]["weights"])


def test_hierfavg_with_one_edge_and_kappa2_1_is_fedavg(tmp_path: Path) -> None:
    one_edge = [{"name": "e", "serves": ["pis", "boards"]}]
    sync = run_experiment(parse_config(task("fedavg")), out=tmp_path / "f", progress=False)
    hier = run_experiment(
        parse_config(task("hierfavg", {"kappa2": 1}, edges=one_edge)),
        out=tmp_path / "h",
        progress=False,
    )
    for a, b in zip(weights(tmp_path / "f"), weights(tmp_path / "h"), strict=True):
        np.testing.assert_array_equal(a, b)
    assert hier["accuracy"] == sync["accuracy"]
    assert hier["loss"] == sync["loss"]
    # the devices did the same: same transfers and training (the edge adds its own)
    fed, hie = (Ledger.from_csv(tmp_path / d / "ledger.csv") for d in ("f", "h"))
    for kind in ("upload", "download"):
        assert hie.total("bytes", side="device", kind=kind) == fed.total(
            "bytes", side="device", kind=kind
        )
    assert hie.device_energy_j() == pytest.approx(fed.device_energy_j(), rel=1e-12)
    assert hier["backhaul_bytes"] > 0
    # the hierarchy costs time: a backhaul both ways and an edge step every round
    assert all(h > f for h, f in zip(hier["round_latency_s"], sync["round_latency_s"], strict=True))


def test_kappa2_edge_rounds_per_cloud_round_with_billed_backhauls(tmp_path: Path) -> None:
    cfg = task("hierfavg", {"kappa2": 3}, edges=[
        {"name": "home", "serves": ["pis"]},
        {"name": "plant", "serves": ["boards"], "profile": "jetson-orin-nano"},
    ])  # fmt: skip
    cfg["engine"] = {"dropout_prob": 0.0}
    cfg["training"]["fraction"] = 1.0
    summary = run_experiment(parse_config(cfg), out=tmp_path / "r", progress=False)
    ledger = Ledger.from_csv(tmp_path / "r" / "ledger.csv")
    size = nbytes(weights(tmp_path / "r"))
    for rnd in range(3):
        for cid in range(4):  # every device: kappa2 downloads, trainings and uploads
            for kind in ("download", "upload", "compute"):
                own = ledger.select(round=rnd, node=f"client-{cid}", kind=kind)
                assert len(own) == 3, (rnd, cid, kind)
        for edge, profile in (("home", "jetson-agx-orin"), ("plant", "jetson-orin-nano")):
            node = f"edge-{edge}"
            aggs = ledger.select(round=rnd, node=node, what="edge-aggregate")
            assert len(aggs) == 3
            assert {e.profile for e in aggs} == {profile}
            (down,) = ledger.select(round=rnd, node=node, kind="download")
            (up,) = ledger.select(round=rnd, node=node, kind="upload")
            assert down.bytes == up.bytes == size
            assert down.link == up.link == "ethernet"
            assert up.seconds > 0
        (cloud,) = ledger.select(round=rnd, what="cloud-aggregate")
        assert cloud.node == "server"
    # edges run in parallel: a round ends with the cloud's step after the slower edge
    rows = RunDir(tmp_path / "r").read_metrics()
    for row in rows:
        events = ledger.select(round=row["round"])
        assert row["latency_s"] == pytest.approx(max(e.end_s for e in events), rel=1e-9)
    assert summary["edges"]["home"]["devices"] == summary["edges"]["plant"]["devices"] == 2
    assert summary["accuracy"] > 0.75


def run_cli(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("scheme", "edges", "message"),
    [
        ("hierfavg", [{"name": "e", "serves": ["pis", "nope"]}], "no device group 'nope'"),
        ("hierfavg", [{"name": "e", "serves": ["pis"]}], "served by no edge: boards"),
        (
            "hierfavg",
            [{"name": "a", "serves": ["pis", "boards"]}, {"name": "b", "serves": ["pis"]}],
            "'pis' is served by edges 'a' and 'b'",
        ),
        ("hierfavg", [{"name": "a", "serves": ["0", "1"]}], "no device group '0'"),
        ("hierfavg", [{"name": "a", "serves": ["pis", "boards"], "backhaul": "x"}], "backhaul"),
        ("fedavg", [{"name": "e", "serves": ["pis", "boards"]}], "topology.edges: scheme"),
    ],
)
def test_validate_checks_the_edges(
    scheme: str,
    edges: list[dict[str, Any]],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(task(scheme, edges=edges)))
    code, err = run_cli("validate", str(path), capsys=capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert message in lines[0], lines


def test_validate_accepts_unnamed_groups_by_position(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = task("hierfavg", edges=[{"name": "a", "serves": [0]}, {"name": "b", "serves": ["1"]}])
    cfg["topology"]["devices"] = [{k: v for k, v in g.items() if k != "name"} for g in GROUPS]
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code, err = run_cli("validate", str(path), capsys=capsys)
    assert code == 0, err
