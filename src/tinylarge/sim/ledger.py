"""The ledger: the single source of cost truth.

Every computation and every transfer is one :class:`Event` (round, node,
kind, MACs or bytes, seconds, joules). Cost metrics in summaries, reports and
benchmarks are queries over the ledger; no scheme computes costs on its own.
The ledger is plain data: appending and querying never touch torch.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from operator import attrgetter
from pathlib import Path
from types import MappingProxyType
from typing import Literal

Kind = Literal["compute", "upload", "download"]
Side = Literal["device", "server"]
#: The summable cost fields of an :class:`Event`.
CostField = Literal["seconds", "joules", "macs", "bytes"]
KINDS: tuple[Kind, ...] = ("compute", "upload", "download")


@dataclass(frozen=True)
class Event:
    """One billed computation or transfer.

    Attributes:
        round: round index (0-based; -1 for set-up work before the first round).
        node: who carried it, e.g. ``"client-3"`` or ``"server"``.
        side: ``"device"`` for the fleet, ``"server"`` for edge or cloud.
        kind: ``"compute"``, ``"upload"`` (device to server) or ``"download"``.
        what: what moved or ran, e.g. ``"local-train"``, ``"weights"``, ``"activations"``.
        profile: device profile id of the node (``"l4"`` for a server).
        link: link preset or scenario name for transfers, ``""`` for compute.
        macs: multiply-accumulates of a computation (0 for transfers).
        bytes: payload bytes of a transfer (0 for computations).
        seconds: simulated duration in seconds.
        joules: energy in joules drawn by ``node`` (radio energy for transfers).
        at_s: when it started, in simulated seconds from the start of its round (the
            round clock of :mod:`tinylarge.sim.rounds`); events a round aggregates (the
            requests an inference mode serves) are laid end to end from their first start.
        distance_m: a moving device's transfer (``mobility``, docs/network.md): its distance
            to the serving cell when it started; 0 for every other event.
        rate_bps: a moving device's transfer: the rate it got (its share of the cell
            applied); 0 for every other event.
        outage: a moving device's transfer that found its link in outage: nothing was sent
            or billed (bytes, seconds, joules 0); recorded for where it happened.
        cell: the cell that served a moving device's transfer, "" otherwise.
    """

    round: int
    node: str
    side: Side
    kind: Kind
    what: str
    profile: str
    seconds: float
    joules: float
    macs: int = 0
    bytes: int = 0
    link: str = ""
    at_s: float = 0.0
    distance_m: float = 0.0
    rate_bps: float = 0.0
    outage: bool = False
    cell: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"event kind {self.kind!r} is not one of {KINDS}")
        if self.side not in ("device", "server"):
            raise ValueError(f"event side {self.side!r} is not 'device' or 'server'")
        if (
            self.macs < 0
            or self.bytes < 0
            or self.joules < 0
            or not self.seconds >= 0
            or not self.at_s >= 0
        ):
            raise ValueError(f"event with negative cost: {self}")

    @property
    def end_s(self) -> float:
        """When it ended on its round's clock."""
        return self.at_s + self.seconds


FIELDS = tuple(f.name for f in fields(Event))


