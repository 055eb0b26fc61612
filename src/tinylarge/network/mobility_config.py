"""The typed config of mobility: a device group's ``mobility``, the topology's ``cells``
and ``handover`` (docs/network.md, "Devices that move").

A group without ``mobility`` (or with ``mobility: static``) sits at its ``distance_m`` as
before, and its numbers are exactly those of a run without this section. A moving
group is placed on the plane of ``topology.cells`` (metres); without cells, one cell at
the origin serves every link.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tinylarge.errors import TinylargeError

if TYPE_CHECKING:
    from tinylarge.network.mobility import Trajectory

#: Farthest coordinate on the plane, metres (the config's largest distance).
MAX_COORD_M = 1e7
Coord = Annotated[float, Field(ge=-MAX_COORD_M, le=MAX_COORD_M)]
Speed = Annotated[float, Field(ge=0, le=1000)]
#: Height above ground: TR 38.901's h_UT (its scenario's range is checked with the link).
Height = Annotated[float, Field(gt=0, le=10_000)]
#: The mobility models, for messages.
MODELS = ("random_waypoint", "route", "static", "trace")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class StaticMobility(_Frozen):
    """The device stays at the group's ``distance_m`` (today's behaviour, bit for bit)."""

    model: Literal["static"] = "static"


class _Moving(_Frozen):
    #: Height above ground, m (TR 38.901 h_UT); None: the scenario's default (1.5 m).
    height_m: Height | None = None
    #: ``tr38901``: draw LOS/NLOS from the TR 38.901 LOS probability as the distance
    #: changes (spatially correlated); ``preset``: keep the link preset's state.
    los: Literal["tr38901", "preset"] = "tr38901"

    @property
    def z_m(self) -> float:
        """The trajectory's height; 0 stands for the scenario's default h_UT."""
        return 0.0 if self.height_m is None else self.height_m

    def trajectory(self, *, index: int, rng: np.random.Generator) -> Trajectory:
        """Device ``index`` of the group's trajectory (``rng``: its own generator)."""
        raise NotImplementedError


class RouteMobility(_Moving):
    """A straight route: from ``start_m`` to ``end_m`` (then parked) or along ``heading_deg``
    (0 = +x, counter-clockwise) at ``speed_m_s``; device i starts ``i * spacing_m`` behind."""

    model: Literal["route"]
    start_m: tuple[Coord, Coord]
    end_m: tuple[Coord, Coord] | None = None
    heading_deg: Annotated[float, Field(ge=-360, le=360)] | None = None
    speed_m_s: Speed
    spacing_m: Annotated[float, Field(ge=0, le=MAX_COORD_M)] = 0.0

    @model_validator(mode="after")
    def _one_direction(self) -> RouteMobility:
        if (self.end_m is None) == (self.heading_deg is None):
            raise ValueError("a route needs exactly one of end_m and heading_deg")
        if self.end_m is not None and tuple(self.end_m) == tuple(self.start_m):
            raise ValueError("a route's end_m must differ from its start_m")
        return self

    def trajectory(self, *, index: int, rng: np.random.Generator) -> Trajectory:
        from tinylarge.network.mobility import route

        return route(
            start=self.start_m, speed_m_s=self.speed_m_s, end=self.end_m,
            heading_deg=self.heading_deg, height_m=self.z_m, offset_m=index * self.spacing_m,
        )  # fmt: skip


class RandomWaypointMobility(_Moving):
    """Random waypoint over ``area_m = [x_min, y_min, x_max, y_max]`` at a uniform speed in
    ``speed_m_s = [min, max]`` (min > 0), pausing ``pause_s`` at each waypoint."""

    model: Literal["random_waypoint"]
    area_m: tuple[Coord, Coord, Coord, Coord]
    speed_m_s: tuple[Speed, Speed]
    pause_s: Annotated[float, Field(ge=0, le=1e6)] = 0.0

    @model_validator(mode="after")
    def _sane(self) -> RandomWaypointMobility:
        x0, y0, x1, y1 = self.area_m
        if not (x0 < x1 and y0 < y1):
            raise ValueError(
                f"area_m {list(self.area_m)} must be [x_min, y_min, x_max, y_max] with "
                "x_min < x_max and y_min < y_max"
            )
        lo, hi = self.speed_m_s
        if not 0 < lo <= hi:
            raise ValueError(f"speed_m_s {list(self.speed_m_s)} must be [min, max], 0 < min <= max")
        return self

    def trajectory(self, *, index: int, rng: np.random.Generator) -> Trajectory:
        from tinylarge.network.mobility import RandomWaypoint

        return RandomWaypoint(self.area_m, self.speed_m_s, self.pause_s, self.z_m, rng)


