"""The round shared by the inference modes (cascade, early exit, split inference).

An inference mode is a scheme whose *rounds* are deployment cycles on the round
clock (:class:`tinylarge.sim.rounds.Round`):

1. the server trains the mode's models for ``training.local_epochs`` epochs on
   the training split (server work before the device phase: ``train-<role>``);
2. it predicts the validation split (``calibrate``) to fit temperatures and
   choose thresholds;
3. it pushes the device-side part to every serving device (``rd.download``:
   ``deploy``; devices on one link preset share its cell). A device whose
   download is in outage does not serve this round (``"outage"``); one that
   drops out after it (``engine.dropout_prob``) does not either (``"dropout"``);
4. the devices that got it serve the test set, each its share of it
   (``assignment: split``) or all of it (``replicate``, to compare links on the
   same samples), one request at a time. Every request is priced along its path
   (:func:`tinylarge.inference.paths.walk`: the context prices the computations,
   the device's :class:`~tinylarge.sim.context.RequestChannel` the transfers)
   and the round clock bills one ledger event per device, leg and label
   (``rd.serve``; the per-sample figures are in ``inference.csv``);
5. the same requests are priced, not billed, for the device-only and the
   server-only baselines.

So ``training.rounds`` is the number of training epochs (times
``local_epochs``) and every round also serves the test set once: the
summary's ``inference`` block, ``baselines`` and ``by_group`` describe the
final round's pass; the ledger holds every round. A round's simulated latency
is training + calibration + the slowest serving device's deployment and
requests (one after another). The requests of devices that did not serve are
counted by reason (``inference.unserved_requests``, devices in ``not_served``);
the figures describe the requests that were served.

A device whose device-side model does not fit (flash, SRAM) is not admitted
(:meth:`tinylarge.sim.context.Context.admit`: ``fits`` and ``excluded`` in
summary.json).
"""

from __future__ import annotations

import csv
import math
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from tinylarge.data.splits import stratified_split
from tinylarge.hardware.catalogue import DeviceProfile
from tinylarge.hardware.cost import ComputeCost, Infer, Train, Work
from tinylarge.hardware.fit import FitReport
from tinylarge.inference.paths import ExitPath, Figures, Leg, PriceFn, Walk, concat, figures, walk
from tinylarge.models.profiler import profile_model
from tinylarge.models.weights import Weights
from tinylarge.network.link import Link
from tinylarge.schemes._serving_tasks import (
    NetSpec,
    PredictTask,
    TrainTask,
    predict_net,
    train_net,
)
from tinylarge.schemes.base import Scheme
from tinylarge.schemes.options.inference import ServingOptions
from tinylarge.sim.context import Client, RequestChannel
from tinylarge.sim.rounds import Round, RoundReport
from tinylarge.sim.training import init_weights

SO = TypeVar("SO", bound=ServingOptions)
#: Why a device did not serve a round (the round clock's reasons before any request).
NOT_SERVED_REASONS: tuple[str, ...] = ("outage", "dropout")


# -- one device's requests ---------------------------------------------------------------------
@dataclass(frozen=True)
class DeviceServing:
    """One device's requests in one mode: exits taken, answers of every exit, the paths."""

    client: Client
    indices: np.ndarray
    exits: np.ndarray
    predictions: np.ndarray
    confidence: np.ndarray
    paths: tuple[ExitPath, ...]


@dataclass(frozen=True)
class Served:
    """One device's requests after the walk: their costs, the answers and which were right."""

    serving: DeviceServing
    walk: Walk
    prediction: np.ndarray
    correct: np.ndarray


def group_key(client: Client) -> str:
    """Device group label used in ``by_group``: ``profile/link``."""
    return f"{client.profile.id}/{client.link_name}"


