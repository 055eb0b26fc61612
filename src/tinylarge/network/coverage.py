"""A moving device's link over time: which cell serves it, how far away, LOS or not.

:class:`MobileLink` joins a trajectory (:mod:`tinylarge.network.mobility`), the
cells that serve its link preset, and the preset's channel model into the
:class:`~tinylarge.network.link.Link` of a moment (:meth:`MobileLink.at`). Fading and
shadowing are then drawn per transfer by :meth:`Link.transfer`, at the distance and
LOS state of that moment.

Time is sampled on a measurement grid ``t_k = k * period_s`` (``topology.handover.
period_s``); the serving cell and the LOS state of each cell change only at grid
points and hold in between (so "within one step" is one period's travel):

- Distance: to the serving cell, 2D for the TR 38.901 models (the heights go in as
  ``h_BS`` and ``h_UT``), 3D for the others. Inside a model's minimum distance (10 m
  for TR 38.901 UMa/UMi/RMa) the loss of the minimum is used; beyond its maximum
  (5 km for UMa) the device is out of coverage (every transfer is in outage): the
  table has no number there, and no link budget of the presets closes that far.
- LOS state (TR 38.901 models, ``los: tr38901``): for each cell, LOS iff
  ``U < P_LOS(d_2D, h_UT)`` (Table 7.4.2-1), where ``U = Phi(g)`` and ``g`` is a
  Gaussian process along the device's path with correlation ``exp(-Delta s / d_corr)``
  over the distance ``Delta s`` it travelled between grid points: the spatially
  consistent LOS state of TR 38.901 section 7.6.3.3, with the LOS/NLOS-state
  correlation distance of Table 7.6.3.1-2 (UMa and UMi 50 m, RMa 60 m, InH 10 m). A
  parked device keeps its state; one that moves far sees independent draws. LOS uses
  Rician fading with the scenario's K factor, NLOS Rayleigh (as
  :meth:`Link.from_scenario`). ``los: preset`` keeps the preset's fixed state.
- Handover: the serving cell is the strongest (least median path loss) at ``t = 0``;
  afterwards the device hands over when a neighbour is stronger than the serving
  cell by more than ``hysteresis_db`` (the A3 event of TS 38.331 section 5.5.4.4 with
  offset = hysteresis and no time-to-trigger). Between two equal cells and with 0 dB
  it hands over at the first grid point past the midpoint.

Everything depends only on the trajectory and on generators seeded from (seed,
device, stream, cell), extended in grid order, so any order of queries gives the
same answers (a resumed run, another backend).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, replace
from statistics import NormalDist

import numpy as np

from tinylarge.errors import TinylargeError
from tinylarge.network import tr38901
from tinylarge.network.link import Link
from tinylarge.network.mobility import Position, Trajectory
from tinylarge.network.models import LogDistanceModel, Tr38901Model
from tinylarge.network.presets import LinkPreset

#: LOS/NLOS-state correlation distance of TR 38.901 Table 7.6.3.1-2, metres.
LOS_CORRELATION_M = {"uma": 50.0, "umi": 50.0, "rma": 60.0, "inh": 10.0}
#: Most measurement-grid points a moving device keeps (11.6 days at 0.5 s).
MAX_GRID_POINTS = 2_000_000
#: Smallest distance the non-TR 38.901 models are evaluated at (free space needs d > 0).
MIN_DISTANCE_M = 1.0
_PHI = NormalDist()


@dataclass(frozen=True)
class Cell:
    """A base station (gNB, access point, gateway) on the plane; ``height_m`` None: the
    scenario's default ``h_BS`` (TR 38.901) or ground level (other models)."""

    name: str
    x_m: float
    y_m: float
    height_m: float | None = None


@dataclass(frozen=True)
class LinkState:
    """The link of one moment. Out of the model's range (``covered`` False) ``link`` is
    the preset at the edge of its range with an unreachable SNR threshold: every transfer
    over it is in outage."""

    t_s: float
    position: Position
    cell: str
    distance_m: float
    los: bool | None
    link: Link
    covered: bool


