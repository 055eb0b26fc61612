"""The simulation context: the run's data, devices, server, ledger and backend, and its prices.

A scheme says what ran; the context prices it and bills the ledger. It owns:

- the run's data (:func:`tinylarge.data.task.load_task_data`), the configured
  model (:attr:`spec`) and its profile, the training settings;
- the fleet: one :class:`Client` per device (catalogue profile, link, its data);
- which devices take part (:meth:`admit`): every scheme checks its own
  device-side model against every device (flash, SRAM, training memory) and
  admits the ones that fit; the others are excluded with the reason, in one
  wording, and a run in which no device fits stops before it starts;
- prices: the seconds, joules and MACs of a piece of work on a node
  (:func:`tinylarge.hardware.cost.total_cost`) and of a transfer over a
  client's link under the run's channel (:meth:`transfer`, :meth:`request_channel`);
- the ledger every cost is billed to (:meth:`record`);
- randomness that depends only on (seed, round, stream), so a resumed run, any
  backend and any order of work draw the same numbers.

The round mechanics (sampling, downloads, compute, uploads, dropouts,
outages, cell sharing, deadlines, turns, server time) are the round clock's:
:mod:`tinylarge.sim.rounds`, reached through :meth:`round`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from tinylarge.config import ExperimentConfig
from tinylarge.data.dataset import Dataset, TextDataset
from tinylarge.data.partition import partition
from tinylarge.data.task import load_task_data
from tinylarge.errors import TinylargeError
from tinylarge.hardware.catalogue import DeviceProfile, get_device
from tinylarge.hardware.cost import ComputeCost, Train, Work, total_cost
from tinylarge.hardware.fit import FitReport, check_fit
from tinylarge.hardware.stacks import with_stack
from tinylarge.inference.paths import LEGS
from tinylarge.models.profile import ModelProfile
from tinylarge.models.profiler import profile_model
from tinylarge.models.weights import Weights
from tinylarge.models.zoo import ModelSpec
from tinylarge.network.coverage import LinkState, MobileLink
from tinylarge.network.link import Link, TransferResult
from tinylarge.network.mobility_config import StaticMobility
from tinylarge.sim.backends import Backend, make_backend
from tinylarge.sim.ledger import Event, Kind, Ledger, Side
from tinylarge.sim.rounds import Round, sample
from tinylarge.sim.selection import Feedback
from tinylarge.sim.training import TrainSettings, evaluate

if TYPE_CHECKING:
    from tinylarge.config import DeviceGroup
    from tinylarge.security.dp import PrivateAveraging
    from tinylarge.security.dpsgd_fleet import FleetDpSgd
    from tinylarge.sim.adversary import Adversary, Defense

Direction = Literal["up", "down"]
#: Node names of the server side.
SERVER, CLOUD = "server", "cloud"


@dataclass(frozen=True)
class Client:
    """One simulated device: its catalogue profile, its link and its share of the data."""

    id: int
    profile: DeviceProfile
    link_name: str
    link: Link
    indices: np.ndarray
    #: A moving device's link over simulated time (``mobility``); None: static at ``link``.
    mobile: MobileLink | None = None

    @property
    def node(self) -> str:
        return f"client-{self.id}"


class Context:
    """Clients, data, model spec, server, ledger, backend and prices of one run."""

    def __init__(self, config: ExperimentConfig, *, backend: str | None = None) -> None:
        self.config = config
        self.seed = config.seed
        task = config.task
        self.dataset: Dataset
        #: The raw texts of a text task (schemes with their own tokenizer read them), else None.
        self.text_dataset: TextDataset | None
        self.dataset, self.text_dataset = load_task_data(
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
        self._profiles: dict[tuple[Any, ...], ModelProfile] = {}
        #: The configured model's fp32 profile for training at the run's batch size.
        self.model_profile: ModelProfile = self.profile(self.spec)
        self.server: DeviceProfile = get_device(config.topology.server.profile)
        self.ledger = Ledger()
        #: Simulated seconds from the run's start to the current round's start (the engine
        #: sets it): where moving devices are when the round's transfers happen.
        self.round_start_s = 0.0
        self.clients = self._make_clients()
        #: Every device's verdict from :meth:`admit`: may it take part, and if not, why.
        self.verdicts: dict[int, FitReport] = {}
        self.backend_name = backend or config.engine.backend
        self._backend: Backend | None = None
        #: The run directory, set by the engine; schemes write artifacts here.
        self.run_dir: Path | None = None
        #: The run's attackers and their attack (``attack``) and robust rule (``defense``):
        #: :mod:`tinylarge.sim.adversary`; ``defense`` is set up by :meth:`average_privately`.
        self.adversary: Adversary | None = None
        from tinylarge.security.split_options import is_split_attack

        # an attack on split learning is the server's, run by the split schemes themselves
        if config.attack is not None and not is_split_attack(config.attack.name):
            from tinylarge.sim.adversary import Adversary, malicious_clients

            n = config.topology.num_devices
            self.adversary = Adversary(
                config.attack,
                malicious_clients(config, self.rng(-1, 61)),
                num_classes=self.spec.num_classes,
                input_shape=self.spec.input_shape,
                num_clients=config.training.per_round(n),
                num_devices=n,
                data_range=(float(self.dataset.x_train.min()), float(self.dataset.x_train.max())),
            )
        self.defense: Defense | None = None
        #: DP-FedAvg of this run (``privacy.dp``), set up by :meth:`average_privately`.
        self.privacy: PrivateAveraging | None = None
        #: DP-SGD on the devices (``privacy.dpsgd``), set up by :meth:`train_privately`.
        self.dpsgd: FleetDpSgd | None = None
        self._dpsgd_bytes: dict[tuple[Any, ...], int] = {}
        #: What the devices that trained reported, for ``training.selection: oort``
        #: (:class:`tinylarge.sim.selection.Feedback`; the FedAvg family fills it).
        self.feedback: Feedback | None = Feedback() if t.selection == "oort" else None

    # -- set-up ------------------------------------------------------------------------------
    def _make_clients(self) -> list[Client]:
        cfg = self.config
        ds = self.dataset
        parts = partition(
            cfg.task.partition.name,
            ds.y_train,
            num_clients=cfg.topology.num_devices,
            seed=cfg.seed,
            groups=ds.groups_train,
            **dict(cfg.task.partition.options),
        )
        clients: list[Client] = []
        for group in cfg.topology.devices:
            profile = get_device(group.profile)
            if group.stack is not None:
                profile = with_stack(profile, group.stack)
            link = Link.from_preset(group.link, distance_m=group.distance_m)
            for i in range(group.count):
                cid = len(clients)
                mobile = self._mobile_link(group, i, cid)
                at = link if mobile is None else mobile.at(0.0).link
                clients.append(Client(cid, profile, group.link, at, parts[cid], mobile))
        return clients

    def _mobile_link(self, group: DeviceGroup, index: int, cid: int) -> MobileLink | None:
        """Device ``index`` of ``group`` (client ``cid``) on the move, or None if static."""
        from tinylarge.network.coverage import Cell
        from tinylarge.network.mobility_config import is_moving
        from tinylarge.network.presets import PRESETS

        m = group.mobility
        if not is_moving(m):
            return None
        assert m is not None
        assert not isinstance(m, StaticMobility)
        topo = self.config.topology
        cells = [
            Cell(c.name, c.x_m, c.y_m, c.height_m)
            for c in topo.cells
            if c.links is None or group.link in c.links
        ] or [Cell("cell-0", 0.0, 0.0)]
        return MobileLink(
            PRESETS[group.link],
            m.trajectory(index=index, rng=np.random.default_rng([self.seed, cid, 70])),
            cells,
            seed_key=(self.seed, cid),
            period_s=topo.handover.period_s,
            hysteresis_db=topo.handover.hysteresis_db,
            los=m.los,
        )

    def link_state(self, client: Client, when_s: float) -> LinkState | None:
        """A moving ``client``'s link ``when_s`` simulated seconds after the run began (None:
        a static client)."""
        if client.mobile is None:
            return None
        return client.mobile.at(when_s)

    def profile(
        self, spec: ModelSpec, *, batch_size: int | None = None, optimizer: str | None = None
    ) -> ModelProfile:
        """fp32 profile of ``spec``'s model for training at ``batch_size`` with ``optimizer``
        (default: the run's), cached for the run."""
        bs = self.settings.batch_size if batch_size is None else batch_size
        opt = self.settings.optimizer if optimizer is None else optimizer
        options = repr(sorted(spec.options.items()))
        key = (spec.name, spec.input_shape, spec.num_classes, options, bs, opt)
        if key not in self._profiles:
            self._profiles[key] = profile_model(
                spec.build(),
                input_shape=spec.input_shape,
                name=spec.name,
                dtype="fp32",
                train_batch_size=bs,
                optimizer=opt,
            )
        return self._profiles[key]

    def training_fit(self, spec: ModelSpec, device: DeviceProfile) -> FitReport:
        """Whether ``device`` can train ``spec`` at the run's batch size and optimizer; under
        ``privacy.dpsgd``, with DP-SGD's per-sample gradients (:meth:`dpsgd_memory_bytes`)."""
        extra: tuple[tuple[str, int], ...] = ()
        if self.config.privacy.dpsgd is not None:
            extra = (("DP-SGD's per-sample gradients", self.dpsgd_memory_bytes(spec)),)
        return check_fit(self.profile(spec), device, training=True, train_extra=extra)

    def dpsgd_memory_bytes(self, spec: ModelSpec) -> int:
        """Bytes DP-SGD adds to training ``spec`` at the run's batch size: per-sample
        gradients, clipping norms, the clipped sum and the largest workspace
        (:func:`tinylarge.security.dpsgd.dpsgd_memory`). A Poisson batch larger than
        ``training.batch_size`` is taken as processed in chunks of that size, whose clipped
        sums add up to the same gradient (Opacus's ``BatchMemoryManager``). Refuses, in one
        line, a model Opacus cannot train (BatchNorm)."""
        key = (spec.name, spec.input_shape, spec.num_classes, repr(sorted(spec.options.items())))
        if key not in self._dpsgd_bytes:
            from tinylarge.security.dpsgd import check_supported, dpsgd_memory

            model = spec.build()
            check_supported(model)
            memory = dpsgd_memory(model, self.settings.batch_size, input_shape=spec.input_shape)
            self._dpsgd_bytes[key] = memory.total_bytes
        return self._dpsgd_bytes[key]

    # -- who takes part ----------------------------------------------------------------------
    def admit(
        self, verdicts: Mapping[int, FitReport], *, what: str, hint: str = ""
    ) -> list[Client]:
        """Record every device's verdict and return the devices that may take part.

        ``verdicts`` maps each client id to the scheme's fit check of its device-side
        model (``what`` names it: "train model 'mlp'", "run the int8 artifact"...).
        Devices that do not fit are excluded, with their reason, in ``summary.json``
        (``fits``, ``excluded``). If none fits, the run stops with one line naming every
        profile's reason and ``hint``.
        """
        self.verdicts = {c.id: verdicts[c.id] for c in self.clients}
        pool = [c for c in self.clients if self.verdicts[c.id].fits]
        if not pool:
            reasons = {c.profile.id: self.verdicts[c.id].reason for c in self.clients}
            detail = "; ".join(f"{pid}: {r}" for pid, r in sorted(reasons.items()))
            raise TinylargeError(
                f"no device of the topology can {what} ({detail})" + (f"; {hint}" if hint else "")
            )
        return pool

    def fits_summary(self) -> dict[str, Any]:
        """summary.json's ``fits`` (per profile: do all its devices fit) and ``excluded``
        (per profile: how many devices were left out, and why)."""
        fits: dict[str, bool] = {}
        excluded: dict[str, dict[str, Any]] = {}
        for c in self.clients:
            verdict = self.verdicts.get(c.id)
            ok = verdict is None or verdict.fits
            fits[c.profile.id] = fits.get(c.profile.id, True) and ok
            if verdict is not None and not verdict.fits:
                entry = excluded.setdefault(c.profile.id, {"count": 0, "reason": verdict.reason})
                entry["count"] += 1
        return {"fits": fits, "excluded": excluded}

    def average_privately(self, pool: Sequence[Client]) -> None:
        """Set up ``privacy.dp`` for a scheme that averages model updates over ``pool``: the
        round's :meth:`~tinylarge.sim.rounds.Round.protect` and
        :meth:`~tinylarge.sim.rounds.Round.aggregate` then clip and noise, and the engine
        reports epsilon. A no-op without ``privacy.dp``."""
        if self.config.defense is not None:
            from tinylarge.sim.adversary import Defense

            self.defense = Defense(
                self.config.defense, num_clients=self.config.training.per_round(len(pool))
            )
        dp = self.config.privacy.dp
        if dp is None:
            return
        from tinylarge.security.dp import private_averaging

        t = self.config.training
        self.privacy = private_averaging(
            dp,
            population=len(pool),
            per_round=self.config.training.per_round(len(pool)),
            sampling=t.sampling,
            fraction=t.fraction,
            rounds=t.rounds,
            distributed=self.config.privacy.secagg is not None,
        )

    def train_privately(self, pool: Sequence[Client]) -> None:
        """Set up ``privacy.dpsgd`` for a scheme whose devices in ``pool`` train through
        :func:`~tinylarge.sim.training.fit`: the noise multiplier (solved for a target
        epsilon), each device's Poisson rate and account. Then
        :attr:`dpsgd` holds the spec the scheme's fit tasks carry, :meth:`local_training`
        prices DP-SGD, :meth:`spend_privacy` composes the steps and the engine reports
        epsilon. Refuses a delta of 1/N or more for the pool's N records, and a model Opacus
        cannot train. A no-op without ``privacy.dpsgd``."""
        cfg = self.config.privacy.dpsgd
        if cfg is None:
            return
        from tinylarge.security.dpsgd_fleet import fleet_dpsgd

        self.dpsgd_memory_bytes(self.spec)  # refuses an unsupported layer
        t = self.config.training
        self.dpsgd = fleet_dpsgd(
            cfg,
            records={c.id: len(c.indices) for c in pool},
            batch_size=t.batch_size,
            epochs=t.local_epochs,
            rounds=t.rounds,
        )

    def local_training(self, examples: int, *, steps: int) -> Train:
        """A device's local training of the run's model, ``examples`` examples (with repeats)
        in ``steps`` optimizer steps, as work to price: backpropagation, or under
        ``privacy.dpsgd`` DP-SGD, whose per-sample gradients and clipping (per example) and
        noise (per step) raise the backward factor
        (:func:`tinylarge.security.dpsgd.dpsgd_backward_factor`)."""
        profile = self.model_profile
        if self.dpsgd is None or examples == 0:
            return Train(profile, examples)
        from tinylarge.security.dpsgd import dpsgd_backward_factor

        factor = dpsgd_backward_factor(profile, batch_size=examples, steps=steps)
        return Train(profile, examples, backward_factor=factor)

    def spend_privacy(self, steps: Mapping[int, int]) -> None:
        """Compose the DP-SGD steps each device took this round into its account
        (``privacy.dpsgd``). A no-op without it."""
        if self.dpsgd is not None:
            self.dpsgd.spend(steps)

    # -- backend -----------------------------------------------------------------------------
    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = make_backend(
                self.backend_name,
                self.dataset.x_train,
                self.dataset.y_train,
                address=self.config.engine.ray_address,
                workers=self.config.engine.workers,
            )
        return self._backend

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    # -- rounds ------------------------------------------------------------------------------
    def round(self, rnd: int, pool: Sequence[Client]) -> Round:
        """Round ``rnd`` on the round clock, with participants sampled from ``pool``."""
        return Round(self, rnd, sample(self, rnd, pool))

    # -- randomness --------------------------------------------------------------------------
    def rng(self, rnd: int, stream: int) -> np.random.Generator:
        """A generator that depends only on (seed, round, stream): resumable and order-free."""
        return np.random.default_rng([self.seed, rnd + 1, stream])

    def task_seed(self, rnd: int, client: int) -> int:
        """The seed of ``client``'s task in round ``rnd`` (server-side work: a client id
        outside the fleet, e.g. ``10**6``)."""
        return int(np.random.SeedSequence([self.seed, rnd + 1, 7, client]).generate_state(1)[0])

    # -- prices ------------------------------------------------------------------------------
    def price(self, work: Work | Sequence[Work], device: DeviceProfile) -> ComputeCost:
        """Seconds, joules and MACs of ``work`` on ``device`` (the compute cost model)."""
        return total_cost(work, device)

    def transfer(
        self,
        rnd: int,
        client: Client,
        num_bytes: int,
        *,
        direction: Direction,
        share: float = 1.0,
        when_s: float | None = None,
    ) -> TransferResult:
        """Moving ``num_bytes`` over ``client``'s link in round ``rnd`` (not billed).

        A static device's channel is block-faded over a round: every transfer of one
        client, round and direction sees the same fading and shadowing draw
        (``engine.fading``, ``engine.shadowing``), so a link is in outage for the whole
        round or not at all. A moving device's transfer sees the link of the moment it
        starts, ``when_s`` simulated seconds after the run began (default: the round's
        start; :meth:`link_state`), with its own draws, seeded from (seed, round, direction,
        client, start time).
        """
        eng = self.config.engine
        stream = 2 if direction == "down" else 3
        random = eng.fading or eng.shadowing  # a deterministic link needs no generator
        state = self.link_state(client, self.round_start_s if when_s is None else when_s)
        if state is not None:
            when = round(state.t_s * 1e6)  # the start time in microseconds keys the draw
            return state.link.transfer(
                num_bytes,
                rng=np.random.default_rng(
                    [self.seed, rnd + 1, stream * 1_000_003 + client.id, when]
                ),
                share=share,
                direction=direction,
                fading=eng.fading,
                shadowing=eng.shadowing,
            )
        return client.link.transfer(
            num_bytes,
            rng=self.rng(rnd, stream * 1_000_003 + client.id) if random else None,
            share=share,
            direction=direction,
            fading=eng.fading,
            shadowing=eng.shadowing,
        )

    def request_channel(
        self, rnd: int, client: Client, *, mode: int, backhaul: Link | None = None
    ) -> RequestChannel:
        """The channel ``client``'s inference requests of round ``rnd`` see (``mode``: which
        pass over the requests, so baselines draw their own): one fading draw per request."""
        eng = self.config.engine
        base = _REQUEST_STREAMS + client.id * 64 + mode * len(LEGS)
        state = self.link_state(client, self.round_start_s)  # moving: where the round finds it
        return RequestChannel(
            client.link if state is None else state.link,
            backhaul=backhaul,
            fading=eng.fading,
            shadowing=eng.shadowing,
            rngs={leg: self.rng(rnd, base + i) for i, leg in enumerate(LEGS)},
        )

    # -- billing -----------------------------------------------------------------------------
    def record(
        self,
        rnd: int,
        *,
        node: str,
        side: Side,
        kind: Kind,
        what: str,
        profile: str,
        seconds: float,
        joules: float,
        at_s: float,
        macs: int = 0,
        num_bytes: int = 0,
        link: str = "",
        distance_m: float = 0.0,
        rate_bps: float = 0.0,
        outage: bool = False,
        cell: str = "",
    ) -> None:
        """Bill one event to the ledger (the round clock calls this; schemes do not)."""
        self.ledger.record(
            Event(
                round=rnd,
                node=node,
                side=side,
                kind=kind,
                what=what,
                profile=profile,
                seconds=seconds,
                joules=joules,
                macs=macs,
                bytes=num_bytes,
                link=link,
                at_s=at_s,
                distance_m=distance_m,
                rate_bps=rate_bps,
                outage=outage,
                cell=cell,
            )
        )

    def root_update(self, base: Weights, rnd: int) -> tuple[Weights, int]:
        """FLTrust's reference: the global model trained by the server on its root data
        (``defense.root_samples`` training samples, drawn once per run), and how many samples
        it trained on. In process: the server's work, billed by the caller."""
        from tinylarge.sim.training import FitTask, fit

        assert self.config.defense is not None
        n = min(self.config.defense.root_samples, len(self.dataset.y_train))
        root = np.sort(self.rng(-1, 64).choice(len(self.dataset.y_train), size=n, replace=False))
        task = FitTask(
            client=10**6, round=rnd, seed=self.task_seed(rnd, 10**6), spec=self.spec,
            weights=base, indices=root, settings=self.settings,
        )  # fmt: skip
        res = fit(task, self.dataset.x_train, self.dataset.y_train)
        return res.weights, res.num_samples

    # -- evaluation --------------------------------------------------------------------------
    def evaluate(self, weights: Weights, spec: ModelSpec | None = None) -> tuple[float, float]:
        """Test accuracy and mean cross-entropy of ``spec``'s model (default: the config's)."""
        ds = self.dataset
        return evaluate(spec or self.spec, weights, ds.x_test, ds.y_test)

    def backdoor_success(self, weights: Weights) -> float:
        """The backdoor attack's success rate against the model ``weights``."""
        from tinylarge.sim.training import build, predict_logits

        assert self.adversary is not None
        ds = self.dataset
        model = build(self.spec, weights)
        return self.adversary.backdoor_success(
            lambda x: np.argmax(predict_logits(model, x), axis=1), ds.x_test, ds.y_test
        )


#: Stream ids of the per-request channel draws (``ctx.rng(round, stream)``).
_REQUEST_STREAMS = 40_000_000


class RequestChannel:
    """Prices one request's transfer on a leg (the device's access link or the backhaul).

    Deterministic (no fading, no shadowing): results are memoised per (leg,
    bytes). Otherwise each call draws from the leg's own generator, in call
    order, so a given (seed, round, device) always sees the same channel.
    Fading and shadowing apply to the access link only (the backhaul is wired).
    """

    _TRANSFERS: ClassVar[dict[str, tuple[bool, Direction]]] = {
        "uplink": (True, "up"),
        "downlink": (True, "down"),
        "backhaul_up": (False, "up"),
        "backhaul_down": (False, "down"),
    }

    def __init__(
        self,
        access: Link,
        *,
        backhaul: Link | None = None,
        fading: bool = False,
        shadowing: bool = False,
        rngs: Mapping[str, np.random.Generator] | None = None,
    ) -> None:
        self.access = access
        self.backhaul = backhaul
        self.fading = fading
        self.shadowing = shadowing
        self.rngs = dict(rngs or {})
        self.deterministic = not (fading or shadowing)
        self._memo: dict[tuple[str, int], TransferResult] = {}

    def __call__(self, leg: str, num_bytes: int) -> TransferResult:
        if self.deterministic and (leg, num_bytes) in self._memo:
            return self._memo[(leg, num_bytes)]
        access, direction = self._TRANSFERS[leg]
        link = self.access if access else self.backhaul
        if link is None:
            raise ValueError(f"leg {leg!r} needs a backhaul link")
        res = link.transfer(
            num_bytes,
            rng=self.rngs.get(leg),
            direction=direction,
            fading=self.fading and access,
            shadowing=self.shadowing and access,
        )
        if self.deterministic:
            self._memo[(leg, num_bytes)] = res
        return res


#: A request channel as the path walker sees it: ``(leg, bytes) -> TransferResult``.
TransferFn = Callable[[str, int], TransferResult]
