"""Grid axes, config paths and cells: each cell is the config ``tinylarge run`` would get."""

from __future__ import annotations

from typing import Any

import pytest
from tests.conftest import small_task

from tinylarge.cli._config import check_scheme
from tinylarge.config import parse_config
from tinylarge.errors import TinylargeError
from tinylarge.explore.grid import Axis, axes, expand, parse_grid_flag, set_path


def _check(cfg: Any, source: str) -> object:
    return check_scheme(cfg, source=source)


def test_values_are_yaml_scalars() -> None:
    axis = parse_grid_flag("training.lr=0.1,1e-3,true,null,fsl, 10 ")
    assert axis == Axis("training.lr", (0.1, 1e-3, True, None, "fsl", 10))


@pytest.mark.parametrize(
    ("flag", "says"),
    [
        ("scheme.name", "KEY=V1,V2"),
        ("=a,b", "KEY=V1,V2"),
        ("scheme.name=", "no values"),
        ("scheme..name=a", "not a config path"),
        ("scheme.options={a: 1}", "not a scalar"),
    ],
)
def test_bad_flags_are_one_line_errors(flag: str, says: str) -> None:
    with pytest.raises(TinylargeError, match=says) as err:
        parse_grid_flag(flag)
    assert "\n" not in str(err.value)


def test_flags_add_to_and_replace_the_config_grid() -> None:
    cfg = parse_config(
        {**small_task(), "sweep": {"grid": {"scheme.name": ["fedavg"], "training.rounds": [1, 2]}}}
    )
    got = axes(cfg.sweep, ["scheme.name=fedavg,fedprox", "training.lr=0.1"])
    assert got == [
        Axis("scheme.name", ("fedavg", "fedprox")),
        Axis("training.rounds", (1, 2)),
        Axis("training.lr", (0.1,)),
    ]
    with pytest.raises(TinylargeError, match="nothing to sweep"):
        axes(None, [])


def test_set_path_indexes_lists_and_star_sets_every_element() -> None:
    data: dict[str, Any] = {"topology": {"devices": [{"link": "a"}, {"link": "b"}]}}
    set_path(data, "topology.devices.1.link", "c")
    assert [g["link"] for g in data["topology"]["devices"]] == ["a", "c"]
    set_path(data, "topology.devices.*.distance_m", 30)
    assert [g["distance_m"] for g in data["topology"]["devices"]] == [30, 30]
    set_path(data, "scheme.options.cut", 2)  # sections are made where missing
    assert data["scheme"] == {"options": {"cut": 2}}
    with pytest.raises(TinylargeError, match=r"0\.\.1"):
        set_path(data, "topology.devices.5.link", "x")
    with pytest.raises(TinylargeError, match="is a value"):
        set_path(data, "scheme.options.cut.depth", 1)


def test_cells_validate_like_a_run_and_invalid_ones_say_why() -> None:
    base = parse_config(small_task(training={"rounds": 1}))
    grid = [
        Axis("scheme.name", ("fedavg", "nope")),
        Axis("topology.devices.0.distance_m", (10, -1)),
        Axis("scheme.options.mu", (0.1,)),
    ]
    cells, invalid = expand(base, grid, check=_check)
    assert cells == []  # fedavg has no option mu, nope is no scheme, -1 m is no distance
    reasons = {tuple(v for _, v in c.coords): c.reason for c in invalid}
    assert len(reasons) == 4
    assert "mu" in reasons[("fedavg", 10, 0.1)]
    assert "unknown scheme 'nope'" in reasons[("nope", 10, 0.1)]
    assert "greater than 0" in reasons[("fedavg", -1, 0.1)]
    assert all("\n" not in r for r in reasons.values())
    cells, invalid = expand(base, [Axis("scheme.name", ("fedavg", "fedprox"))], check=_check)
    assert [c.config.scheme.name for c in cells] == ["fedavg", "fedprox"]
    assert invalid == []


def test_when_settings_follow_their_value_and_the_grid_wins() -> None:
    sweep = {
        "grid": {"scheme.name": ["fedavg", "fedprox"]},
        "when": {"scheme.name": {"fedprox": {"scheme.options.mu": 0.5, "training.rounds": 3}}},
    }
    base = parse_config({**small_task(), "sweep": sweep})
    cells, invalid = expand(base, axes(base.sweep, ["training.rounds=2"]), check=_check)
    assert invalid == []
    by = {c.config.scheme.name: c.config for c in cells}
    assert by["fedavg"].scheme.options == {}
    assert by["fedprox"].scheme.options == {"mu": 0.5}
    assert by["fedprox"].training.rounds == 2  # the grid's value over the when setting
    assert all(c.config.sweep is None for c in cells)  # a cell is one run


def test_a_cell_id_changes_with_the_config_not_with_the_backend() -> None:
    base = parse_config(small_task())
    one = expand(base, [Axis("scheme.name", ("fedavg",))])[0][0]
    again = expand(base, [Axis("scheme.name", ("fedavg",))])[0][0]
    other = expand(parse_config(small_task(seed=4)), [Axis("scheme.name", ("fedavg",))])[0][0]
    ray = parse_config(small_task(engine={"backend": "ray"}))
    assert one.id == again.id != other.id
    assert one.id == expand(ray, [Axis("scheme.name", ("fedavg",))])[0][0].id
    assert one.id.startswith("fedavg-")
