"""Where a device is at a simulated time: the mobility models, as pure trajectories.

A trajectory maps simulated seconds ``t_s >= 0`` to a position ``(x_m, y_m, z_m)`` on
the plane of the topology's cells (metres; ``z_m`` is the height above ground, which
TR 38.901 calls ``h_UT``). The models:

- :class:`Fixed`: a device that does not move.
- :class:`Route`: a straight route at a constant speed, from ``start`` towards
  ``end`` (where it stops) or along a heading forever. Device ``i`` of a group starts
  ``i * spacing_m`` behind the start, so a group is a convoy on one road.
- :class:`RandomWaypoint`: the random waypoint model (Johnson and Maltz, "Dynamic
  source routing in ad hoc wireless networks", 1996; the form analysed by Bettstetter
  et al., IEEE TMC 2003): start at a uniform point of the area, pick a uniform
  waypoint and a uniform speed in ``[v_min, v_max]``, travel there in a straight line,
  pause ``pause_s``, repeat. The draws come from one generator per device, seeded from
  ``(seed, device, stream)``, and legs are drawn in order, so a position never depends
  on which times were asked for before.
- :class:`Trace`: positions read from a CSV file (``t_s, x_m, y_m[, z_m]``),
  linearly interpolated; before the first row the device is at the first position,
  after the last at the last one.
"""

from __future__ import annotations

import bisect
import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from tinylarge.errors import TinylargeError

#: A position on the topology's plane: ``(x_m, y_m, z_m)``.
Position = tuple[float, float, float]
#: Most rows a trace file may hold (a day at 1 s steps is 86,400).
MAX_TRACE_ROWS = 1_000_000


class Trajectory(Protocol):
    """What a mobile link asks of a mobility model."""

    def position(self, t_s: float) -> Position:
        """Where the device is ``t_s`` simulated seconds after the run began."""
        ...


@dataclass(frozen=True)
class Fixed:
    """A device that stays at one point."""

    x_m: float
    y_m: float
    z_m: float

    def position(self, t_s: float) -> Position:
        return (self.x_m, self.y_m, self.z_m)


@dataclass(frozen=True)
class Route:
    """A straight route at ``speed_m_s`` from ``start`` along the unit ``direction``.

    ``length_m``: where the route ends (the device stops there); ``None``: it goes on.
    ``offset_m``: how far behind ``start`` the device begins (a convoy's spacing).
    """

    start: Position
    direction: tuple[float, float]
    speed_m_s: float
    length_m: float | None = None
    offset_m: float = 0.0

    def position(self, t_s: float) -> Position:
        s = self.speed_m_s * t_s - self.offset_m
        if self.length_m is not None:
            s = min(s, self.length_m)
        x0, y0, z0 = self.start
        return (x0 + s * self.direction[0], y0 + s * self.direction[1], z0)


def route(
    *,
    start: tuple[float, float],
    speed_m_s: float,
    end: tuple[float, float] | None = None,
    heading_deg: float | None = None,
    height_m: float,
    offset_m: float = 0.0,
) -> Route:
    """A :class:`Route` from ``start`` to ``end``, or along ``heading_deg`` (0 = +x,
    counter-clockwise) without an end. Exactly one of ``end`` and ``heading_deg``."""
    if (end is None) == (heading_deg is None):
        raise TinylargeError("a route needs exactly one of end_m and heading_deg")
    if end is not None:
        dx, dy = end[0] - start[0], end[1] - start[1]
        length = math.hypot(dx, dy)
        if length == 0:
            raise TinylargeError("a route's end_m must differ from its start_m")
        return Route(
            (start[0], start[1], height_m), (dx / length, dy / length), speed_m_s, length, offset_m
        )
    assert heading_deg is not None
    a = math.radians(heading_deg)
    return Route(
        (start[0], start[1], height_m), (math.cos(a), math.sin(a)), speed_m_s, None, offset_m
    )


