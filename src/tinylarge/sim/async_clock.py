"""The asynchronous clock: clients train and report at their own pace (FedBuff, FedAsync).

The synchronous round clock (:mod:`tinylarge.sim.rounds`) waits for its last
participant. Here the server keeps ``concurrency`` devices training at once and
reacts to each upload as it arrives; a scheme decides when arrivals make a new
server model (FedBuff: every ``K``; FedAsync: each one). It is another clock over
the same events:

- **A job** is one device's download -> local training -> upload, priced and
  billed by a :class:`~tinylarge.sim.rounds.Round` of the devices dispatched at one
  instant (so downloads, compute, uploads, ``engine.dropout_prob``, outages under
  ``engine.fading``/``engine.shadowing`` mean what they mean in synchronous rounds).
  Each dispatch has its own index, which seeds its draws and its devices' training.
- **Cells**: devices dispatched together share their link's cell with each other
  and with the devices of the same link preset still in flight (a device's share is
  fixed when it is dispatched: ``1 / (in flight on its link)``).
- **Dispatch**: whenever slots are free, the server picks that many idle devices
  uniformly at random (deterministic in seed and dispatch index) and sends them the
  current model. A device whose job failed (outage, dropout) is not picked again at
  the same instant.
- **Ties**: every upload arriving at one instant is taken in before any device is
  dispatched, so devices that finish together all see the next model.
- **Server updates** close the metric rounds: the engine's round ``r`` is the time
  from server update ``r - 1`` to server update ``r`` (aggregation included); its
  latency is that interval, and ``total_latency_s`` the time of the last update.
- **Billing**: each event is billed to the round during which it *starts*, with
  ``at_s`` from that round's start; a job in flight spans rounds, so an event may
  end after its round does. Work that had not started when the run ended is never
  billed; work in progress then is billed whole.

With ``concurrency`` equal to the clients a round, a buffer of as many, devices that
all finish at once and a server step of 1, this clock reproduces the synchronous
round exactly: the same devices (``sample``'s draw), the same downloads, training,
uploads and latencies (tests/schemes/test_async.py).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tinylarge.errors import TinylargeError
from tinylarge.hardware.cost import Work
from tinylarge.models.weights import Weights, nbytes
from tinylarge.sim.rounds import Round, RoundReport
from tinylarge.sim.training import FitResult

if TYPE_CHECKING:
    from tinylarge.sim.context import Client, Context

#: ``train(dispatch_index, clients, weights) -> {client id: result}``: the scheme's local training.
TrainFn = Callable[[int, Sequence["Client"], Weights], dict[int, FitResult]]
#: The sampling stream of a dispatch (the synchronous ``sample``'s).
_SAMPLE_STREAM = 1
#: Dispatches at one instant that may all fail before the run gives up.
MAX_RETRIES = 64


@dataclass
class Job:
    """One device's download, training and upload, dispatched at ``start_s``."""

    client: int
    #: Server model version it trained from (server updates before its download).
    version: int
    start_s: float
    #: When its upload arrived, or when it failed.
    end_s: float
    #: ``"arrived"``, or why it failed: ``"outage"``, ``"dropout"``.
    fate: str
    result: FitResult | None = None


@dataclass(frozen=True)
class Arrival:
    """An upload the server has received: the job and the model it trained from."""

    job: Job
    base: Weights
    #: Server updates since the job's download.
    staleness: int

    @property
    def result(self) -> FitResult:
        assert self.job.result is not None
        return self.job.result


@dataclass
class _Pending:
    """Billed events not yet due: ``ctx.record`` keyword arguments, ``at_s`` absolute."""

    events: list[dict[str, Any]] = field(default_factory=list)

    def collector(self, offset_s: float) -> Callable[..., None]:
        def bill(rnd: int, **event: Any) -> None:
            event["at_s"] = offset_s + event["at_s"]
            self.events.append(event)

        return bill


