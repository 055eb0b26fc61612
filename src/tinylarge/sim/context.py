"""The simulation context: who the clients are, and the round mechanics that bill.

Schemes ask the context to train, transfer and evaluate; the context does the
work through the backend and records every computation and transfer in the
:class:`~tinylarge.sim.ledger.Ledger`. It owns the simulated clock of a round:
a participant's finish time is its download time plus its training time plus
its upload time; a synchronous round ends when the last participant arrives
(or at the deadline, where stragglers are dropped), plus server aggregation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinylarge.config import ExperimentConfig
from tinylarge.data import TEXT_DATASETS, Dataset, TextDataset, load_dataset, load_text_dataset
from tinylarge.data.partition import partition
from tinylarge.errors import TinylargeError
from tinylarge.hardware.catalogue import DeviceProfile, get_device
from tinylarge.hardware.cost import ComputeCost, macs_cost, training_cost
from tinylarge.hardware.fit import FitReport, check_fit
from tinylarge.models.profile import ModelProfile
from tinylarge.models.profiler import profile_model
from tinylarge.network.cell import equal_shares
from tinylarge.network.link import Link
from tinylarge.sim.backends import Backend, fit_many, make_backend
from tinylarge.sim.client import FitResult, FitTask, ModelSpec, TrainSettings, Weights
from tinylarge.sim.client import evaluate as evaluate_weights
from tinylarge.sim.ledger import Event, Ledger, Side


@dataclass
class Client:
    """One simulated device."""

    id: int
    profile: DeviceProfile
    link_name: str
    link: Link
    indices: np.ndarray
    fit: FitReport

    @property
    def node(self) -> str:
        return f"client-{self.id}"


@dataclass
class RoundOutcome:
    """What one synchronous federated round produced and cost."""

    results: list[FitResult]
    participants: list[int]
    dropped: dict[int, str] = field(default_factory=dict)
    latency_s: float = 0.0


def weights_nbytes(weights: Weights) -> int:
    return int(sum(np.asarray(w).nbytes for w in weights))


class Context:
    """Clients, data, model spec, server, ledger and backend of one run."""

    def __init__(self, config: ExperimentConfig, *, backend: str | None = None) -> None:
        self.config = config
        self.seed = config.seed
        task = config.task
        #: The raw texts of a text task (``task.dataset`` in ``TEXT_DATASETS``), else None.
        self.text_dataset: TextDataset | None = None
        if task.dataset in TEXT_DATASETS:
            # Zoo (tiny) models see hashed bag-of-words features of the texts; schemes
            # with their own tokenizer (ffm) read ``text_dataset``.
            from tinylarge.models.foundation import text_features_dataset

            self.text_dataset = load_text_dataset(
                task.dataset, data_dir=task.data_dir, subset=task.subset, seed=config.seed
            )
            self.dataset: Dataset = text_features_dataset(self.text_dataset)
        else:
            self.dataset = load_dataset(
                task.dataset, data_dir=task.data_dir, subset=task.subset, seed=config.seed
            )
        ds = self.dataset
        self.spec = ModelSpec(
            name=config.model.name,
            input_shape=tuple(ds.input_shape),
            num_classes=ds.num_classes,
            options=dict(config.model.options),
        )
        t = config.training
        self.settings = TrainSettings(
            epochs=t.local_epochs,
            batch_size=t.batch_size,
            lr=t.lr,
            optimizer=t.optimizer,
            momentum=t.momentum,
            weight_decay=t.weight_decay,
        )
        self.model_profile: ModelProfile = profile_model(
            self.spec.build(),
            input_shape=self.spec.input_shape,
            name=self.spec.name,
            dtype="fp32",
            train_batch_size=t.batch_size,
            optimizer="adam"
            if t.optimizer == "adam"
            else ("sgd-momentum" if t.optimizer == "momentum" else "sgd"),
        )
        self.server: DeviceProfile = get_device(config.topology.server.profile)
        self.ledger = Ledger()
        self.clients = self._make_clients()
        self.backend_name = backend or config.engine.backend
        self._backend: Backend | None = None
        #: The run directory, set by the engine; schemes write artifacts here.
        self.run_dir: Path | None = None

    # -- set-up ------------------------------------------------------------
    def _make_clients(self) -> list[Client]:
        cfg = self.config
        n = cfg.topology.num_devices
        ds = self.dataset
        parts = partition(
            cfg.task.partition.name,
            ds.y_train,
            num_clients=n,
            seed=cfg.seed,
            groups=ds.groups_train,
            **dict(cfg.task.partition.options),
        )
        clients: list[Client] = []
        for group in cfg.topology.devices:
            profile = get_device(group.profile)
            link = Link.from_preset(group.link, distance_m=group.distance_m)
            report = check_fit(self.model_profile, profile, training=True)
            for _ in range(group.count):
                cid = len(clients)
                clients.append(
                    Client(
                        id=cid,
                        profile=profile,
                        link_name=group.link,
                        link=link,
                        indices=parts[cid],
                        fit=report,
                    )
                )
        return clients

    def require_trainable_devices(self) -> None:
        """Raise a user error if no device can train the whole model (whole-model schemes)."""
        if any(c.fit.fits for c in self.clients):
            return
        reasons = {c.profile.id: c.fit.reason for c in self.clients}
        detail = "; ".join(f"{k}: {v}" for k, v in sorted(reasons.items()))
        raise TinylargeError(
            f"model {self.config.model.name!r} cannot be trained on any device of the topology "
            f"({detail}); choose a smaller model or a scheme for constrained devices (sl, fsl)"
        )

    @property
    def eligible(self) -> list[Client]:
        """Clients whose training memory fits: the others are excluded and reported."""
        return [c for c in self.clients if c.fit.fits]

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = make_backend(
                self.backend_name,
                self.dataset.x_train,
                self.dataset.y_train,
                address=self.config.engine.ray_address,
            )
        return self._backend

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    # -- randomness --------------------------------------------------------
    def rng(self, rnd: int, stream: int) -> np.random.Generator:
        """A generator that depends only on (seed, round, stream): resumable and order-free."""
        return np.random.default_rng([self.seed, rnd + 1, stream])

    def task_seed(self, rnd: int, client: int) -> int:
        return int(np.random.SeedSequence([self.seed, rnd + 1, 7, client]).generate_state(1)[0])

    # -- round mechanics ---------------------------------------------------
    def sample_clients(self, rnd: int, pool: Sequence[Client] | None = None) -> list[Client]:
        """Sample ``fraction`` of ``pool`` (default: eligible clients), at least ``min_clients``.

        Deterministic in (seed, round): resuming a run samples the same clients.
        """
        pool = list(self.eligible if pool is None else pool)
        t = self.config.training
        k = min(len(pool), max(t.min_clients, round(t.fraction * len(pool))))
        chosen = self.rng(rnd, 1).choice(len(pool), size=k, replace=False)
        return [pool[i] for i in sorted(chosen)]

    def shares(self, clients: Sequence[Client]) -> dict[int, float]:
        """Bandwidth share of each client: those on the same link preset share its cell."""
        by_link: dict[str, list[Client]] = {}
        for c in clients:
            by_link.setdefault(c.link_name, []).append(c)
        out: dict[int, float] = {}
        for group in by_link.values():
            for c, s in zip(group, equal_shares(len(group)), strict=True):
                out[c.id] = s
        return out

    def transfer(
        self,
        rnd: int,
        client: Client,
        num_bytes: int,
        *,
        direction: str,
        what: str,
        share: float = 1.0,
    ) -> tuple[float, bool]:
        """Move ``num_bytes`` over the client's link; bill it; return (seconds, outage)."""
        eng = self.config.engine
        stream = 2 if direction == "down" else 3
        res = client.link.transfer(
            num_bytes,
            rng=self.rng(rnd, stream * 1_000_003 + client.id),
            share=share,
            direction=direction,  # type: ignore[arg-type]
            fading=eng.fading,
            shadowing=eng.shadowing,
        )
        if res.outage:
            return 0.0, True
        self.bill_transfer(
            rnd,
            direction=direction,
            what=what,
            num_bytes=num_bytes,
            seconds=res.time_s,
            joules=res.energy_j,
            client=client,
        )
        return res.time_s, False

    def bill_training(self, rnd: int, client: Client, samples: int) -> float:
        """Bill local training of the run's model on ``samples`` samples; its seconds."""
        cost = training_cost(self.model_profile, client.profile, samples=samples)
        return self.bill_device_compute(rnd, client, cost, what="local-train")

    def bill_server(self, rnd: int, macs: int, *, what: str) -> float:
        """Bill ``macs`` of element-wise server work (aggregation); its seconds."""
        cost = macs_cost(macs, self.server, dtype="fp32", op="elementwise")
        return self.bill_server_compute(rnd, cost, what=what)

    def _bill_compute(
        self, rnd: int, cost: ComputeCost, *, node: str, side: Side, profile: str, what: str
    ) -> float:
        self.ledger.record(
            Event(
                round=rnd,
                node=node,
                side=side,
                kind="compute",
                what=what,
                profile=profile,
                seconds=cost.latency_s,
                joules=cost.energy_j,
                macs=cost.macs,
            )
        )
        return cost.latency_s

    def bill_device_compute(
        self, rnd: int, client: Client, cost: ComputeCost, *, what: str
    ) -> float:
        """Bill a computation on ``client`` (a :class:`ComputeCost` of its profile); its seconds."""
        return self._bill_compute(
            rnd, cost, node=client.node, side="device", profile=client.profile.id, what=what
        )

    def bill_server_compute(self, rnd: int, cost: ComputeCost, *, what: str) -> float:
        """Bill a computation on the server (a :class:`ComputeCost` of ``self.server``)."""
        return self._bill_compute(
            rnd, cost, node="server", side="server", profile=self.server.id, what=what
        )

    def _message_rng(self, rnd: int, client: Client, direction: str) -> np.random.Generator:
        stream = 6 if direction == "down" else 5
        return self.rng(rnd, stream * 1_000_003 + client.id)

    def link_outage(self, rnd: int, client: Client, *, direction: str) -> bool:
        """Whether the message channel of :meth:`transfer_messages` is in outage (not billed)."""
        eng = self.config.engine
        res = client.link.transfer(
            1,
            rng=self._message_rng(rnd, client, direction),
            direction=direction,  # type: ignore[arg-type]
            fading=eng.fading,
            shadowing=eng.shadowing,
        )
        return res.outage

    def transfer_messages(
        self,
        rnd: int,
        client: Client,
        sizes_bytes: Sequence[int],
        *,
        direction: str,
        what: str,
        share: float = 1.0,
    ) -> tuple[float, bool]:
        """Send several messages (one per training batch, say); bill one event; (seconds, outage).

        Split learning exchanges activations and gradients every batch. All the
        messages of one client, round and direction see one channel realisation
        (block fading over the round: one fading/shadowing draw from its own
        stream); each message pays the link's per-transfer latency. Bytes,
        seconds and joules are summed into one ledger event; an outage bills
        nothing and returns ``(0.0, True)``.
        """
        eng = self.config.engine
        cache: dict[int, tuple[float, float, bool]] = {}
        times: list[float] = []
        energies: list[float] = []
        for n in sizes_bytes:
            if n not in cache:
                res = client.link.transfer(
                    n,
                    rng=self._message_rng(rnd, client, direction),
                    share=share,
                    direction=direction,  # type: ignore[arg-type]
                    fading=eng.fading,
                    shadowing=eng.shadowing,
                )
                cache[n] = (res.time_s, res.energy_j, res.outage)
            t, e, outage = cache[n]
            if outage:
                return 0.0, True
            times.append(t)
            energies.append(e)
        if not times:
            return 0.0, False
        seconds = math.fsum(times)
        self.ledger.record(
            Event(
                round=rnd,
                node=client.node,
                side="device",
                kind="upload" if direction == "up" else "download",
                what=what,
                profile=client.profile.id,
                link=client.link_name,
                seconds=seconds,
                joules=math.fsum(energies),
                bytes=int(sum(sizes_bytes)),
            )
        )
        return seconds, False

    def bill_node_compute(
        self, rnd: int, cost: ComputeCost, *, node: str, profile: DeviceProfile, what: str
    ) -> float:
        """Bill a computation on a server-side ``node`` other than the server (a cloud tier)."""
        return self._bill_compute(
            rnd, cost, node=node, side="server", profile=profile.id, what=what
        )

    def bill_transfer(
        self,
        rnd: int,
        *,
        direction: str,
        what: str,
        num_bytes: int,
        seconds: float,
        joules: float,
        client: Client | None = None,
        node: str = "server",
        profile: DeviceProfile | None = None,
        link: str = "",
    ) -> None:
        """Bill transfers already costed with ``Link.transfer`` (e.g. summed over inferences).

        With ``client`` the event is the device's, on its link; otherwise it is
        ``node``'s on the server side (edge-to-cloud backhaul over ``link``).
        """
        self.ledger.record(
            Event(
                round=rnd,
                node=client.node if client is not None else node,
                side="device" if client is not None else "server",
                kind="upload" if direction == "up" else "download",
                what=what,
                profile=(client.profile if client is not None else profile or self.server).id,
                link=client.link_name if client is not None else link,
                seconds=seconds,
                joules=joules,
                bytes=num_bytes,
            )
        )

    def federated_round(
        self,
        rnd: int,
        weights: Weights,
        *,
        trainer: str = "erm",
        trainer_options: dict[str, float] | None = None,
    ) -> RoundOutcome:
        """One synchronous round: broadcast, local training, upload; billed and timed.

        A participant can drop out at random (``engine.dropout_prob``, after the
        download), lose its link (outage), or arrive after ``engine.deadline_s``
        (a straggler: its work is billed, its update discarded).
        """
        eng = self.config.engine
        participants = self.sample_clients(rnd)
        shares = self.shares(participants)
        size = weights_nbytes(weights)
        dropped: dict[int, str] = {}
        elapsed: dict[int, float] = {}
        drop_draw = self.rng(rnd, 4).random(len(participants))
        active: list[Client] = []
        for c, u in zip(participants, drop_draw, strict=True):
            t_down, outage = self.transfer(
                rnd, c, size, direction="down", what="weights", share=shares[c.id]
            )
            if outage:
                dropped[c.id] = "outage"
            elif u < eng.dropout_prob:
                dropped[c.id] = "dropout"
            else:
                elapsed[c.id] = t_down
                active.append(c)
        tasks = [
            FitTask(
                client=c.id,
                round=rnd,
                seed=self.task_seed(rnd, c.id),
                spec=self.spec,
                weights=weights,
                indices=c.indices,
                settings=self.settings,
                trainer=trainer,
                trainer_options=dict(trainer_options or {}),
            )
            for c in active
        ]
        results = fit_many(self.backend, tasks)
        up_shares = self.shares(active)
        kept: list[FitResult] = []
        for c, r in zip(active, results, strict=True):
            t = elapsed[c.id] + self.bill_training(rnd, c, r.num_samples * self.settings.epochs)
            t_up, outage = self.transfer(
                rnd,
                c,
                weights_nbytes(r.weights),
                direction="up",
                what="weights",
                share=up_shares[c.id],
            )
            t += t_up
            if outage:
                dropped[c.id] = "outage"
            elif eng.deadline_s is not None and t > eng.deadline_s:
                dropped[c.id] = "straggler"
            else:
                kept.append(r)
            elapsed[c.id] = t
        arrivals = [elapsed[r.client] for r in kept]
        end = max(arrivals, default=0.0)
        if eng.deadline_s is not None and any(v == "straggler" for v in dropped.values()):
            end = eng.deadline_s
        num_params = sum(int(np.asarray(w).size) for w in weights)
        end += self.bill_server(rnd, num_params * max(len(kept), 1), what="aggregate")
        return RoundOutcome(
            results=kept,
            participants=[c.id for c in participants],
            dropped=dropped,
            latency_s=end,
        )

    def evaluate(self, weights: Weights) -> tuple[float, float]:
        ds = self.dataset
        return evaluate_weights(self.spec, weights, ds.x_test, ds.y_test)

    def fits_by_profile(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for c in self.clients:
            out[c.profile.id] = {"fits": c.fit.fits, "reason": c.fit.reason}
        return out
