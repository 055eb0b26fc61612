"""A sweep's grid: its axes, its cells, and each cell's config validated as any config is.

A cell is the base config with one value of every axis written at the axis's config
path (:func:`set_path`; ``*`` walks every element of a list), after the settings that
``sweep.when`` ties to those values. It is validated by the config model and by the
check every command runs (``check``: the scheme's options and refusals), so a cell is
either a config ``tinylarge run`` would accept or an :class:`InvalidCell` with the one
line saying why.

>>> axis = parse_grid_flag("topology.devices.0.distance_m=10,3e2,-1")
>>> axis.key, axis.values
('topology.devices.0.distance_m', (10, 300.0, -1))
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from tinylarge.config import ExperimentConfig, parse_config
from tinylarge.errors import TinylargeError
from tinylarge.explore.spec import MAX_CELLS, Scalar, SweepConfig, check_path

#: A cell's coordinates: ``(key, value)`` per axis, in the grid's order.
Coords = tuple[tuple[str, Scalar], ...]


@dataclass(frozen=True)
class Axis:
    """One grid key and the values it takes."""

    key: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class Cell:
    """A valid cell: its coordinates, its config, and its directory name under the sweep."""

    coords: Coords
    config: ExperimentConfig
    id: str


@dataclass(frozen=True)
class InvalidCell:
    """A cell whose config does not validate, and why (one line)."""

    coords: Coords
    reason: str


def parse_grid_flag(text: str) -> Axis:
    """``KEY=V1,V2,...`` (``--grid``): each value parsed as a YAML scalar (``10`` an int,
    ``1e-3`` a float, ``true`` a bool, ``null`` none, anything else a string)."""
    key, sep, values = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise TinylargeError(
            f"--grid {text!r}: expected KEY=V1,V2,... (e.g. scheme.name=fedavg,fsl)"
        )
    try:
        check_path(key)
    except ValueError as exc:
        raise TinylargeError(f"--grid {text!r}: {exc}") from None
    parsed = tuple(_scalar(v.strip(), text) for v in values.split(",") if v.strip())
    if not parsed:
        raise TinylargeError(f"--grid {text!r}: no values after '='; give V1,V2,...")
    return Axis(key, parsed)


#: YAML 1.1 reads 1e-3 as a string; numbers with an exponent are floats here.
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _scalar(text: str, flag: str) -> Scalar:
    if _FLOAT.fullmatch(text):
        return float(text)
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if value is not None and not isinstance(value, (str, int, float, bool)):
        raise TinylargeError(
            f"--grid {flag!r}: {text!r} is not a scalar; values are numbers, names, true/false "
            "or null (set a whole section in the config's sweep.when)"
        )
    return value  # type: ignore[no-any-return,unused-ignore]


def axes(sweep: SweepConfig | None, flags: Sequence[str]) -> list[Axis]:
    """The config's ``sweep.grid`` with each ``--grid`` flag added (or replacing its key)."""
    out = {k: Axis(k, tuple(v)) for k, v in (sweep.grid if sweep else {}).items()}
    for flag in flags:
        axis = parse_grid_flag(flag)
        out[axis.key] = axis
    if not out:
        raise TinylargeError(
            "nothing to sweep: give --grid KEY=V1,V2,... or a sweep.grid section in the config"
        )
    return list(out.values())


def set_path(data: Any, key: str, value: Any) -> None:
    """Write ``value`` at the dotted config path ``key`` of the mapping ``data`` (made where
    missing); an integer part indexes a list, ``*`` every element of one."""
    _set(data, key.split("."), value, key)