def distance_range_m(preset: LinkPreset, los: bool) -> tuple[float, float]:
    """The link distances the preset's channel model covers: TR 38.901's table ranges (in
    2D; InH's 3D bounds turned into 2D at the model's heights), the log-distance model's
    minimum, else 1 m to unbounded."""
    model = preset.pathloss
    if isinstance(model, Tr38901Model):
        spec = tr38901.SCENARIOS[model.scenario]
        lo, hi = spec.distance_los_m if los else spec.distance_nlos_m
        h = model.ut_height_m
        if model.scenario == "uma" and h is not None and h > tr38901.AERIAL_MIN_HEIGHT_M:
            hi = tr38901.AERIAL_MAX_DISTANCE_M  # TR 36.777 Table B-2
        if spec.distance_is_3d:
            h_bs = spec.bs_height_m if model.bs_height_m is None else model.bs_height_m
            h_ut = spec.ut_height_m if model.ut_height_m is None else model.ut_height_m
            dh = h_bs - h_ut
            lo = math.sqrt(max(lo * lo - dh * dh, 0.0))
            hi = math.sqrt(max(hi * hi - dh * dh, 0.0))
        return lo, hi
    if isinstance(model, LogDistanceModel):
        return (model.min_distance_m, math.inf)
    return (MIN_DISTANCE_M, math.inf)


