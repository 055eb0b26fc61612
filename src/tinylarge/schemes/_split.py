"""What split learning (sl) and SplitFed (fsl) share: options and a base scheme.

:class:`SplitScheme` plans the cut of every device group
(:mod:`tinylarge.orchestration.cut_planner`), admits the clients whose
device side fits (and whose link is not in outage), builds their split
training tasks (:mod:`tinylarge.schemes._split_task`), bills a client's turn
through the ledger (device and server compute, every smashed-data and
gradient message, the client-side model download and upload), evaluates the
deployed split model and reports the cut, fit and leakage per device profile.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from tinylarge.errors import TinylargeError
from tinylarge.hardware.cost import training_cost
from tinylarge.models.split import segment_of_tensors
from tinylarge.orchestration.cut_planner import GroupPlan, plan_topology
from tinylarge.orchestration.split_costs import (
    CutProfile,
    Objective,
    SplitSetup,
    cut_profiles,
    device_cost,
)
from tinylarge.schemes._split_task import SplitResult, SplitTask, evaluate_split
from tinylarge.schemes.base import Scheme
from tinylarge.security.leakage import leakage_by_cut
from tinylarge.sim.client import Weights, get_weights, set_weights
from tinylarge.sim.context import Client

#: Profiler optimizer name of each training optimizer.
PROFILER_OPTIMIZER = {"sgd": "sgd", "momentum": "sgd-momentum", "adam": "adam"}


class SplitOptions(BaseModel):
    """Options every split scheme takes."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    #: Cut index for every device (int), per device profile (mapping), or None: planned.
    cut: int | dict[str, int] | None = None
    #: What the planner minimises per device: round latency or round energy.
    objective: Literal["latency", "energy"] = "latency"
    #: Smashed-data compression (gradients travel at fp32).
    compression: Literal["fp32", "fp16", "int8"] = "fp32"
    #: Test samples the leakage (distance correlation) is measured on.
    leakage_samples: Annotated[int, Field(ge=2, le=4096)] = 256


