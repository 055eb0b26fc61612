"""What split learning (sl) and SplitFed (fsl) share: the base scheme.

:class:`SplitScheme` plans the cut of every device group
(:mod:`tinylarge.schemes._split_plan`, also behind ``tinylarge plan``; what a
cut costs in :mod:`tinylarge.schemes._split_costs`), admits the devices whose
planned device side fits, builds their split training tasks
(:mod:`tinylarge.schemes._split_task`), says what a client's turn ran (the
device and server training, the client-side model each way) for the round
clock to bill, evaluates the deployed split model and reports the cut and
leakage per device profile. The rounds themselves are the subclasses'.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence
from functools import cached_property
from typing import Any, TypeVar

import torch

from tinylarge.errors import TinylargeError
from tinylarge.models.cuts import segment_of_tensors
from tinylarge.models.weights import Weights, get_weights, set_weights
from tinylarge.schemes._split_costs import (
    CutProfile,
    Objective,
    Sharing,
    SplitSetup,
    as_row,
    cut_profiles,
)
from tinylarge.schemes._split_plan import COLUMNS, GroupPlan, plan_groups
from tinylarge.schemes._split_task import SplitResult, SplitTask, evaluate_split
from tinylarge.schemes.base import Plan, PlanRequest, Scheme
from tinylarge.schemes.options.split import SplitOptions
from tinylarge.security.leakage import leakage_by_cut
from tinylarge.sim.context import Client
from tinylarge.sim.rounds import Payload, Round

SO = TypeVar("SO", bound=SplitOptions)
#: ``ctx.rng`` stream of the order in which clients take their turns.
TURN_STREAM = 11

#: What ``tinylarge plan`` says the figures of a row are.
PLAN_NOTE = (
    "latency_s, energy_j, bytes: one round of one device (download and upload of the "
    "device-side model, smashed data up and gradients down every batch); leakage: distance "
    "correlation between inputs and smashed data at the initial weights (1 = raw data)"
)


class SplitScheme(Scheme[SO]):
    """Base of sl and fsl: cut planning, admission, what a turn runs, and reporting."""

    @property
    @abstractmethod
    def variant(self) -> str:
        """The scheme's variant (``scheme.options.variant``)."""

    @property
    def u_shaped(self) -> bool:
        """Labels and the last layers stay on the device."""
        return False

    @property
    def sharing(self) -> Sharing:
        """Which transfers of a device share its cell with the round's other devices."""
        return Sharing()

    # -- the cut plan ------------------------------------------------------------------------
    def split_setup(self) -> SplitSetup:
        s = self.ctx.settings
        return SplitSetup(
            spec=self.ctx.spec,
            batch_size=s.batch_size,
            epochs=s.epochs,
            optimizer=s.optimizer,
            compression=self.options.compression,
            u_shaped=self.u_shaped,
            server=self.ctx.server,
        )

    def leakage(self, weights: Weights, cuts: Sequence[int]) -> dict[int, float]:
        """Distance correlation of the test inputs with the smashed data at each cut."""
        model = self.ctx.spec.build()
        set_weights(model, weights)
        return leakage_by_cut(model, self.ctx.dataset.x_test[: self.options.leakage_samples], cuts)

    @cached_property
    def cut_figures(self) -> tuple[SplitSetup, list[CutProfile], dict[int, float]]:
        """The setup, every cut's profile and its leakage at the seeded initial weights."""
        setup = self.split_setup()
        profiles = cut_profiles(setup)
        torch.manual_seed(self.ctx.seed)
        initial = get_weights(self.ctx.spec.build())
        return setup, profiles, self.leakage(initial, [cp.cut.index for cp in profiles])

    def plan_groups(
        self,
        *,
        objective: Objective | None = None,
        device: str | None = None,
        link: str | None = None,
        distance_m: float | None = None,
    ) -> list[GroupPlan]:
        """Plan the cut of every device group (optionally one device, link or distance)."""
        setup, profiles, leakage = self.cut_figures
        return plan_groups(
            self.ctx,
            setup,
            profiles,
            objective=objective or self.options.objective,
            forced=self.options.cut,
            sharing=self.sharing,
            leakage=leakage,
            device=device,
            link=link,
            distance_m=distance_m,
        )

    def plan(self, request: PlanRequest) -> Plan:
        """``tinylarge plan``: every cut of every device group, the choice marked."""
        wanted = request.objective or self.options.objective
        if wanted not in ("latency", "energy"):
            raise TinylargeError(f"objective {wanted!r}: expected latency or energy")
        objective: Objective = "energy" if wanted == "energy" else "latency"
        rows: list[dict[str, Any]] = []
        notes: list[str] = []
        for d in request.sweep_distances_m or (request.distance_m,):
            for gp in self.plan_groups(
                objective=objective, device=request.device, link=request.link, distance_m=d
            ):
                rows.extend(as_row(e) for e in gp.estimates)
                notes.append(gp.note())
        cfg = self.ctx.config
        title = (
            f"{cfg.scheme.name} ({self.variant}) cut plan: {cfg.model.name} on "
            f"{cfg.task.dataset}, objective {objective}, smashed data {self.options.compression}"
        )
        return Plan(title=title, columns=COLUMNS, rows=tuple(rows), notes=(*notes, PLAN_NOTE))

    # -- Scheme ------------------------------------------------------------------------------
    def setup(self) -> None:
        ctx = self.ctx
        self.groups = self.plan_groups()
        self.cut_of: dict[int, CutProfile] = {
            cid: gp.chosen for gp in self.groups if gp.chosen is not None for cid in gp.clients
        }
        self.pool: list[Client] = ctx.admit(
            {cid: gp.verdict for gp in self.groups for cid in gp.clients},
            what=f"train any device-side part of model {ctx.config.model.name!r}",
            hint="choose a smaller model, a smaller training.batch_size or sgd",
        )
        torch.manual_seed(ctx.seed)
        model = ctx.spec.build()
        self.weights: Weights = get_weights(model)
        self._segment = {cp.cuts: segment_of_tensors(model, cp.cuts) for cp in self.cut_of.values()}

    # -- what a client's turn runs -----------------------------------------------------------
    def device_mask(self, client: Client) -> list[bool]:
        """For each tensor of the model: held (and trained) by ``client``'s device."""
        return [seg % 2 == 0 for seg in self._segment[self.cut_of[client.id].cuts]]

    def task(self, rnd: int, client: Client, weights: Weights) -> SplitTask:
        """``client``'s split training job of round ``rnd``, from ``weights``."""
        return SplitTask(
            client=client.id,
            round=rnd,
            seed=self.ctx.task_seed(rnd, client.id),
            spec=self.ctx.spec,
            weights=weights,
            cuts=self.cut_of[client.id].cuts,
            compression=self.options.compression,
            indices=client.indices,
            settings=self.ctx.settings,
        )

    def client_model(self, client: Client) -> Payload:
        """The device-side model ``client`` downloads and uploads each round."""
        return [("client-model", self.cut_of[client.id].device_state_bytes)]

    def train(self, rd: Round, client: Client, result: SplitResult) -> None:
        """Say what ``client``'s split training ran: its device side on the device, its
        server side on the server, in line on the client's clock (the messages are billed
        by the caller through :meth:`tinylarge.sim.rounds.Round.exchange`)."""
        cp = self.cut_of[client.id]
        samples = result.num_samples * self.ctx.settings.epochs
        rd.compute(client, cp.device_work(samples), what="split-train")
        rd.compute(client, cp.server_work(samples), what="server-train", on="server")

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
                self.ctx.spec, self.weights, cuts, self.options.compression, ds.x_test, ds.y_test
            )
            acc += k / total * a
            loss += k / total * lo
        return {"accuracy": acc, "loss": loss, "large_accuracy": None}

    def state(self) -> dict[str, Any]:
        return {"weights": self.weights}

    def load_state(self, state: dict[str, Any]) -> None:
        self.weights = list(state["weights"])

    def summary_extras(self) -> dict[str, Any]:
        """Per device profile: the cut, its device side and leakage; leakage per cut.

        ``fits`` and ``excluded`` come from the admission (:meth:`Context.fits_summary`).
        """
        all_cuts = [e.cut for e in self.groups[0].estimates]
        final = self.leakage(self.weights, all_cuts)
        profiles = [gp.profile.id for gp in self.groups]
        cuts: dict[str, dict[str, Any]] = {}
        for gp in self.groups:
            pid = gp.profile.id
            key = (
                pid if profiles.count(pid) == 1 else f"{pid}/{gp.link_name}/{gp.link.distance_m:g}m"
            )
            choice = gp.choice
            if gp.chosen is None or choice is None:
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
                "outage": choice.outage,
                "planned_latency_s": _finite(choice.latency_s),
                "planned_energy_j": _finite(choice.energy_j),
            }
        used = [self.cut_of[c.id].device for c in self.pool]
        return {
            "variant": self.variant,
            "compression": self.options.compression,
            "objective": self.options.objective,
            "cuts": cuts,
            "leakage": {str(k): v for k, v in final.items()},
            "peak_sram_bytes": max(d.peak_sram_bytes for d in used),
            "flash_bytes": max(d.flash_bytes for d in used),
            "train_memory_bytes": max(d.train_memory_bytes or 0 for d in used),
            "params": max(d.params for d in used),
        }


def _finite(value: float) -> float | None:
    """``value``, or None where the nominal link is in outage (no finite figure)."""
    return value if math.isfinite(value) else None


def mix(device_side: Weights, server_side: Weights, mask: Sequence[bool]) -> Weights:
    """Per tensor, ``device_side``'s where ``mask`` says a device holds it, else ``server_side``'s.

    >>> mix([1, 2, 3], [7, 8, 9], [True, False, True])
    [1, 8, 3]
    """
    return [d if m else s for d, s, m in zip(device_side, server_side, mask, strict=True)]
