"""The round loop shared by the inference modes (cascade, early exit, split inference).

An inference mode is a scheme whose *rounds* are deployment cycles:

1. the server trains the mode's models for ``training.local_epochs`` epochs on
   the training split (billed to the server: ``train-<role>``);
2. it predicts the validation split (``calibrate``) to fit temperatures and
   choose thresholds;
3. it pushes the device-side part to every serving device (``deploy``);
4. the devices serve the test set, each its share of it (``assignment:
   split``) or all of it (``replicate``, to compare links on the same
   samples), one request at a time; every request's compute and transfers are
   costed per sample and billed as one ledger event per device, leg and label
   per round (the per-sample figures are in ``inference.csv``);
5. the same requests are costed, not billed, for the device-only and the
   server-only baselines.

So ``training.rounds`` is the number of training epochs (times
``local_epochs``) and every round also serves the test set once: the
summary's ``inference`` block, ``baselines`` and ``by_group`` describe the
final round's pass; the ledger holds every round. A round's simulated latency
is training + calibration + the slowest device's deployment and serving
(its requests one after another).

A device whose device-side model does not fit (flash, SRAM) does not serve and
is listed under ``excluded``; a device whose deployment download is in outage
does not serve that round (``not_served``).
"""

from __future__ import annotations

import csv
import math
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tinylarge.data.splits import stratified_split
from tinylarge.errors import TinylargeError
from tinylarge.hardware.catalogue import DeviceProfile
from tinylarge.hardware.cost import ComputeCost, inference_cost, training_cost
from tinylarge.hardware.fit import FitReport
from tinylarge.inference.paths import (
    LEGS,
    ExitPath,
    Figures,
    LinkTransfers,
    Walk,
    concat,
    figures,
    walk,
)
from tinylarge.inference.training import (
    NetSpec,
    PredictTask,
    TrainTask,
    init_weights,
    predict,
    train,
)
from tinylarge.models.profiler import profile_model
from tinylarge.network.link import Link
from tinylarge.schemes.base import RoundReport, Scheme
from tinylarge.sim.client import Weights
from tinylarge.sim.context import Client

#: Stream ids of the per-request channel draws (``ctx.rng(round, stream)``).
_STREAM_BASE = 40_000_000


