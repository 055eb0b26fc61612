"""The round clock: one home for what happens in a round and when.

Every scheme with rounds or requests runs them through a :class:`Round`, so a
config field means the same thing in every scheme:

- ``training.fraction`` and ``training.min_clients``: :func:`sample` picks the
  round's participants from the devices a scheme admitted, deterministically
  in (seed, round).
- Each participant has its own clock, in seconds from the start of the round's
  device phase. A download, a computation or an upload advances it by what the
  context prices. Devices on the same link preset transferring in the same
  call share its cell equally (``1/k`` of the bandwidth each).
- ``engine.fading``, ``engine.shadowing``: a device's link is block-faded over
  the round, one draw per direction (:meth:`tinylarge.sim.context.Context.transfer`).
  A transfer in outage sends nothing and bills nothing: the device drops out of
  the round (``"outage"``).
- A device group's ``mobility``: a moving device's transfer sees the link of the moment
  it starts (round start + its clock; :meth:`tinylarge.sim.context.Context.link_state`),
  with its own fading and shadowing draw; its events carry the distance, rate and cell,
  and a transfer in outage is recorded at no cost (docs/network.md).
- ``engine.dropout_prob``: after its downloads a participant drops out with
  this probability (``"dropout"``; one draw per participant and round).
- ``engine.deadline_s``: a participant whose results arrive later than this many
  seconds after the device phase began is a straggler (``"straggler"``): its
  work is billed, its results are discarded, and the device phase ends at the
  deadline. In turn-based rounds (split learning) a device whose turn would
  start after the deadline does not get one.
- Server time: work the server does before the device phase (pre-training, a
  teacher, calibration) comes first, work after it (aggregation, server-side
  training) last. The round's latency is pre + device phase + post.

The device phase ends when the last participant still in the round is done (or
at the deadline if a straggler was cut or a moving device lost its link). Dropped
devices do not hold it up, except in a turn-based round, which ends no earlier than
its last turn.

Every event is billed to the ledger with its start on this clock (``at_s``), so
a round's latency can be re-derived from its events; tests do exactly that.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from tinylarge.errors import TinylargeError
from tinylarge.hardware.catalogue import DeviceProfile
from tinylarge.hardware.cost import ComputeCost, Elementwise, Train, Work
from tinylarge.models.weights import Weights
from tinylarge.network.cell import equal_shares
from tinylarge.sim.adversary import ATTACK_STREAM, DEFENSE_STREAM
from tinylarge.sim.aggregation import AGGREGATORS, Update
from tinylarge.sim.ledger import Side

if TYPE_CHECKING:
    from tinylarge.network.link import Link
    from tinylarge.sim.context import Client, Context

#: Messages to one device: ``(what, bytes)`` in the order they are sent.
Payload = Sequence[tuple[str, int]]
#: Why a participant left the round.
Reason = Literal["outage", "dropout", "straggler"]
#: A message stream of split learning: ``(direction, what)``.
Stream = tuple[str, str]

_DROPOUT_STREAM = 4
#: The server's DP noise (``ctx.rng(round, _DP_STREAM)``).
_DP_STREAM = 41
#: A device's share of distributed DP noise (``ctx.rng(round, _DP_DEVICE_STREAMS + id)``).
_DP_DEVICE_STREAMS = 50_000_000
#: Ledger node of each server-side compute leg of an inference request.
SERVER_NODES = {"edge": "server", "cloud": "cloud"}


@dataclass
class RoundReport:
    """What a round did on the clock: its latency, who took part and who dropped, and why."""

    latency_s: float
    participants: int
    dropped: dict[int, str] = field(default_factory=dict)
    train_loss: float | None = None
    #: What a protocol step of the round reports for metrics.csv (``secagg_survivors``...).
    notes: dict[str, Any] = field(default_factory=dict)


def sample(ctx: Context, rnd: int, pool: Sequence[Client]) -> list[Client]:
    """``training.fraction`` of ``pool`` (at least ``training.min_clients``), in pool order,
    chosen by ``training.selection`` (:mod:`tinylarge.sim.selection`); with
    ``training.sampling: poisson`` each device independently with that probability.

    Deterministic in (seed, round): resuming a run samples the same devices.
    """
    t = ctx.config.training
    if t.sampling == "poisson":  # each device independently with probability ``fraction``
        picked = ctx.rng(rnd, 1).random(len(pool)) < t.fraction
        return [c for c, p in zip(pool, picked, strict=True) if p]
    from tinylarge.sim.selection import SELECTORS

    return SELECTORS[t.selection](ctx, rnd, pool, t.per_round(len(pool)))


def shares(
    clients: Sequence[Client],
    busy: Mapping[str, int] | None = None,
    cells: Mapping[int, str] | None = None,
) -> dict[int, float]:
    """Bandwidth share of each client: those on the same link preset share its cell equally,
    with ``busy[link]`` other devices already holding a share of it (the asynchronous clock's
    devices in flight). ``cells``: the cell serving each moving client; moving clients share
    their serving cell's band, static ones the preset's (one cell, as before)."""
    by_link: dict[tuple[str, str], list[Client]] = {}
    for c in clients:
        by_link.setdefault((c.link_name, (cells or {}).get(c.id, "")), []).append(c)
    out: dict[int, float] = {}
    for (link, _), group in by_link.items():
        n = len(group) + (busy or {}).get(link, 0)
        for c, s in zip(group, equal_shares(n), strict=False):
            out[c.id] = s
    return out


class Round:
    """One round on the simulated clock (see the module docstring).

    A synchronous round is ``download`` -> ``compute`` -> ``upload`` ->
    ``aggregate``/``server``; a turn-based round wraps each device's work in
    ``begin_turn``/``end_turn``, so the server serves one device at a time.
    """

    def __init__(
        self,
        ctx: Context,
        rnd: int,
        participants: Sequence[Client],
        *,
        bill: Callable[..., None] | None = None,
        cell_busy: Mapping[str, int] | None = None,
    ) -> None:
        self.ctx = ctx
        self.rnd = rnd
        #: Where the round's events go: ``ctx.record`` (the ledger), or the asynchronous
        #: clock's collector (:mod:`tinylarge.sim.async_clock`), which bills each event in
        #: the server update during which it starts.
        self._record = ctx.record if bill is None else bill
        #: Simulated seconds from the run's start to this round's zero (its events' ``at_s``
        #: count from here): where moving devices are. The engine's clock at the round's
        #: start; another clock sets its own (the asynchronous clock: the dispatch time).
        self.start_s = ctx.round_start_s
        #: Devices outside this round already sharing each link's cell (see :func:`shares`).
        self.cell_busy = dict(cell_busy or {})
        self.participants = list(participants)
        self.dropped: dict[int, str] = {}
        self.deadline_s = ctx.config.engine.deadline_s
        draws = ctx.rng(rnd, _DROPOUT_STREAM).random(len(self.participants))
        self._dropout = {c.id: float(u) for c, u in zip(self.participants, draws, strict=True)}
        self._phase: Literal["before", "devices", "after"] = "before"
        self._pre_s = 0.0
        self._post_s = 0.0
        self._device_end_s = 0.0
        self._clock: dict[int, float] = {}
        self._turn_free_s = 0.0
        self.notes: dict[str, Any] = {}

    # -- who is still here -------------------------------------------------------------------
    @property
    def active(self) -> list[Client]:
        """Participants that have not dropped out."""
        return [c for c in self.participants if c.id not in self.dropped]

    def clock_s(self, client: Client) -> float:
        """``client``'s clock: seconds since the device phase began."""
        return self._clock.get(client.id, 0.0)

    def drop(self, client: Client, reason: Reason) -> None:
        if client.id not in self.dropped:
            self.dropped[client.id] = reason

    # -- server work -------------------------------------------------------------------------
    def server(
        self,
        work: Work | Sequence[Work],
        *,
        what: str,
        node: str = "server",
        profile: DeviceProfile | None = None,
    ) -> float:
        """Server-side work (``profile``: another server-side node, e.g. a cloud tier).

        Before any device activity it runs before the device phase; after the device
        phase, after it. Returns its seconds.
        """
        if self._phase == "devices":
            self._close_devices()
        proc = profile or self.ctx.server
        cost = self.ctx.price(work, proc)
        if self._phase == "before":
            at = self._pre_s
            self._pre_s += cost.latency_s
        else:
            at = self._pre_s + self._device_end_s + self._post_s
            self._post_s += cost.latency_s
        self._bill_compute(node, "server", proc, cost, what=what, at_s=at)
        return cost.latency_s

    def _bill_compute(
        self,
        node: str,
        side: Side,
        proc: DeviceProfile,
        cost: ComputeCost,
        *,
        what: str,
        at_s: float,
    ) -> None:
        self._record(
            self.rnd,
            node=node,
            side=side,
            kind="compute",
            what=what,
            profile=proc.id,
            seconds=cost.latency_s,
            joules=cost.energy_j,
            macs=cost.macs,
            at_s=at_s,
        )

    def aggregate(
        self, updates: Sequence[Update], *, base: Weights, what: str = "aggregate"
    ) -> Weights:
        """Where updates meet: the new global tensors from the round's updates, billed to the
        server as element-wise work over every carried value. ``base`` if none arrived."""
        if not updates:
            return base
        values = sum(int(t.size) for u in updates for t in u.tensors if t is not None)
        private = self.ctx.privacy
        defense = self.ctx.defense
        if defense is not None:
            reference = None
            if defense.needs_reference:  # FLTrust: the server trains on its root data first
                reference, samples = self.ctx.root_update(base, self.rnd)
                self.server(Train(self.ctx.model_profile, samples), what="fltrust-root-train")
            rng = self.ctx.rng(self.rnd, DEFENSE_STREAM)
            new = defense.aggregate(updates, base=base, rng=rng, reference=reference)
            values = round(values * defense.work_factor(len(updates)))
        elif private is None:
            new = AGGREGATORS["fedavg"](updates, base=base)
        else:
            new = private.dp.aggregate(updates, base=base, rng=self.ctx.rng(self.rnd, _DP_STREAM))
            values += private.dp.server_values(updates)
        self.server(Elementwise(values), what=what)
        return new

    def secure_aggregate(self, updates: Sequence[Update], *, base: Weights) -> Weights:
        """The new global tensors from ``updates`` through secure aggregation
        (``privacy.secagg``): every stage's messages on the clients' links, their crypto
        on their devices, the unmasking on the server (:mod:`tinylarge.sim.secure`).
        ``base`` if the protocol aborts (the reason goes to metrics.csv)."""
        from tinylarge.sim.secure import secure_aggregate

        cfg = self.ctx.config.privacy.secagg
        if cfg is None:
            raise RuntimeError("secure_aggregate without privacy.secagg")
        new, notes = secure_aggregate(self, updates, base=base, cfg=cfg)
        self.notes.update(notes)
        return new

    def barrier(self, clients: Sequence[Client]) -> None:
        """A protocol stage the server answers only when all of ``clients`` are done: each
        waits, idle, until the last of them is."""
        end = max((self.clock_s(c) for c in clients), default=0.0)
        for c in clients:
            self._clock[c.id] = end

    def corrupt(self, updates: Sequence[Update], *, base: Weights) -> list[Update]:
        """What the round's devices send under ``attack``: the malicious devices' updates
        replaced (:meth:`tinylarge.sim.adversary.Adversary.corrupt`); unchanged otherwise."""
        adversary = self.ctx.adversary
        if adversary is None:
            return list(updates)
        rng = self.ctx.rng(self.rnd, ATTACK_STREAM)
        return adversary.corrupt(updates, base=base, rng=rng)

    def protect(self, updates: Sequence[Update], *, base: Weights) -> list[Update]:
        """What each device sends instead of its update under ``privacy.dp`` (client-side
        clipping), with the device's work billed before its upload; ``updates`` unchanged
        otherwise."""
        private = self.ctx.privacy
        if private is None:
            return list(updates)
        by_id = {c.id: c for c in self.participants}
        out = []
        for u in updates:
            values = private.dp.device_work(u)
            if values:
                self.compute(by_id[u.client], Elementwise(values), what="dp-clip")
            rng = self.ctx.rng(self.rnd, _DP_DEVICE_STREAMS + u.client)
            out.append(private.dp.on_device(u, base, rng=rng))
        return out

    # -- device phase ------------------------------------------------------------------------
    def _open_devices(self) -> None:
        if self._phase == "after":
            raise RuntimeError("device work after the round's closing server work")
        self._phase = "devices"

    def _advance(self, client: Client, seconds: float) -> float:
        """Move ``client``'s clock on by ``seconds``; return the absolute start (``at_s``)."""
        start = self._clock.get(client.id, 0.0)
        self._clock[client.id] = start + seconds
        return self._pre_s + start

    def _send(
        self, clients: Sequence[Client], payloads: Mapping[int, Payload], direction: str
    ) -> None:
        split = shares(clients, self.cell_busy, self._serving(clients))
        for c in clients:
            for what, size in payloads.get(c.id, ()):
                if c.id in self.dropped:
                    break
                if size <= 0:
                    continue
                at = self._pre_s + self.clock_s(c)
                res = self.ctx.transfer(
                    self.rnd, c, size, direction="up" if direction == "up" else "down",
                    share=split[c.id], when_s=self.start_s + at,
                )  # fmt: skip
                if res.outage:
                    self._outage(c, direction, what, at)
                    self.drop(c, "outage")
                    break
                self._bill_transfer(
                    c, direction, what, size, res.time_s, res.energy_j, rate_bps=res.rate_bps
                )

    def _bill_transfer(
        self,
        c: Client,
        direction: str,
        what: str,
        size: int,
        seconds: float,
        joules: float,
        *,
        rate_bps: float = 0.0,
    ) -> None:
        at = self._advance(c, seconds)
        where = self._where(c, at, rate_bps)
        self._record(
            self.rnd,
            node=c.node,
            side="device",
            kind="upload" if direction == "up" else "download",
            what=what,
            profile=c.profile.id,
            link=c.link_name,
            seconds=seconds,
            joules=joules,
            num_bytes=size,
            at_s=at,
            **where,
        )

    def _serving(self, clients: Sequence[Client]) -> dict[int, str]:
        """The cell serving each moving client now (on its own clock), for :func:`shares`."""
        out: dict[int, str] = {}
        for c in clients:
            state = self.ctx.link_state(c, self.start_s + self._pre_s + self.clock_s(c))
            if state is not None:
                out[c.id] = state.cell
        return out

    def _where(self, c: Client, at_s: float, rate_bps: float) -> dict[str, Any]:
        """A moving device's transfer is billed with where it happened (the ledger's
        ``distance_m``, ``rate_bps``, ``cell``); a static device's with nothing more."""
        state = self.ctx.link_state(c, self.start_s + at_s)
        if state is None:
            return {}
        return {"distance_m": state.distance_m, "rate_bps": rate_bps, "cell": state.cell}

    def _outage(self, c: Client, direction: str, what: str, at_s: float) -> None:
        """A moving device's transfer in outage: recorded at no cost, with where it was."""
        where = self._where(c, at_s, 0.0)
        if where:
            self._record(
                self.rnd, node=c.node, side="device",
                kind="upload" if direction == "up" else "download", what=what,
                profile=c.profile.id, link=c.link_name, seconds=0.0, joules=0.0, at_s=at_s,
                outage=True, **where,
            )  # fmt: skip

    def download(
        self,
        payloads: Mapping[int, Payload],
        clients: Sequence[Client] | None = None,
        *,
        round_trip: bool = False,
    ) -> list[Client]:
        """Send each client its payloads; return the clients still taking part.

        ``clients`` defaults to every active participant; those on one link preset
        share its cell. A download in outage drops the client (``"outage"``); then
        ``engine.dropout_prob`` drops it (``"dropout"``). With ``round_trip`` (protocols
        that need the uplink throughout, like split learning) a client whose uplink is
        in outage this round is dropped before anything is sent.
        """
        self._open_devices()
        todo = [
            c for c in (self.active if clients is None else clients) if c.id not in self.dropped
        ]
        if round_trip:
            for c in todo:
                at = self._pre_s + self.clock_s(c)
                if self.ctx.transfer(
                    self.rnd, c, 1, direction="up", when_s=self.start_s + at
                ).outage:
                    self.drop(c, "outage")
            todo = [c for c in todo if c.id not in self.dropped]
        self._send(todo, payloads, "down")
        p = self.ctx.config.engine.dropout_prob
        for c in todo:
            if c.id not in self.dropped and self._dropout[c.id] < p:
                self.drop(c, "dropout")
        return [c for c in todo if c.id not in self.dropped]

    def compute(
        self,
        client: Client,
        work: Work | Sequence[Work],
        *,
        what: str,
        on: Literal["device", "server"] = "device",
    ) -> float:
        """``client``'s work on its device, or done for it on the server (``on="server"``:
        split learning's server side), in line on the client's clock. Returns its seconds."""
        self._open_devices()
        proc = client.profile if on == "device" else self.ctx.server
        cost = self.ctx.price(work, proc)
        at = self._advance(client, cost.latency_s)
        if on == "device":
            self._bill_compute(client.node, "device", proc, cost, what=what, at_s=at)
        else:
            self._bill_compute("server", "server", proc, cost, what=what, at_s=at)
        return cost.latency_s

    def exchange(self, streams: Mapping[int, Mapping[Stream, Sequence[int]]]) -> None:
        """Per-batch messages of split learning, for each client at once (they share their cells).

        ``streams[client][(direction, what)]`` lists one message size per batch. Every
        message of a client, direction and round sees the round's channel draw and pays
        the link's per-transfer latency; each stream is billed as one event. Callers
        admit clients with ``download(..., round_trip=True)``, so no message is in outage.
        """
        self._open_devices()
        by_id = {c.id: c for c in self.participants}
        clients = [by_id[cid] for cid in streams]
        split = shares(clients, self.cell_busy, self._serving(clients))
        for c in clients:
            for (direction, what), sizes in sorted(streams[c.id].items()):
                cache: dict[int, tuple[float, float, float]] = {}
                times: list[float] = []
                joules: list[float] = []
                at = self._pre_s + self.clock_s(c)  # a moving device: the stream's start
                lost = False
                for n in sizes:
                    if n not in cache:
                        res = self.ctx.transfer(
                            self.rnd, c, n, direction="up" if direction == "up" else "down",
                            share=split[c.id], when_s=self.start_s + at,
                        )  # fmt: skip
                        if res.outage and c.mobile is None:
                            raise RuntimeError(f"message in outage for {c.node}: admit it first")
                        lost = lost or res.outage
                        cache[n] = (res.time_s, res.energy_j, res.rate_bps)
                    times.append(cache[n][0])
                    joules.append(cache[n][1])
                if lost:  # a moving device drove out of coverage since it was admitted
                    self._outage(c, direction, what, at)
                    self.drop(c, "outage")
                    break
                if times:
                    self._bill_transfer(
                        c, direction, what, int(sum(sizes)), math.fsum(times), math.fsum(joules),
                        rate_bps=cache[sizes[-1]][2],
                    )  # fmt: skip

    def upload(
        self, payloads: Mapping[int, Payload], clients: Sequence[Client] | None = None
    ) -> list[Client]:
        """Collect each client's payloads; return the clients whose results count.

        ``clients`` defaults to every active participant. An upload in outage drops
        the client (``"outage"``); one that arrives after ``engine.deadline_s`` makes it
        a straggler (billed, not kept).
        """
        self._open_devices()
        todo = [
            c for c in (self.active if clients is None else clients) if c.id not in self.dropped
        ]
        self._send(todo, payloads, "up")
        for c in todo:
            if c.id not in self.dropped and self._late(c):
                self.drop(c, "straggler")
        return [c for c in todo if c.id not in self.dropped]

    def _still(self, clients: Sequence[Client] | None) -> list[Client]:
        return [
            c for c in (self.active if clients is None else clients) if c.id not in self.dropped
        ]

    def _late(self, client: Client) -> bool:
        return self.deadline_s is not None and self.clock_s(client) > self.deadline_s

    # -- turns -------------------------------------------------------------------------------
    def begin_turn(self, client: Client) -> bool:
        """Start ``client``'s turn when the server is free; False (a straggler that never
        starts) once the deadline has passed."""
        self._open_devices()
        start = max(self.clock_s(client), self._turn_free_s)
        if self.deadline_s is not None and start >= self.deadline_s:
            self.drop(client, "straggler")
            return False
        self._clock[client.id] = start
        return True

    def end_turn(self, client: Client) -> None:
        """The server is free for the next turn when ``client``'s clock says so."""
        self._turn_free_s = max(self._turn_free_s, self.clock_s(client))

    # -- edge servers (hierarchical schemes) -------------------------------------------------
    def _edge_start(self, clients: Sequence[Client]) -> float:
        """The edge serving ``clients`` starts when the last of them is done; they wait."""
        self._open_devices()
        self.barrier(clients)
        return self._pre_s + self.clock_s(clients[0])

    def edge_work(
        self,
        clients: Sequence[Client],
        work: Work | Sequence[Work],
        *,
        node: str,
        profile: DeviceProfile,
        what: str,
    ) -> float:
        """Work on the edge server ``node`` (``profile``) serving ``clients``, when the last of
        them is done (they wait for it). Returns its seconds; 0 without clients."""
        if not clients:
            return 0.0
        at = self._edge_start(clients)
        cost = self.ctx.price(work, profile)
        for c in clients:
            self._advance(c, cost.latency_s)
        self._bill_compute(node, "server", profile, cost, what=what, at_s=at)
        return cost.latency_s

    def backhaul(
        self,
        clients: Sequence[Client],
        num_bytes: int,
        *,
        link: Link,
        direction: Literal["up", "down"],
        node: str,
        profile: DeviceProfile,
        what: str,
    ) -> float:
        """``num_bytes`` between the edge server ``node`` serving ``clients`` and the cloud
        over ``link`` (``up``: to the cloud), when the last of them is done (they wait for
        it); billed to the edge. Returns its seconds; 0 without clients."""
        if not clients:
            return 0.0
        at = self._edge_start(clients)
        res = link.transfer(num_bytes, direction=direction)
        if res.outage:
            raise TinylargeError(f"{node}'s backhaul {link.preset.name!r} is in outage")
        for c in clients:
            self._advance(c, res.time_s)
        self._record(
            self.rnd,
            node=node,
            side="server",
            kind="upload" if direction == "up" else "download",
            what=what,
            profile=profile.id,
            link=link.preset.name,
            seconds=res.time_s,
            joules=res.energy_j,
            num_bytes=num_bytes,
            at_s=at,
        )
        return res.time_s

    # -- inference requests ------------------------------------------------------------------
    def serve(
        self,
        client: Client,
        legs: Mapping[tuple[str, str], tuple[float, float, int, int]],
        *,
        seconds: float,
        cloud: DeviceProfile | None = None,
        backhaul: str = "",
    ) -> None:
        """Bill ``client``'s inference requests of this round, one after another.

        ``legs[(leg, what)]`` sums ``(seconds, joules, macs, bytes)`` over the requests
        (see :mod:`tinylarge.inference.paths`): compute on the device, the edge server
        (``edge``) or the ``cloud``; transfers on the device's link (``uplink``,
        ``downlink``) or the edge-to-cloud ``backhaul``. ``seconds`` is the requests' total
        latency: the client's clock advances by it; the events are laid end to end.
        """
        self._open_devices()
        start = self._advance(client, seconds)
        at = start
        for (leg, what), (s, j, macs, nbytes) in sorted(legs.items()):
            if leg == "device":
                node, side, kind, prof, link = client.node, "device", "compute", client.profile, ""
            elif leg in ("edge", "cloud"):
                proc = self.ctx.server if leg == "edge" else cloud
                if proc is None:
                    raise ValueError("a cloud leg needs the cloud's profile")
                node, side, kind, prof, link = (
                    SERVER_NODES[leg], "server", "compute", proc, ""
                )  # fmt: skip
            elif leg in ("uplink", "downlink"):
                kind = "upload" if leg == "uplink" else "download"
                node, side, prof, link = client.node, "device", client.profile, client.link_name
            else:
                kind = "upload" if leg == "backhaul_up" else "download"
                node, side, prof, link = "server", "server", self.ctx.server, backhaul
            self._record(
                self.rnd,
                node=node,
                side=side,  # type: ignore[arg-type]
                kind=kind,  # type: ignore[arg-type]
                what=what,
                profile=prof.id,
                link=link,
                seconds=s,
                joules=j,
                macs=macs if kind == "compute" else 0,
                num_bytes=nbytes if kind != "compute" else 0,
                at_s=at,
            )
            at += s

    # -- the end -----------------------------------------------------------------------------
    def _close_devices(self) -> None:
        still = [self.clock_s(c) for c in self.participants if c.id not in self.dropped]
        # a turn-based round ends no earlier than its last turn (one that ended in a dropout
        # after its download still held the server)
        end = max([*still, self._turn_free_s])
        if self.deadline_s is not None and "straggler" in self.dropped.values():
            end = self.deadline_s
        # a moving device that lost its link is not heard from: the server waits for it until
        # the deadline (without one, a round everyone drove out of would take no time)
        lost = any(
            c.mobile is not None and self.dropped.get(c.id) == "outage" for c in self.participants
        )
        if self.deadline_s is not None and lost:
            end = max(end, self.deadline_s)
        self._device_end_s = end
        self._phase = "after"

    @property
    def latency_s(self) -> float:
        """Server work before + the device phase + server work after."""
        if self._phase == "devices":
            self._close_devices()
        return self._pre_s + self._device_end_s + self._post_s

    def report(self, *, train_loss: float | None = None) -> RoundReport:
        return RoundReport(
            latency_s=self.latency_s,
            participants=len(self.participants),
            dropped=dict(self.dropped),
            train_loss=train_loss,
            notes=dict(self.notes),
        )