class TraceMobility(_Moving):
    """Positions over time from a CSV file ``t_s,x_m,y_m[,z_m]`` (every device of the group
    follows it), linearly interpolated."""

    model: Literal["trace"]
    file: Annotated[str, Field(min_length=1, max_length=4096)]

    @field_validator("file")
    @classmethod
    def _readable(cls, v: str) -> str:
        from tinylarge.network.mobility import read_trace

        try:
            read_trace(v, height_m=0.0)
        except TinylargeError as exc:
            raise ValueError(str(exc)) from None
        return v

    def trajectory(self, *, index: int, rng: np.random.Generator) -> Trajectory:
        from tinylarge.network.mobility import read_trace

        return read_trace(self.file, height_m=self.z_m)


MobilityConfig = Annotated[
    StaticMobility | RouteMobility | RandomWaypointMobility | TraceMobility,
    Field(discriminator="model"),
]


def mobility_shorthand(v: Any) -> Any:
    """``mobility: static`` is ``{model: static}``; the other models need their settings."""
    if isinstance(v, str):
        if v == "static":
            return {"model": "static"}
        if v in MODELS:
            raise ValueError(f"mobility {v!r} needs its settings: {{model: {v}, ...}}")
        raise ValueError(f"unknown mobility model {v!r}; allowed: {', '.join(MODELS)}")
    return v


class CellConfig(_Frozen):
    """A cell (base station) on the plane; ``links``: the presets it serves (None: all)."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.+-]{1,64}$")]
    x_m: Coord = 0.0
    y_m: Coord = 0.0
    #: Antenna height, m; None: the scenario's default h_BS (TR 38.901), else ground level.
    height_m: Annotated[float, Field(gt=0, le=1000)] | None = None
    links: list[str] | None = None

    @field_validator("links")
    @classmethod
    def _known_links(cls, v: list[str] | None) -> list[str] | None:
        from tinylarge.network.presets import PRESETS

        for name in v or []:
            PRESETS[name]
        return v


class HandoverConfig(_Frozen):
    """When a moving device changes cell: a neighbour stronger by more than
    ``hysteresis_db`` (TS 38.331 A3), checked every ``period_s`` of simulated time (also the
    step at which positions, LOS states and the serving cell are sampled)."""

    hysteresis_db: Annotated[float, Field(ge=0, le=40)] = 3.0
    period_s: Annotated[float, Field(ge=0.001, le=3600)] = 0.5


def is_moving(mobility: object) -> bool:
    """Whether a group's ``mobility`` moves it (None and ``static`` do not)."""
    return mobility is not None and not isinstance(mobility, StaticMobility)


def check_group(*, link: str, distance_m: float | None, mobility: object) -> None:
    """A moving group has no ``distance_m`` (its distance comes from its positions), a
    radio link, and a height its link's channel model covers."""
    if not is_moving(mobility):
        return
    from tinylarge.network import tr38901
    from tinylarge.network.models import Tr38901Model
    from tinylarge.network.presets import PRESETS

    preset = PRESETS[link]
    if distance_m is not None:
        raise ValueError(
            "distance_m is for a static group; a moving group's distance comes from its "
            "positions and topology.cells"
        )
    if preset.wired:
        raise ValueError(f"link {link!r} is wired: a device on it cannot move")
    height = getattr(mobility, "height_m", None)
    model = preset.pathloss
    if height is not None and isinstance(model, Tr38901Model):
        spec = tr38901.SCENARIOS[model.scenario]
        lo, hi = spec.ut_height_range_m
        if not lo <= height <= hi:
            raise ValueError(
                f"height_m={height:g} m is outside {lo:g}-{hi:g} m allowed for the UE by "
                f"{tr38901.SOURCE} ({model.scenario}) on link {link!r}"
            )
        drawn = getattr(mobility, "los", "tr38901") == "tr38901"
        for los in (True, False) if drawn else (model.los,):
            if (
                drawn
                and not los
                and tr38901.los_probability(model.scenario, distance_2d_m=1e4, ut_height_m=height)
                >= 1.0
            ):
                continue  # never NLOS at this height
            try:  # the height with the scenario's heights and LOS state (aerial UE limits)
                tr38901.geometry(
                    model.scenario, los=los, carrier_ghz=preset.carrier_hz / 1e9,
                    distance_2d_m=100.0, bs_height_m=model.bs_height_m, ut_height_m=height,
                )  # fmt: skip
            except TinylargeError as exc:
                raise ValueError(f"{exc} on link {link!r}") from None


def check_cells(cells: list[CellConfig], groups: list[tuple[str, object]]) -> None:
    """Cell names are unique, and every moving group's link is served by some cell."""
    names = [c.name for c in cells]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"cell names must be unique; repeated: {', '.join(dup)}")
    if not cells:
        return
    for i, (link, mobility) in enumerate(groups):
        if is_moving(mobility) and not any(c.links is None or link in c.links for c in cells):
            raise ValueError(
                f"devices.{i} moves on link {link!r}, but no cell of topology.cells serves it "
                "(give a cell links: [...] with it, or omit links)"
            )