class InferenceScheme(Scheme[SO]):
    """Base of the inference modes; subclasses define models, device fit, serving, baselines."""

    #: Cloud tier and edge-to-cloud backhaul (early exit sets them).
    cloud: DeviceProfile | None = None
    backhaul: Link | None = None
    #: Whether the mode needs validation logits each round (thresholds, temperatures).
    uses_validation: bool = True

    # -- hooks -------------------------------------------------------------------------------
    @abstractmethod
    def build_nets(self) -> dict[str, NetSpec]:
        """The networks the server trains, by role."""

    def exit_weights(self, role: str) -> tuple[float, ...]:
        return ()

    @abstractmethod
    def device_part(self) -> str:
        """What a device runs, for the admission error (``"the tiny model 'mlp'"``)."""

    @abstractmethod
    def device_fit(self, client: Client) -> FitReport:
        """Whether the device-side part fits ``client`` for inference."""

    @abstractmethod
    def deploy_bytes(self, client: Client) -> int:
        """Bytes of the device-side weights pushed to ``client``."""

    @abstractmethod
    def calibrate(self, val_logits: Mapping[str, np.ndarray], y_val: np.ndarray) -> None:
        """Fit temperatures / thresholds from the validation logits of every role."""

    @abstractmethod
    def serve(self, rnd: int, clients: Sequence[Client]) -> list[DeviceServing]:
        """The deployed mode's requests on each serving client."""

    @abstractmethod
    def baselines(self, served: Sequence[DeviceServing]) -> dict[str, list[DeviceServing]]:
        """``device_only`` and ``server_only`` versions of the same requests."""

    def extras(self) -> dict[str, Any]:
        return {}

    def mode_setup(self) -> None:
        """Subclass set-up after the networks and before the fit checks."""

    def mode_state(self) -> dict[str, Any]:
        return {}

    def load_mode_state(self, state: dict[str, Any]) -> None:
        return None

    # -- set-up ------------------------------------------------------------------------------
    def setup(self) -> None:
        ctx = self.ctx
        ds = ctx.dataset
        self.train_idx, self.val_idx = stratified_split(
            ds.y_train, test_fraction=self.options.val_fraction, rng=ctx.rng(-1, 31)
        )
        self.input_bytes = 4 * math.prod(ds.input_shape)
        self.result_bytes = 4 * ds.num_classes
        self.nets = self.build_nets()
        self.weights: dict[str, Weights] = {
            role: init_weights(net, seed=ctx.seed * 1000 + i)
            for i, (role, net) in enumerate(sorted(self.nets.items()))
        }
        self.opt_states: dict[str, dict[str, Any] | None] = dict.fromkeys(self.nets)
        self.train_profiles = {
            role: profile_model(
                net.build(),
                input_shape=ds.input_shape,
                name=role,
                dtype="fp32",
                train_batch_size=ctx.settings.batch_size,
                optimizer=ctx.settings.optimizer,
            )
            for role, net in self.nets.items()
        }
        self.mode_setup()
        self.fits = {c.id: self.device_fit(c) for c in ctx.clients}
        self.pool = ctx.admit(
            self.fits,
            what=f"run {self.device_part()} for inference",
            hint="choose a smaller model or larger devices",
        )
        n_test = len(ds.y_test)
        if self.options.assignment == "replicate":
            self.assigned = {c.id: np.arange(n_test) for c in self.pool}
        else:
            order = ctx.rng(-1, 32).permutation(n_test)
            chunks = np.array_split(order, len(self.pool))
            self.assigned = {c.id: np.sort(ch) for c, ch in zip(self.pool, chunks, strict=True)}
        self.last: dict[str, Any] = {}

    # -- one round ---------------------------------------------------------------------------
    def run_round(self, rnd: int) -> RoundReport:
        ctx = self.ctx
        rd = ctx.round(rnd, self.pool)
        loss = self._train(rd)
        val_logits = self._predict_val(rd) if self.uses_validation else {}
        self.calibrate(val_logits, ctx.dataset.y_train[self.val_idx])
        deployed = rd.download({c.id: [("deploy", self.deploy_bytes(c))] for c in rd.participants})
        plans = self.serve(rnd, deployed)
        backhaul = self.backhaul.preset.name if self.backhaul is not None else ""
        served = []
        for plan in plans:
            s = self._walk(rnd, plan, mode=0)
            seconds = float(s.walk.costs.latency_s.sum())
            rd.serve(
                plan.client, s.walk.by_what, seconds=seconds, cloud=self.cloud, backhaul=backhaul
            )
            served.append(s)
        base = {
            name: [self._walk(rnd, p, mode=1 + k) for p in group]
            for k, (name, group) in enumerate(sorted(self.baselines(plans).items()))
        }
        self.last = self._summarise(served, base, rd.dropped)
        self._write_samples(rnd, served)
        return rd.report(train_loss=loss)

    def _train(self, rd: Round) -> float | None:
        ctx = self.ctx
        roles = sorted(self.nets)
        tasks = [
            TrainTask(
                net=self.nets[role],
                weights=self.weights[role],
                indices=self.train_idx,
                settings=ctx.settings,
                seed=ctx.task_seed(rd.rnd, 900 + i),
                epochs=ctx.settings.epochs,
                opt_state=self.opt_states[role],
                exit_weights=self.exit_weights(role),
                threads=ctx.config.engine.threads,
            )
            for i, role in enumerate(roles)
        ]
        results = ctx.backend.map(train_net, tasks)
        for role, res in zip(roles, results, strict=True):
            self.weights[role] = res.weights
            self.opt_states[role] = res.opt_state
            rd.server(Train(self.train_profiles[role], res.samples), what=f"train-{role}")
        losses = [r.loss for r in results]
        return float(np.mean(losses)) if losses else None

    def _predict_val(self, rd: Round) -> dict[str, np.ndarray]:
        roles = sorted(self.nets)
        tasks = [
            PredictTask(net=self.nets[r], weights=self.weights[r], indices=self.val_idx)
            for r in roles
        ]
        logits = dict(zip(roles, self.ctx.backend.map(predict_net, tasks), strict=True))
        n = max(len(self.val_idx), 1)
        for role in roles:
            rd.server(Infer(self.train_profiles[role], batch=n, dtype="fp32"), what="calibrate")
        return logits

    # -- pricing requests --------------------------------------------------------------------
    def pricer(self, client: Client) -> PriceFn:
        """Prices of computations on ``client``'s path: its device, the edge server, the cloud."""
        nodes: dict[Leg, DeviceProfile | None] = {
            "device": client.profile,
            "edge": self.ctx.server,
            "cloud": self.cloud,
        }

        def price(leg: Leg, work: Work | Sequence[Work]) -> ComputeCost:
            node = nodes[leg]
            if node is None:
                raise ValueError(f"leg {leg!r} has no node to run on")
            return self.ctx.price(work, node)

        return price

    def path_energy_j(self, client: Client, paths: Sequence[ExitPath]) -> list[float]:
        """Device joules of one request along each path on the deterministic channel."""
        channel = RequestChannel(client.link, backhaul=self.backhaul)
        w = walk(
            np.arange(len(paths)),
            paths,
            transfer=channel,
            price=self.pricer(client),
            deterministic=True,
        )
        return [float(v) for v in w.costs.device_energy_j]

    def _walk(self, rnd: int, plan: DeviceServing, *, mode: int) -> Served:
        client = plan.client
        channel = self.ctx.request_channel(rnd, client, mode=mode, backhaul=self.backhaul)
        w = walk(
            plan.exits,
            plan.paths,
            transfer=channel,
            price=self.pricer(client),
            deterministic=channel.deterministic,
        )
        rows = np.arange(len(plan.indices))
        prediction = np.where(
            w.answered >= 0, plan.predictions[rows, np.maximum(w.answered, 0)], -1
        )
        correct = prediction == self.ctx.dataset.y_test[plan.indices]
        return Served(serving=plan, walk=w, prediction=prediction, correct=correct)

    # -- results -----------------------------------------------------------------------------
    @staticmethod
    def _figures(served: Sequence[Served]) -> Figures:
        correct = np.concatenate([s.correct for s in served]) if served else np.zeros(0, bool)
        return figures(correct=correct, costs=concat([s.walk.costs for s in served]))

    def _summarise(
        self, served: list[Served], base: dict[str, list[Served]], dropped: Mapping[int, str]
    ) -> dict[str, Any]:
        groups = sorted({group_key(s.serving.client) for s in served})
        by_group = {}
        for g in groups:
            entry = {"mode": self._figures([s for s in served if group_key(s.serving.client) == g])}
            for name, items in base.items():
                entry[name] = self._figures([s for s in items if group_key(s.serving.client) == g])
            by_group[g] = {k: v.to_dict() for k, v in entry.items()}
        not_served = {
            reason: sorted(cid for cid, why in dropped.items() if why == reason)
            for reason in NOT_SERVED_REASONS
        }
        unserved = {
            reason: int(sum(len(self.assigned[cid]) for cid in ids))
            for reason, ids in not_served.items()
        }
        return {
            "inference": {**self._figures(served).to_dict(), "unserved_requests": unserved},
            "baselines": {name: self._figures(items).to_dict() for name, items in base.items()},
            "by_group": by_group,
            "not_served": not_served,
        }

    def _write_samples(self, rnd: int, served: Sequence[Served]) -> None:
        """``inference.csv`` in the run directory: the latest round's requests, one per row."""
        if self.ctx.run_dir is None:
            return
        path = self.ctx.run_dir / "inference.csv"
        with path.open("w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(
                [
                    "round", "sample", "device", "profile", "link", "label", "prediction",
                    "correct", "exit", "offloaded", "outage", "confidence", "latency_s",
                    "device_energy_j", "bytes_up", "bytes_down",
                ]
            )  # fmt: skip
            y = self.ctx.dataset.y_test
            for s in served:
                c = s.serving.client
                costs = s.walk.costs
                lat, energy = costs.latency_s, costs.device_energy_j
                up, down = costs.leg("uplink")[3], costs.leg("downlink")[3]
                for i, idx in enumerate(s.serving.indices.tolist()):
                    out.writerow(
                        [
                            rnd, idx, c.id, c.profile.id, c.link_name, int(y[idx]),
                            int(s.prediction[i]), bool(s.correct[i]), int(s.walk.answered[i]),
                            bool(up[i] > 0), bool(s.walk.outage[i]),
                            repr(float(s.serving.confidence[i])), repr(float(lat[i])),
                            repr(float(energy[i])), int(up[i]), int(down[i]),
                        ]
                    )  # fmt: skip

    def evaluate(self) -> dict[str, float | None]:
        inf = self.last.get("inference", {})
        server = self.last.get("baselines", {}).get("server_only", {})
        answered = bool(inf.get("samples"))
        return {
            "accuracy": inf.get("accuracy") if answered else None,
            "loss": None,
            "large_accuracy": server.get("accuracy") if answered else None,
        }

    def summary_extras(self) -> dict[str, Any]:
        reports = [self.fits[c.id] for c in self.pool]
        return {
            **self.last,
            # the device-side part (tiny model, device stages, device partition), largest
            # over the serving devices: not the config's model
            "peak_sram_bytes": max((r.sram_bytes for r in reports), default=0),
            "flash_bytes": max((r.flash_bytes for r in reports), default=0),
            "serving_devices": len(self.pool),
            "per_sample_csv": "inference.csv",
            **self.extras(),
        }

    def state(self) -> dict[str, Any]:
        return {
            "weights": self.weights,
            "opt_states": self.opt_states,
            "last": self.last,
            "mode": self.mode_state(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.weights = state["weights"]
        self.opt_states = state["opt_states"]
        self.last = state["last"]
        self.load_mode_state(state["mode"])