class MobileLink:
    """A device's link preset along its trajectory, served by the nearest-in-path-loss cell.

    Args:
        preset: the group's link preset.
        trajectory: where the device is over time.
        cells: the cells that serve ``preset`` (at least one).
        seed_key: the device's seed sequence prefix ``(seed, device)``; each cell's LOS
            process draws from ``(*seed_key, stream, cell index)``.
        period_s: the measurement grid step, seconds.
        hysteresis_db: the handover margin, dB.
        los: ``"tr38901"`` (draw the state, see the module docstring) or ``"preset"``.
    """

    def __init__(
        self,
        preset: LinkPreset,
        trajectory: Trajectory,
        cells: Sequence[Cell],
        *,
        seed_key: tuple[int, ...],
        period_s: float,
        hysteresis_db: float,
        los: str = "tr38901",
        stream: int = 71,
    ) -> None:
        if not cells:
            raise ValueError("a mobile link needs at least one cell")
        self.preset = preset
        self.trajectory = trajectory
        self.cells = list(cells)
        self.period_s = period_s
        self.hysteresis_db = hysteresis_db
        model = preset.pathloss
        self._tr = model if isinstance(model, Tr38901Model) else None
        self.draws_los = los == "tr38901" and self._tr is not None
        self._rngs = [np.random.default_rng([*seed_key, stream, i]) for i in range(len(self.cells))]
        # the grid, extended in order: each cell's Gaussian and the serving cell per point
        # (compact arrays: a day at 0.5 s is 172,800 points), and the last position
        self._g = [array("d") for _ in self.cells]
        self._serving = array("H")
        self._last: Position | None = None
        self._presets: dict[tuple[int, bool, float], LinkPreset] = {}

    # -- geometry ---------------------------------------------------------------------------
    def _distance(self, pos: Position, cell: Cell) -> float:
        dx, dy = pos[0] - cell.x_m, pos[1] - cell.y_m
        if self._tr is not None:
            return math.hypot(dx, dy)
        return math.sqrt(dx * dx + dy * dy + (pos[2] - (cell.height_m or 0.0)) ** 2)

    def _cell_preset(self, i: int, los: bool | None, z_m: float) -> LinkPreset:
        """The preset towards cell ``i`` in a LOS state at height ``z_m`` (0: the
        scenario's default ``h_UT``)."""
        state = bool(los)
        key = (i, state, round(z_m, 1))
        if key not in self._presets:
            p = self.preset
            if self._tr is not None:
                cell = self.cells[i]
                los_flag = state if self.draws_los else self._tr.los
                model = Tr38901Model(
                    scenario=self._tr.scenario,
                    los=los_flag,
                    bs_height_m=self._tr.bs_height_m if cell.height_m is None else cell.height_m,
                    ut_height_m=round(z_m, 1) if z_m > 0 else self._tr.ut_height_m,
                )
                p = replace(p, pathloss=model)
                if self.draws_los:
                    p = replace(
                        p,
                        fading_model="rician" if los_flag else "rayleigh",
                        rician_k_db=model.rician_k_db,
                    )
            self._presets[key] = p
        return self._presets[key]

    def _link(self, i: int, pos: Position, los: bool | None) -> tuple[float, Link, bool]:
        """Distance to cell ``i``, the link there and whether the model covers it."""
        preset = self._cell_preset(i, los, pos[2])
        d = self._distance(pos, self.cells[i])
        state = preset.pathloss.los if isinstance(preset.pathloss, Tr38901Model) else True
        lo, hi = distance_range_m(preset, state)
        if d > hi:
            return d, Link(replace(preset, snr_threshold_db=math.inf), distance_m=hi), False
        return d, Link(preset, distance_m=max(d, lo)), True

    def _los(self, k: int, i: int) -> bool | None:
        """The LOS state towards cell ``i`` at grid point ``k`` (None: not drawn)."""
        if not self.draws_los:
            return None
        assert self._tr is not None
        pos = self._grid_position(k)
        d = math.hypot(pos[0] - self.cells[i].x_m, pos[1] - self.cells[i].y_m)
        h_ut = pos[2] if pos[2] > 0 else tr38901.SCENARIOS[self._tr.scenario].ut_height_m
        p_los = tr38901.los_probability(self._tr.scenario, distance_2d_m=d, ut_height_m=h_ut)
        return _PHI.cdf(self._g[i][k]) < p_los

    # -- the grid ---------------------------------------------------------------------------
    def _grid_position(self, k: int) -> Position:
        return self.trajectory.position(k * self.period_s)

    def _extend(self, k_max: int) -> None:
        if k_max >= MAX_GRID_POINTS:
            raise TinylargeError(
                f"a moving device reached {k_max * self.period_s:g} simulated seconds, "
                f"{k_max:,} steps of topology.handover.period_s={self.period_s:g} s; at most "
                f"{MAX_GRID_POINTS:,} steps are kept: raise period_s"
            )
        corr = LOS_CORRELATION_M.get(self._tr.scenario, 50.0) if self._tr is not None else 1.0
        while len(self._serving) <= k_max:
            k = len(self._serving)
            pos = self._grid_position(k)
            z = [float(r.standard_normal()) for r in self._rngs]
            if self._last is None:
                g = z
            else:
                rho = math.exp(-math.dist(pos, self._last) / corr)
                s = math.sqrt(1.0 - rho * rho)
                g = [rho * self._g[i][-1] + s * b for i, b in enumerate(z)]
            self._last = pos
            for i, v in enumerate(g):
                self._g[i].append(v)
            if len(self.cells) == 1:
                self._serving.append(0)
                continue
            loss = [self._median_loss(k, i) for i in range(len(self.cells))]
            if k == 0:
                serving = min(range(len(loss)), key=lambda i: (loss[i], i))
            else:
                serving = self._serving[-1]
                best = min(range(len(loss)), key=lambda i: (loss[i], i))
                if loss[serving] - loss[best] > self.hysteresis_db:
                    serving = best
            self._serving.append(serving)

    def _median_loss(self, k: int, i: int) -> float:
        """Median path loss to cell ``i`` at grid point ``k`` (inf: out of range)."""
        pos = self._grid_position(k)
        preset = self._cell_preset(i, self._los(k, i), pos[2])
        model = preset.pathloss
        assert model is not None
        d = self._distance(pos, self.cells[i])
        state = model.los if isinstance(model, Tr38901Model) else True
        lo, hi = distance_range_m(preset, state)
        if d > hi:
            return math.inf
        return model.loss_db(distance_m=max(d, lo), carrier_hz=preset.carrier_hz)

    def _k(self, t_s: float) -> int:
        return max(0, math.floor(t_s / self.period_s + 1e-9))

    # -- queries ----------------------------------------------------------------------------
    def at(self, t_s: float) -> LinkState:
        """The link at simulated time ``t_s``: the position now, the serving cell and LOS
        state of the last grid point."""
        k = self._k(t_s)
        self._extend(k)
        i = self._serving[k]
        pos = self.trajectory.position(t_s)
        los = self._los(k, i)
        d, link, covered = self._link(i, pos, los)
        return LinkState(t_s, pos, self.cells[i].name, d, los, link, covered)

    def handovers(self, start_s: float, end_s: float) -> int:
        """Handovers at grid points in ``(start_s, end_s]``."""
        k0, k1 = self._k(start_s), self._k(end_s)
        self._extend(k1)
        return sum(1 for k in range(k0 + 1, k1 + 1) if self._serving[k] != self._serving[k - 1])