@dataclass
class RandomWaypoint:
    """The random waypoint model over ``area = (x_min, y_min, x_max, y_max)``.

    Legs are drawn lazily, in order, from ``rng`` (one generator per device), so the
    trajectory is a pure function of the generator's seed.
    """

    area: tuple[float, float, float, float]
    speed_m_s: tuple[float, float]
    pause_s: float
    height_m: float
    rng: np.random.Generator
    #: Start time of each leg (travel then pause), its start and end points and speed.
    _t: list[float] = field(default_factory=list)
    _legs: list[tuple[float, float, float, float, float, float]] = field(default_factory=list)

    def _point(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.area
        u = self.rng.random(2)
        return (x0 + float(u[0]) * (x1 - x0), y0 + float(u[1]) * (y1 - y0))

    def _extend(self, t_s: float) -> None:
        if not self._legs:
            here = self._point()
            self._t.append(0.0)
            self._legs.append(self._leg(here))
        while True:
            _, _, x1, y1, _, travel = self._legs[-1]
            end = self._t[-1] + travel + self.pause_s
            if end > t_s:
                return
            self._t.append(end)
            self._legs.append(self._leg((x1, y1)))

    def _leg(self, here: tuple[float, float]) -> tuple[float, float, float, float, float, float]:
        there = self._point()
        lo, hi = self.speed_m_s
        v = lo + float(self.rng.random()) * (hi - lo)
        travel = math.hypot(there[0] - here[0], there[1] - here[1]) / v
        return (here[0], here[1], there[0], there[1], v, travel)

    def position(self, t_s: float) -> Position:
        self._extend(t_s)
        i = bisect.bisect_right(self._t, t_s) - 1
        x0, y0, x1, y1, _, travel = self._legs[i]
        dt = t_s - self._t[i]
        f = 1.0 if travel == 0 or dt >= travel else dt / travel
        return (x0 + f * (x1 - x0), y0 + f * (y1 - y0), self.height_m)


@dataclass(frozen=True)
class Trace:
    """Positions over time from a file, linearly interpolated (held before and after)."""

    t_s: tuple[float, ...]
    x_m: tuple[float, ...]
    y_m: tuple[float, ...]
    z_m: tuple[float, ...]

    def position(self, t_s: float) -> Position:
        if t_s <= self.t_s[0]:
            return (self.x_m[0], self.y_m[0], self.z_m[0])
        if t_s >= self.t_s[-1]:
            return (self.x_m[-1], self.y_m[-1], self.z_m[-1])
        i = bisect.bisect_right(self.t_s, t_s) - 1
        f = (t_s - self.t_s[i]) / (self.t_s[i + 1] - self.t_s[i])
        return (
            self.x_m[i] + f * (self.x_m[i + 1] - self.x_m[i]),
            self.y_m[i] + f * (self.y_m[i + 1] - self.y_m[i]),
            self.z_m[i] + f * (self.z_m[i + 1] - self.z_m[i]),
        )


def read_trace(path: str | Path, *, height_m: float) -> Trace:
    """Read a trace CSV with a header ``t_s,x_m,y_m`` (and optionally ``z_m``; without
    it every row is at ``height_m``). Times start at 0 or later and strictly increase;
    every value is a finite number. Raises a one-line :class:`TinylargeError` naming the
    file, the line and what is wrong."""
    p = Path(path)
    if not p.is_file():
        raise TinylargeError(f"trace file {str(p)!r} does not exist")
    want = ["t_s", "x_m", "y_m"]
    try:
        with p.open(newline="") as fh:
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            if header not in (want, [*want, "z_m"]):
                raise TinylargeError(
                    f"trace file {str(p)!r}: header {','.join(header)!r} must be "
                    "'t_s,x_m,y_m' or 't_s,x_m,y_m,z_m'"
                )
            cols: list[list[float]] = [[] for _ in header]
            for line, row in enumerate(reader, start=2):
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) != len(header):
                    raise TinylargeError(
                        f"trace file {str(p)!r} line {line}: {len(row)} values, expected "
                        f"{len(header)} ({','.join(header)})"
                    )
                for col, text in zip(cols, row, strict=True):
                    try:
                        v = float(text)
                    except ValueError:
                        raise TinylargeError(
                            f"trace file {str(p)!r} line {line}: {text.strip()!r} is not a number"
                        ) from None
                    if not math.isfinite(v):
                        raise TinylargeError(
                            f"trace file {str(p)!r} line {line}: {text.strip()!r} is not finite"
                        )
                    col.append(v)
                t = cols[0]
                if t[-1] < 0 or (len(t) > 1 and t[-1] <= t[-2]):
                    raise TinylargeError(
                        f"trace file {str(p)!r} line {line}: t_s={t[-1]:g} must be >= 0 and "
                        "greater than the previous row's"
                    )
                if len(t) > MAX_TRACE_ROWS:
                    raise TinylargeError(
                        f"trace file {str(p)!r}: more than {MAX_TRACE_ROWS:,} rows"
                    )
    except UnicodeDecodeError:
        raise TinylargeError(f"trace file {str(p)!r} is not UTF-8 text") from None
    except csv.Error as exc:
        raise TinylargeError(f"trace file {str(p)!r}: not valid CSV ({exc})") from None
    if not cols or not cols[0]:
        raise TinylargeError(f"trace file {str(p)!r} has no rows after its header")
    z = tuple(cols[3]) if len(cols) == 4 else tuple(height_m for _ in cols[0])
    return Trace(tuple(cols[0]), tuple(cols[1]), tuple(cols[2]), z)