class ServingOptions(BaseModel):
    """Options every inference mode shares."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    #: Share of the training set held out (stratified) to calibrate and choose thresholds.
    val_fraction: Annotated[float, Field(gt=0, lt=0.5)] = 0.1
    #: ``split``: the test set is dealt among the serving devices; ``replicate``: each
    #: device serves all of it (compare device groups and links on the same samples).
    assignment: Literal["split", "replicate"] = "split"


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
    serving: DeviceServing
    walk: Walk
    prediction: np.ndarray
    correct: np.ndarray


def group_key(client: Client) -> str:
    """Device group label used in ``by_group``: ``profile/link``."""
    return f"{client.profile.id}/{client.link_name}"


class InferenceScheme(Scheme):
    """Base of the inference modes; subclasses define models, device fit, serving, baselines."""

    #: Cloud tier and edge-to-cloud backhaul (early exit sets them).
    cloud: DeviceProfile | None = None
    backhaul: Link | None = None
    #: Whether the mode needs validation logits each round (thresholds, temperatures).
    uses_validation: bool = True

    # -- hooks ---------------------------------------------------------------
    @abstractmethod
    def build_nets(self) -> dict[str, NetSpec]:
        """The networks the server trains, by role."""

    def exit_weights(self, role: str) -> tuple[float, ...]:
        return ()

    @abstractmethod
    def device_fit(self, client: Client) -> FitReport:
        """Whether the device-side part fits ``client`` for inference."""

    @abstractmethod
    def deploy_bytes(self, client: Client) -> int:
        """Bytes of the device-side weights pushed to ``client``."""

    @abstractmethod
    def calibrate(self, rnd: int, val_logits: Mapping[str, np.ndarray], y_val: np.ndarray) -> None:
        """Fit temperatures / thresholds from the validation logits of every role."""

    @abstractmethod
    def serve(self, rnd: int, clients: Sequence[Client]) -> list[DeviceServing]:
        """The deployed mode's requests on each serving client."""

    @abstractmethod
    def baselines(
        self, rnd: int, served: Sequence[DeviceServing]
    ) -> dict[str, list[DeviceServing]]:
        """``device_only`` and ``server_only`` versions of the same requests."""

    def extras(self) -> dict[str, Any]:
        return {}

    def mode_state(self) -> dict[str, Any]:
        return {}

    def load_mode_state(self, state: dict[str, Any]) -> None:
        return None

    # -- set-up ----------------------------------------------------------------
    def setup(self) -> None:
        ctx = self.ctx
        opts = self.options
        assert isinstance(opts, ServingOptions)
        ds = ctx.dataset
        self.train_idx, self.val_idx = stratified_split(
            ds.y_train, test_fraction=opts.val_fraction, rng=ctx.rng(-1, 31)
        )
        self.input_bytes = 4 * math.prod(ds.input_shape)
        self.result_bytes = 4 * ds.num_classes
        self.nets = self.build_nets()
        self.weights: dict[str, Weights] = {
            role: init_weights(net, seed=ctx.seed * 1000 + i)
            for i, (role, net) in enumerate(sorted(self.nets.items()))
        }
        self.opt_states: dict[str, dict[str, Any] | None] = dict.fromkeys(self.nets)
        t = ctx.config.training
        optimizer = {"adam": "adam", "momentum": "sgd-momentum"}.get(t.optimizer, "sgd")
        self.train_profiles = {
            role: profile_model(
                net.build(),
                input_shape=ds.input_shape,
                name=role,
                train_batch_size=t.batch_size,
                optimizer=optimizer,
            )
            for role, net in self.nets.items()
        }
        self.mode_setup()
        self.fits = {c.id: self.device_fit(c) for c in ctx.clients}
        self.serving = [c for c in ctx.clients if self.fits[c.id].fits]
        if not self.serving:
            detail = "; ".join(
                sorted({f"{c.profile.id}: {self.fits[c.id].reason}" for c in ctx.clients})
            )
            raise TinylargeError(
                f"the device-side model of {self.name!r} fits no device of the topology "
                f"({detail}); choose a smaller model or larger devices"
            )
        n_test = len(ds.y_test)
        if opts.assignment == "replicate":
            self.assigned = {c.id: np.arange(n_test) for c in self.serving}
        else:
            order = ctx.rng(-1, 32).permutation(n_test)
            chunks = np.array_split(order, len(self.serving))
            self.assigned = {c.id: np.sort(ch) for c, ch in zip(self.serving, chunks, strict=True)}
        self.last: dict[str, Any] = {}

    def mode_setup(self) -> None:
        """Subclass set-up after the networks and before the fit checks."""

    # -- one round ---------------------------------------------------------------
    def run_round(self, rnd: int) -> RoundReport:
        ctx = self.ctx
        ds = ctx.dataset
        t_train, loss = self._train(rnd)
        val_logits, t_val = self._predict_val(rnd) if self.uses_validation else ({}, 0.0)
        self.calibrate(rnd, val_logits, ds.y_train[self.val_idx])
        deployed, deploy_s, not_served = self._deploy(rnd)
        plans = self.serve(rnd, deployed)
        served = [self._walk(rnd, p, mode=0, bill=True) for p in plans]
        base = {
            name: [self._walk(rnd, p, mode=1 + k, bill=False) for p in group]
            for k, (name, group) in enumerate(sorted(self.baselines(rnd, plans).items()))
        }
        serve_s = {s.serving.client.id: float(s.walk.costs.latency_s.sum()) for s in served}
        slowest = max((deploy_s[c] + serve_s.get(c, 0.0) for c in deploy_s), default=0.0)
        self.last = self._summarise(served, base, not_served)
        self._write_samples(rnd, served)
        return RoundReport(
            latency_s=t_train + t_val + slowest,
            participants=len(served),
            dropped=dict.fromkeys(not_served, "outage"),
            train_loss=loss,
        )

    def _train(self, rnd: int) -> tuple[float, float | None]:
        ctx = self.ctx
        roles = sorted(self.nets)
        tasks = [
            TrainTask(
                net=self.nets[role],
                weights=self.weights[role],
                indices=self.train_idx,
                settings=ctx.settings,
                seed=ctx.task_seed(rnd, 900 + i),
                epochs=ctx.settings.epochs,
                opt_state=self.opt_states[role],
                exit_weights=self.exit_weights(role),
                threads=ctx.config.engine.threads,
            )
            for i, role in enumerate(roles)
        ]
        results = ctx.backend.map(train, tasks)
        seconds = 0.0
        for role, res in zip(roles, results, strict=True):
            self.weights[role] = res.weights
            self.opt_states[role] = res.opt_state
            cost = training_cost(self.train_profiles[role], ctx.server, samples=res.samples)
            seconds += ctx.bill_server_compute(rnd, cost, what=f"train-{role}")
        losses = [r.loss for r in results]
        return seconds, float(np.mean(losses)) if losses else None

    def _predict_val(self, rnd: int) -> tuple[dict[str, np.ndarray], float]:
        ctx = self.ctx
        roles = sorted(self.nets)
        tasks = [
            PredictTask(net=self.nets[r], weights=self.weights[r], indices=self.val_idx)
            for r in roles
        ]
        logits = dict(zip(roles, ctx.backend.map(predict, tasks), strict=True))
        seconds = 0.0
        n = max(len(self.val_idx), 1)
        for role in roles:
            cost = inference_cost(self.train_profiles[role], ctx.server, dtype="fp32", batch=n)
            seconds += ctx.bill_server_compute(rnd, cost, what="calibrate")
        return logits, seconds

    def _deploy(self, rnd: int) -> tuple[list[Client], dict[int, float], list[int]]:
        ctx = self.ctx
        shares = ctx.shares(self.serving)
        ok: list[Client] = []
        seconds: dict[int, float] = {}
        lost: list[int] = []
        for c in self.serving:
            size = self.deploy_bytes(c)
            t, outage = (0.0, False)
            if size > 0:
                t, outage = ctx.transfer(
                    rnd, c, size, direction="down", what="deploy", share=shares[c.id]
                )
            if outage:
                lost.append(c.id)
                continue
            ok.append(c)
            seconds[c.id] = t
        return ok, seconds, lost

    def transfers_for(self, rnd: int, client: Client, *, mode: int) -> LinkTransfers:
        """The per-request channel of ``client`` in round ``rnd`` for mode ``mode``."""
        eng = self.ctx.config.engine
        base = _STREAM_BASE + client.id * 64 + mode * len(LEGS)
        return LinkTransfers(
            client.link,
            backhaul=self.backhaul,
            fading=eng.fading,
            shadowing=eng.shadowing,
            rngs={leg: self.ctx.rng(rnd, base + i) for i, leg in enumerate(LEGS)},
        )

    def path_energy_j(self, client: Client, paths: Sequence[ExitPath]) -> list[float]:
        """Device joules of one request along each path on the deterministic channel."""
        fn = LinkTransfers(client.link, backhaul=self.backhaul)
        w = walk(np.arange(len(paths)), paths, fn, deterministic=True)
        return [float(v) for v in w.costs.device_energy_j]

    def _walk(self, rnd: int, plan: DeviceServing, *, mode: int, bill: bool) -> Served:
        client = plan.client
        fn = self.transfers_for(rnd, client, mode=mode)
        w = walk(plan.exits, plan.paths, fn, deterministic=fn.deterministic)
        rows = np.arange(len(plan.indices))
        prediction = np.where(
            w.answered >= 0, plan.predictions[rows, np.maximum(w.answered, 0)], -1
        )
        correct = prediction == self.ctx.dataset.y_test[plan.indices]
        if bill:
            self._bill(rnd, client, w)
        return Served(serving=plan, walk=w, prediction=prediction, correct=correct)

    def _bill(self, rnd: int, client: Client, w: Walk) -> None:
        ctx = self.ctx
        for (leg, what), (s, j, macs, nbytes) in sorted(w.by_what.items()):
            cost = ComputeCost(macs=macs, latency_s=s, energy_j=j)
            if leg == "device":
                ctx.bill_device_compute(rnd, client, cost, what=what)
            elif leg == "edge":
                ctx.bill_server_compute(rnd, cost, what=what)
            elif leg == "cloud":
                assert self.cloud is not None
                ctx.bill_node_compute(rnd, cost, node="cloud", profile=self.cloud, what=what)
            elif leg in ("uplink", "downlink"):
                ctx.bill_transfer(
                    rnd,
                    client=client,
                    direction="up" if leg == "uplink" else "down",
                    what=what,
                    num_bytes=nbytes,
                    seconds=s,
                    joules=j,
                )
            else:
                assert self.backhaul is not None
                ctx.bill_transfer(
                    rnd,
                    direction="up" if leg == "backhaul_up" else "down",
                    what=what,
                    num_bytes=nbytes,
                    seconds=s,
                    joules=j,
                    link=self.backhaul.preset.name,
                )

    # -- results -------------------------------------------------------------------
    @staticmethod
    def _figures(served: Sequence[Served]) -> Figures:
        correct = np.concatenate([s.correct for s in served]) if served else np.zeros(0, bool)
        return figures(correct=correct, costs=concat([s.walk.costs for s in served]))

    def _summarise(
        self, served: list[Served], base: dict[str, list[Served]], not_served: list[int]
    ) -> dict[str, Any]:
        groups = sorted({group_key(s.serving.client) for s in served})
        by_group = {}
        for g in groups:
            entry = {"mode": self._figures([s for s in served if group_key(s.serving.client) == g])}
            for name, items in base.items():
                entry[name] = self._figures([s for s in items if group_key(s.serving.client) == g])
            by_group[g] = {k: v.to_dict() for k, v in entry.items()}
        return {
            "inference": self._figures(served).to_dict(),
            "baselines": {name: self._figures(items).to_dict() for name, items in base.items()},
            "by_group": by_group,
            "not_served": sorted(not_served),
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
        return {
            "accuracy": inf.get("accuracy"),
            "loss": None,
            "large_accuracy": server.get("accuracy"),
        }

    def summary_extras(self) -> dict[str, Any]:
        ctx = self.ctx
        fits: dict[str, bool] = {}
        excluded: dict[str, dict[str, Any]] = {}
        for c in ctx.clients:
            rep = self.fits[c.id]
            fits[c.profile.id] = fits.get(c.profile.id, True) and rep.fits
            if not rep.fits:
                entry = excluded.setdefault(c.profile.id, {"count": 0, "reason": rep.reason})
                entry["count"] += 1
        reports = [self.fits[c.id] for c in self.serving]
        return {
            **self.last,
            "fits": fits,
            "excluded": excluded,
            # the device-side part (tiny model, device stages, device partition), largest
            # over the serving devices: not the config's model
            "peak_sram_bytes": max((r.sram_bytes for r in reports), default=0),
            "flash_bytes": max((r.flash_bytes for r in reports), default=0),
            "serving_devices": len(self.serving),
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