class Ledger:
    """An append-only list of events with aggregate queries.

    >>> led = Ledger()
    >>> led.record(Event(round=0, node="client-0", side="device", kind="upload",
    ...                  what="weights", profile="rpi4", seconds=0.5, joules=0.2, bytes=1000))
    >>> led.bytes_up()
    1000
    """

    def __init__(self, events: Iterable[Event] = ()) -> None:
        self._events: list[Event] = list(events)
        # node_totals' running sums: (field, side) -> (sums per node, events folded in so
        # far). Right because events are only ever appended: a ledger with fewer events (a
        # truncated or reloaded run) is a new Ledger with no sums yet.
        self._node_sums: dict[tuple[CostField, Side | None], tuple[dict[str, float], int]] = {}

    def record(self, event: Event) -> None:
        self._events.append(event)

    def extend(self, events: Iterable[Event]) -> None:
        self._events.extend(events)

    def __iter__(self) -> Iterator[Event]:
        return iter(self._events)

    def __len__(self) -> int:
        return len(self._events)

    @property
    def events(self) -> tuple[Event, ...]:
        return tuple(self._events)

    def since(self, index: int) -> list[Event]:
        """Events recorded after the first ``index`` ones (one round's worth, say)."""
        return self._events[index:]

    def select(
        self,
        *,
        round: int | None = None,
        node: str | None = None,
        side: Side | None = None,
        kind: Kind | None = None,
        what: str | None = None,
        profile: str | None = None,
    ) -> list[Event]:
        """Events matching every given filter."""
        return [
            e
            for e in self._events
            if (round is None or e.round == round)
            and (node is None or e.node == node)
            and (side is None or e.side == side)
            and (kind is None or e.kind == kind)
            and (what is None or e.what == what)
            and (profile is None or e.profile == profile)
        ]

    def total(
        self,
        field: CostField,
        **filters: object,
    ) -> float:
        """Sum of one cost field over the events matching ``filters`` (see :meth:`select`)."""
        return math.fsum(float(getattr(e, field)) for e in self.select(**filters))  # type: ignore[arg-type]

    def bytes_up(self, **filters: object) -> int:
        return int(self.total("bytes", kind="upload", **filters))

    def bytes_down(self, **filters: object) -> int:
        return int(self.total("bytes", kind="download", **filters))

    def device_energy_j(self, **filters: object) -> float:
        """Device-side joules: compute plus radio."""
        return self.total("joules", side="device", **filters)

    def device_macs(self, **filters: object) -> int:
        return int(self.total("macs", side="device", kind="compute", **filters))

    def node_totals(self, field: CostField, *, side: Side | None = None) -> Mapping[str, float]:
        """Sum of ``field`` per node over ``side``'s events (every event if ``None``), as a
        read-only view, current until the next event is recorded; nodes without events are
        absent.

        Running sums: a call folds in only the events recorded since the previous call for
        the same ``field`` and ``side``, so a query every round costs that round's events,
        not the run's. Each node's sum adds its events in ledger order from 0.0, exactly as
        a fresh scan does.
        """
        sums, seen = self._node_sums.get((field, side)) or ({}, 0)
        cost = attrgetter(field)
        for e in self._events[seen:]:
            if side is None or e.side == side:
                sums[e.node] = sums.get(e.node, 0.0) + float(cost(e))
        self._node_sums[(field, side)] = (sums, len(self._events))
        return MappingProxyType(sums)

    def per_node(self, field: CostField, *, side: Side | None = None) -> dict[str, float]:
        """A copy of :meth:`node_totals`."""
        return dict(self.node_totals(field, side=side))

    def rounds(self) -> list[int]:
        return sorted({e.round for e in self._events})

    # -- persistence -------------------------------------------------------
    def to_csv(self, path: Path) -> None:
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=FIELDS)
            writer.writeheader()
            for e in self._events:
                writer.writerow(asdict(e))

    @classmethod
    def from_csv(cls, path: Path) -> Ledger:
        events = []
        with path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                events.append(
                    Event(
                        round=int(row["round"]),
                        node=row["node"],
                        side=row["side"],  # type: ignore[arg-type]
                        kind=row["kind"],  # type: ignore[arg-type]
                        what=row["what"],
                        profile=row["profile"],
                        seconds=float(row["seconds"]),
                        joules=float(row["joules"]),
                        macs=int(row["macs"]),
                        bytes=int(row["bytes"]),
                        link=row["link"],
                        at_s=float(row.get("at_s") or 0.0),  # ledgers before the round clock
                        # ledgers before mobility have none of these
                        distance_m=float(row.get("distance_m") or 0.0),
                        rate_bps=float(row.get("rate_bps") or 0.0),
                        outage=row.get("outage") == "True",
                        cell=row.get("cell") or "",
                    )
                )
        return cls(events)