class SplitScheme(Scheme):
    """Base of sl and fsl: cut planning, client admission, billing and reporting."""

    #: Smashed data of several clients crosses the same cell at once (SplitFed V1).
    parallel_messages = False
    #: Client-side models are downloaded and uploaded by all clients at once.
    parallel_sync = False

    @property
    def split_options(self) -> SplitOptions:
        assert isinstance(self.options, SplitOptions)
        return self.options

    @property
    def variant(self) -> str:
        return str(getattr(self.options, "variant", ""))

    @property
    def u_shaped(self) -> bool:
        return self.variant == "u-shaped"

    def split_setup(self) -> SplitSetup:
        s = self.ctx.settings
        return SplitSetup(
            spec=self.ctx.spec,
            batch_size=s.batch_size,
            epochs=s.epochs,
            optimizer=PROFILER_OPTIMIZER[s.optimizer],
            compression=self.split_options.compression,
            u_shaped=self.u_shaped,
            server=self.ctx.server,
        )

    def leakage_inputs(self) -> np.ndarray:
        return self.ctx.dataset.x_test[: self.split_options.leakage_samples]

    def leakage(self, weights: Weights, cuts: Sequence[int]) -> dict[int, float]:
        model = self.ctx.spec.build()
        set_weights(model, weights)
        return leakage_by_cut(model, self.leakage_inputs(), cuts)

    def plan(
        self,
        *,
        objective: Objective | None = None,
        device: str | None = None,
        link: str | None = None,
        distance_m: float | None = None,
    ) -> list[GroupPlan]:
        """Plan the cut of every device group (the initial seeded weights give the leakage)."""
        setup = self.split_setup()
        profiles = cut_profiles(setup)
        torch.manual_seed(self.ctx.seed)
        initial = get_weights(self.ctx.spec.build())
        leakage = self.leakage(initial, [cp.cut.index for cp in profiles])
        return plan_topology(
            self.ctx,
            setup,
            profiles,
            objective=objective or self.split_options.objective,
            forced=self.split_options.cut,
            parallel_messages=self.parallel_messages,
            parallel_sync=self.parallel_sync,
            leakage=leakage,
            device=device,
            link=link,
            distance_m=distance_m,
        )

    # -- Scheme ------------------------------------------------------------
    def setup(self) -> None:
        ctx = self.ctx
        if ctx.config.engine.deadline_s is not None and not self.parallel_messages:
            raise TinylargeError(
                f"engine.deadline_s is not supported by {ctx.config.scheme.name} "
                f"({self.variant}): the server trains clients in turn; remove it or use fsl v1"
            )
        self.groups = self.plan()
        self.cut_of: dict[int, CutProfile] = {}
        for gp in self.groups:
            for cid in gp.clients:
                if gp.chosen is not None:
                    self.cut_of[cid] = gp.chosen
        self.pool: list[Client] = [c for c in ctx.clients if c.id in self.cut_of]
        if not self.pool:
            detail = "; ".join(f"{gp.profile.id}: {gp.reason}" for gp in self.groups)
            raise TinylargeError(
                f"no device can train any device-side part of model {ctx.config.model.name!r} "
                f"({detail}); choose a smaller model, a smaller training.batch_size or sgd"
            )
        torch.manual_seed(ctx.seed)
        model = ctx.spec.build()
        self.weights: Weights = get_weights(model)
        self._segment = {cp.cuts: segment_of_tensors(model, cp.cuts) for cp in self.cut_of.values()}

    def device_mask(self, client: Client) -> list[bool]:
        """For each tensor of the model: held (and trained) by ``client``'s device."""
        return [seg % 2 == 0 for seg in self._segment[self.cut_of[client.id].cuts]]

    def task(self, rnd: int, client: Client, weights: Weights) -> SplitTask:
        return SplitTask(
            client=client.id,
            round=rnd,
            seed=self.ctx.task_seed(rnd, client.id),
            spec=self.ctx.spec,
            weights=weights,
            cuts=self.cut_of[client.id].cuts,
            compression=self.split_options.compression,
            indices=client.indices,
            settings=self.ctx.settings,
        )

    def admit(self, rnd: int, client: Client, draw: float, *, share: float) -> tuple[float, str]:
        """Check the client's channels, download its device-side model; (seconds, drop reason)."""
        ctx = self.ctx
        if ctx.link_outage(rnd, client, direction="up") or ctx.link_outage(
            rnd, client, direction="down"
        ):
            return 0.0, "outage"
        size = self.cut_of[client.id].device_state_bytes
        t, _ = ctx.transfer_messages(
            rnd, client, [size], direction="down", what="client-model", share=share
        )
        if draw < ctx.config.engine.dropout_prob:
            return t, "dropout"
        return t, ""

    def exchange(self, rnd: int, client: Client, result: SplitResult, *, share: float) -> float:
        """Bill a trained client's compute (device and server) and its messages; seconds."""
        ctx = self.ctx
        cp = self.cut_of[client.id]
        samples = result.num_samples * ctx.settings.epochs
        t = ctx.bill_device_compute(
            rnd, client, device_cost(cp, client.profile, samples=samples), what="split-train"
        )
        t += ctx.bill_server_compute(
            rnd, training_cost(cp.server, ctx.server, samples=samples), what="server-train"
        )
        for (direction, what), sizes in sorted(result.messages.items()):
            dt, _ = ctx.transfer_messages(
                rnd, client, sizes, direction=direction, what=what, share=share
            )
            t += dt
        return t

    def upload(self, rnd: int, client: Client, *, share: float) -> float:
        size = self.cut_of[client.id].device_state_bytes
        t, _ = self.ctx.transfer_messages(
            rnd, client, [size], direction="up", what="client-model", share=share
        )
        return t

    def evaluate(self) -> dict[str, float | None]:
        """Accuracy of the deployed split model, averaged over the devices' cuts."""
        ds = self.ctx.dataset
        counts: dict[tuple[int, ...], int] = {}
        for c in self.pool:
            cuts = self.cut_of[c.id].cuts
            counts[cuts] = counts.get(cuts, 0) + 1
        total = sum(counts.values())
        acc = loss = 0.0
        for cuts, k in sorted(counts.items()):
            a, lo = evaluate_split(
                self.ctx.spec,
                self.weights,
                cuts,
                self.split_options.compression,
                ds.x_test,
                ds.y_test,
            )
            acc += k / total * a
            loss += k / total * lo
        return {"accuracy": acc, "loss": loss, "large_accuracy": None}

    def state(self) -> dict[str, Any]:
        return {"weights": self.weights}

    def load_state(self, state: dict[str, Any]) -> None:
        self.weights = state["weights"]

    def summary_extras(self) -> dict[str, Any]:
        """Per device profile: the cut, the device side's fit and leakage; leakage per cut."""
        all_cuts = [e.cut for e in self.groups[0].estimates]
        final = self.leakage(self.weights, all_cuts)
        profiles = [gp.profile.id for gp in self.groups]
        fits: dict[str, bool] = {}
        excluded: dict[str, dict[str, Any]] = {}
        cuts: dict[str, dict[str, Any]] = {}
        for gp in self.groups:
            pid = gp.profile.id
            fits[pid] = fits.get(pid, True) and gp.chosen is not None
            key = (
                pid if profiles.count(pid) == 1 else f"{pid}/{gp.link_name}/{gp.link.distance_m:g}m"
            )
            choice = gp.choice
            if gp.chosen is None or choice is None:
                entry = excluded.setdefault(pid, {"count": 0, "reason": gp.reason})
                entry["count"] += len(gp.clients)
                cuts[key] = {"cut": None, "fits": False, "reason": gp.reason}
                continue
            dev = gp.chosen.device
            cuts[key] = {
                "cut": choice.cut,
                "layer": choice.layer,
                "fits": True,
                "train_memory_bytes": dev.train_memory_bytes,
                "sram_bytes": gp.profile.sram_bytes,
                "flash_bytes": dev.flash_bytes,
                "peak_sram_bytes": dev.peak_sram_bytes,
                "params": dev.params,
                "leakage": final[choice.cut],
                "planned_latency_s": choice.latency_s,
                "planned_energy_j": choice.energy_j,
            }
        used = [self.cut_of[c.id].device for c in self.pool]
        return {
            "variant": self.variant,
            "compression": self.split_options.compression,
            "objective": self.split_options.objective,
            "fits": fits,
            "excluded": excluded,
            "cuts": cuts,
            "leakage": {str(k): v for k, v in final.items()},
            "peak_sram_bytes": max(d.peak_sram_bytes for d in used),
            "flash_bytes": max(d.flash_bytes for d in used),
            "train_memory_bytes": max(d.train_memory_bytes or 0 for d in used),
            "params": max(d.params for d in used),
        }