def _set(node: Any, parts: list[str], value: Any, key: str, done: str = "") -> None:
    head, rest = parts[0], parts[1:]
    where = f"{done}.{head}" if done else head
    if isinstance(node, list):
        if head == "*":
            indices = list(range(len(node)))
        elif head.isdigit() and int(head) < len(node):
            indices = [int(head)]
        else:
            raise TinylargeError(
                f"{key}: {where} is not an element of {done} (it has {len(node)}: "
                f"0..{len(node) - 1}, or * for all)"
            )
        for i in indices:
            if rest:
                _set(node[i], rest, value, key, f"{done}.{i}")
            else:
                node[i] = copy.deepcopy(value)
        return
    if not isinstance(node, dict):
        raise TinylargeError(f"{key}: {done} is a value, not a section with a field {head!r}")
    if head == "*" or head.isdigit():
        raise TinylargeError(f"{key}: {done or 'the config'} is not a list; {head!r} indexes one")
    if not rest:
        node[head] = copy.deepcopy(value)
        return
    if node.get(head) is None:
        node[head] = {}
    _set(node[head], rest, value, key, where)


def _matches(when_value: Scalar, value: Scalar) -> bool:
    """A ``sweep.when`` value matches a grid value that equals it (``10`` and ``10.0``)."""
    if isinstance(when_value, bool) or isinstance(value, bool):
        return when_value is value
    return when_value == value or str(when_value) == str(value)


def cell_config(
    base: Mapping[str, Any], coords: Coords, when: Mapping[str, Mapping[Scalar, Mapping[str, Any]]]
) -> dict[str, Any]:
    """The mapping of a cell: ``base``, the ``when`` settings its values bring, its values."""
    data = copy.deepcopy(dict(base))
    data.pop("sweep", None)
    for key, value in coords:
        for when_value, settings in when.get(key, {}).items():
            if _matches(when_value, value):
                for path, setting in settings.items():
                    set_path(data, path, setting)
    for key, value in coords:
        set_path(data, key, value)
    return data


def describe(coords: Coords) -> str:
    """``scheme.name=fsl topology.devices.*.link=nb-iot``."""
    return " ".join(f"{k}={_text(v)}" for k, v in coords)


def _text(v: Scalar) -> str:
    return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def cell_id(coords: Coords, config: ExperimentConfig) -> str:
    """A directory name: the values (readable) and a hash of the config's non-default
    fields, so a cell of a changed base config is a new cell rather than a stale result,
    while a field added to the config model since (at its default) keeps finished cells."""
    slug = "_".join(re.sub(r"[^A-Za-z0-9.+-]+", "-", _text(v)) for _, v in coords)[:80]
    resolved = config.model_dump(mode="json", exclude_defaults=True)
    engine = resolved.pop("engine", {})
    for where in ("backend", "ray_address"):  # where a run executes is not what it computes
        engine.pop(where, None)
    if engine:
        resolved["engine"] = engine
    digest = hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:10]
    return f"{slug}-{digest}"


def expand(
    base: ExperimentConfig,
    grid: Sequence[Axis],
    *,
    check: Callable[[ExperimentConfig, str], object] | None = None,
) -> tuple[list[Cell], list[InvalidCell]]:
    """Every cell of ``grid`` over ``base``: the valid ones and the invalid ones with their
    reason. ``check(config, source)`` is the check beyond the config model (the scheme's
    options and refusals); it raises :class:`TinylargeError` naming the problem."""
    total = 1
    for axis in grid:
        total *= len(axis.values)
    if total > MAX_CELLS:
        raise TinylargeError(f"the grid has {total:,} cells; at most {MAX_CELLS:,} are allowed")
    raw = base.model_dump(exclude_unset=True)  # what was set: schemes refuse set fields
    when = base.sweep.when if base.sweep else {}
    cells: list[Cell] = []
    invalid: list[InvalidCell] = []
    for values in itertools.product(*(a.values for a in grid)):
        coords: Coords = tuple(zip((a.key for a in grid), values, strict=True))
        try:
            cfg = parse_config(cell_config(raw, coords, when), source="cell")
            if check is not None:
                check(cfg, "cell")
        except TinylargeError as exc:
            reason = "; ".join(line.removeprefix("cell: ") for line in str(exc).splitlines())
            invalid.append(InvalidCell(coords, reason))
            continue
        cells.append(Cell(coords, cfg, cell_id(coords, cfg)))
    return cells, invalid