class AsyncClock:
    """Dispatches jobs to the admitted ``pool`` and delivers their uploads in time order."""

    def __init__(
        self, ctx: Context, pool: Sequence[Client], *, concurrency: int, train: TrainFn
    ) -> None:
        self.ctx = ctx
        self.pool = list(pool)
        self.concurrency = max(1, min(concurrency, len(self.pool)))
        self.train = train
        self.now_s = 0.0
        self.round_start_s = 0.0
        self.dispatches = 0
        self.jobs: list[Job] = []
        #: The model each version in flight trained from.
        self.bases: dict[int, Weights] = {}
        self._pending = _Pending()
        self._cooldown: set[int] = set()
        self._by_id = {c.id: c for c in self.pool}
        #: Devices that left this metric round, and why (outage, dropout, stale).
        self.dropped: dict[int, str] = {}

    # -- dispatch ----------------------------------------------------------------------------
    def _dispatch(self, weights: Weights, version: int) -> None:
        """Fill the free slots at ``now_s`` with idle devices, each sent ``weights``."""
        busy = {j.client for j in self.jobs}
        idle = [c for c in self.pool if c.id not in busy and c.id not in self._cooldown]
        slots = self.concurrency - len(self.jobs)
        if slots <= 0 or not idle:
            return
        idx = self.dispatches
        self.dispatches += 1
        chosen = self.ctx.rng(idx, _SAMPLE_STREAM).choice(
            len(idle), size=min(slots, len(idle)), replace=False
        )
        batch = [idle[i] for i in sorted(chosen)]
        in_flight = Counter(self._by_id[j.client].link_name for j in self.jobs)
        bill = self._pending.collector(self.now_s)
        rd = Round(self.ctx, idx, batch, bill=bill, cell_busy=in_flight)
        rd.start_s = self.now_s  # its clock starts at the dispatch: where moving devices are
        active = rd.download({c.id: [("weights", nbytes(weights))] for c in batch})
        results = self.train(idx, active, weights) if active else {}
        for c in active:
            r = results[c.id]
            rd.compute(c, self.ctx.local_training(r.examples, steps=r.steps), what="local-train")
        rd.upload({c.id: [("weights", nbytes(results[c.id].weights))] for c in active})
        self.bases[version] = weights
        for c in batch:
            self.jobs.append(
                Job(
                    client=c.id,
                    version=version,
                    start_s=self.now_s,
                    end_s=self.now_s + rd.clock_s(c),
                    fate=rd.dropped.get(c.id, "arrived"),
                    result=results.get(c.id) if c.id not in rd.dropped else None,
                )
            )

    # -- arrivals ----------------------------------------------------------------------------
    def next_arrival(self, weights: Weights, version: int) -> Arrival:
        """The next upload to arrive, the clock moved to its arrival; failed jobs on the way
        free their slots. ``weights`` (version ``version``) go to devices dispatched first."""
        retries = 0
        while True:
            due = [j for j in self.jobs if j.end_s <= self.now_s]
            if due:
                job = min(due, key=lambda j: (j.end_s, j.start_s, j.client))
                self.jobs.remove(job)
                if job.fate == "arrived":
                    base = self.bases[job.version]
                    self._forget_bases()
                    return Arrival(job, base, staleness=version - job.version)
                self.dropped[job.client] = job.fate
                self._cooldown.add(job.client)
                continue
            self._dispatch(weights, version)
            if not self.jobs:
                retries += 1
                if retries > MAX_RETRIES or not self._cooldown:
                    raise TinylargeError(
                        f"asynchronous clock: no device could complete a job after {retries} "
                        "dispatches at one instant (every admitted device in outage or "
                        "dropping out); check the links' distances and engine.dropout_prob"
                    )
                self._cooldown.clear()
                continue
            soonest = min(j.end_s for j in self.jobs)
            if soonest > self.now_s:
                self.now_s = soonest
                self._cooldown.clear()

    def discard(self, arrival: Arrival, reason: str) -> None:
        """An arrival the server does not use (``"stale"``: past the maximum staleness)."""
        self.dropped[arrival.job.client] = reason

    def _forget_bases(self) -> None:
        """Keep only the models that jobs in flight trained from."""
        versions = {j.version for j in self.jobs}
        for v in [v for v in self.bases if v not in versions]:
            del self.bases[v]

    # -- server updates ----------------------------------------------------------------------
    def server(self, work: Work | Sequence[Work], *, what: str = "aggregate") -> float:
        """Server work at ``now_s`` (the update's aggregation); the clock moves past it."""
        rd = Round(self.ctx, self.dispatches, [], bill=self._pending.collector(self.now_s))
        seconds = rd.server(work, what=what)
        self.now_s += seconds
        return seconds

    def close_round(
        self,
        rnd: int,
        *,
        participants: int,
        train_loss: float | None,
        notes: dict[str, Any] | None = None,
    ) -> RoundReport:
        """End metric round ``rnd`` at ``now_s``: bill every event that started in it."""
        due = [e for e in self._pending.events if e["at_s"] < self.now_s]
        self._pending.events = [e for e in self._pending.events if e["at_s"] >= self.now_s]
        for e in sorted(due, key=lambda e: e["at_s"]):
            self.ctx.record(rnd, **{**e, "at_s": max(0.0, e["at_s"] - self.round_start_s)})
        report = RoundReport(
            latency_s=self.now_s - self.round_start_s,
            participants=participants,
            dropped=dict(self.dropped),
            train_loss=train_loss,
            notes=dict(notes or {}),
        )
        self.round_start_s = self.now_s
        self.dropped = {}
        return report

    # -- resume ------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "now_s": self.now_s,
            "round_start_s": self.round_start_s,
            "dispatches": self.dispatches,
            "cooldown": sorted(self._cooldown),
            "pending": list(self._pending.events),
            "bases": {str(v): w for v, w in self.bases.items()},
            "jobs": [
                {
                    "client": j.client,
                    "version": j.version,
                    "start_s": j.start_s,
                    "end_s": j.end_s,
                    "fate": j.fate,
                    "result": None
                    if j.result is None
                    else {
                        "weights": j.result.weights,
                        "num_samples": j.result.num_samples,
                        "loss": j.result.loss,
                        "steps": j.result.steps,
                        "examples": j.result.examples,
                    },
                }
                for j in self.jobs
            ],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.now_s = float(state["now_s"])
        self.round_start_s = float(state["round_start_s"])
        self.dispatches = int(state["dispatches"])
        self._cooldown = set(state["cooldown"])
        self._pending.events = [dict(e) for e in state["pending"]]
        self.bases = {int(v): list(w) for v, w in state["bases"].items()}
        self.jobs = []
        for j in state["jobs"]:
            r = j["result"]
            result = (
                None
                if r is None
                else FitResult(
                    client=j["client"],
                    weights=list(r["weights"]),
                    num_samples=int(r["num_samples"]),
                    loss=float(r["loss"]),
                    steps=int(r["steps"]),
                    examples=int(r["examples"]),
                )
            )
            self.jobs.append(
                Job(j["client"], j["version"], j["start_s"], j["end_s"], j["fate"], result)
            )


def percentile(values: Sequence[int], q: float) -> float | None:
    """The ``q``-th percentile (0..100) of ``values`` by nearest rank, or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[rank - 1])
