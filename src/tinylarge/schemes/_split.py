"""What split learning (sl) and SplitFed (fsl) share: the base scheme.

:class:`SplitScheme` plans the cut of every device group
(:mod:`tinylarge.schemes._split_plan`, also behind ``tinylarge plan``; what a
cut costs in :mod:`tinylarge.schemes._split_costs`), admits the devices whose
planned device side fits, builds their split training tasks
(:mod:`tinylarge.schemes._split_task`), says what a client's turn ran (the
device and server training, the client-side model each way) for the round
clock to bill, evaluates the deployed split model and reports the cut and
leakage per device profile. The rounds themselves are the subclasses'.

Attacks on split learning and their defenses (``attack``, ``defense``:
:mod:`tinylarge.security.split_options`): a smashed-data guard (NoPeek, cut noise,
:mod:`tinylarge.security.nopeek`) rides in every client's training task and its extra
work is billed to the device (``defense-<name>`` in the ledger); the server's
model-inversion attack (:mod:`tinylarge.security.inversion`) runs after the last
round's training, on the final device side of every cut in use, billed to the server
(``inversion-attack``), and its scores go to the summary.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence
from functools import cached_property
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from tinylarge.data.contract import denormalize
from tinylarge.errors import TinylargeError
from tinylarge.hardware.cost import Infer, Train, Work
from tinylarge.models.cuts import segment_of_tensors, segments
from tinylarge.models.profiler import profile_model
from tinylarge.models.weights import Weights, get_weights, set_weights
from tinylarge.schemes._split_costs import (
    CutProfile,
    Objective,
    Sharing,
    SplitSetup,
    as_row,
    cut_profiles,
    guard_work,
)
from tinylarge.schemes._split_plan import COLUMNS, GroupPlan, plan_groups
from tinylarge.schemes._split_task import DeployedSplit, SplitResult, SplitTask, evaluate_split
from tinylarge.schemes.base import Plan, PlanRequest, Scheme, sweep_left_out
from tinylarge.schemes.options.split import SplitOptions
from tinylarge.security.leakage import leakage_by_cut
from tinylarge.security.nopeek import SmashedGuard, make_guard
from tinylarge.security.split_options import attack_options, is_split_attack, is_split_defense
from tinylarge.sim.context import Client
from tinylarge.sim.rounds import Payload, Round
from tinylarge.sim.training import build

SO = TypeVar("SO", bound=SplitOptions)
#: ``ctx.rng`` stream of the order in which clients take their turns.
TURN_STREAM = 11
#: ``ctx.rng(-1, INVERSION_STREAM)`` draws the server's auxiliary images for the inversion.
INVERSION_STREAM = 12
#: ``ctx.task_seed(-1, ...)`` of the guard noise at evaluation and in the inversion attack
#: (client ids outside any fleet).
EVAL_NOISE_CLIENT, ATTACK_CLIENT = 10**6 + 1, 10**6 + 2

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
            guard=self.guard,
        )

    @cached_property
    def guard(self) -> SmashedGuard | None:
        """The devices' defense of their smashed data (``defense: nopeek | cut-noise``)."""
        d = self.ctx.config.defense
        if d is None or not is_split_defense(d.name):
            return None
        return make_guard(d.name, dict(d.options))

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
        left_out: list[str] = []
        sweep = request.sweep_distances_m
        # A sweep plans each profile on its own, so a distance outside one group's link model
        # (Wi-Fi indoors at 300 m) leaves out that group only, and the plan says so.
        devices = (
            [request.device]
            if request.device is not None or not sweep
            else list(dict.fromkeys(g.profile for g in self.ctx.config.topology.devices))
        )
        for d in sweep or (request.distance_m,):
            for device in devices:
                try:
                    groups = self.plan_groups(
                        objective=objective, device=device, link=request.link, distance_m=d
                    )
                except TinylargeError as exc:
                    if not sweep:
                        raise  # one distance asked for: its error is the answer
                    left_out.append(f"{device} at {d:g} m ({exc})")
                    continue
                for gp in groups:
                    rows.extend(as_row(e) for e in gp.estimates)
                    notes.append(gp.note())
        notes += sweep_left_out(left_out, planned=bool(rows))
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
        #: The inversion attack's scores per cut (``{}`` until it has run).
        self.inversion: dict[str, dict[str, Any]] = {}
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
            guard=self.guard,
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
        if self.guard is not None:
            work = guard_work(cp, self.split_setup(), result.num_samples)
            rd.compute(client, work, what=f"defense-{self.guard.name}")
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
                self.ctx.spec, self.weights, cuts, self.options.compression, ds.x_test, ds.y_test,
                guard=self.guard, seed=self.ctx.task_seed(-1, EVAL_NOISE_CLIENT),
            )  # fmt: skip
            acc += k / total * a
            loss += k / total * lo
        return {"accuracy": acc, "loss": loss, "large_accuracy": None}

    def state(self) -> dict[str, Any]:
        return {"weights": self.weights, "inversion": self.inversion}

    def load_state(self, state: dict[str, Any]) -> None:
        self.weights = list(state["weights"])
        self.inversion = dict(state.get("inversion") or {})

    # -- the server's model-inversion attack -------------------------------------------------
    def after_training(self, rd: Round, rnd: int) -> None:
        """At the end of the last round's training, the configured model-inversion attack."""
        attack = self.ctx.config.attack
        if attack is None or not is_split_attack(attack.name):
            return
        if rnd == self.ctx.config.training.rounds - 1:
            self.inversion = self.invert(rd)

    def invert(self, rd: Round) -> dict[str, dict[str, Any]]:
        """He et al.'s attack by the honest-but-curious server, for every cut in use: it holds
        the final device side (uploaded each round), runs its auxiliary images (training
        images the server draws, never the test set) through it, with the devices' guard,
        trains a decoder from what a device sends back to the images, and decodes the smashed
        data of the test images (the victims). Scored in pixels in [0, 1] (SSIM, PSNR),
        beside an untrained decoder's scores and the class prior's (each victim guessed as
        the mean auxiliary image of its class: what knowing the class alone gives). Billed
        to the server: the device side on the auxiliary images, the decoder's training, its
        pass over the victims."""
        ctx = self.ctx
        assert ctx.config.attack is not None
        opts = attack_options(ctx.config.attack.name, ctx.config.attack.options)
        from tinylarge.security.inversion import class_prior, invert, train_decoder

        ds = ctx.dataset
        n_aux = min(opts.aux_samples, len(ds.x_train))
        aux = np.sort(ctx.rng(-1, INVERSION_STREAM).choice(len(ds.x_train), n_aux, replace=False))
        x_aux, x_victim = ds.x_train[aux], ds.x_test[: opts.victim_samples]

        def pixels(x: np.ndarray) -> np.ndarray:
            return np.clip(denormalize(x, ds.preprocessing), 0.0, 1.0)

        prior_ssim, prior_psnr = class_prior(
            x_aux, ds.y_train[aux], x_victim, ds.y_test[: opts.victim_samples],
            data_range=1.0, transform=pixels,
        )  # fmt: skip

        out: dict[str, dict[str, Any]] = {}
        seed = ctx.task_seed(-1, ATTACK_CLIENT)
        in_use = {cp.cuts: cp for cp in self.cut_of.values()}
        for cuts in sorted(in_use):
            cp = in_use[cuts]
            device = segments(build(ctx.spec, self.weights), cuts)[0]
            sent = DeployedSplit(
                [device, nn.Identity()], self.options.compression, self.guard, seed
            )
            decoder = train_decoder(
                sent, x_aux, epochs=opts.epochs, batch_size=opts.batch_size, lr=opts.lr,
                seed=seed, width=opts.width,
            )  # fmt: skip
            r = invert(
                sent, decoder, x_victim, data_range=1.0, baseline_seed=seed, transform=pixels
            )
            decoding = profile_model(
                decoder, input_shape=cp.cut.output_shape, name="inversion-decoder",
                dtype="fp32", train_batch_size=opts.batch_size, optimizer="adam",
            )  # fmt: skip
            work: list[Work] = [
                Infer(cp.device_parts[0], batch=n_aux, dtype="fp32"),
                Train(decoding, n_aux * opts.epochs),
                Infer(decoding, batch=len(x_victim), dtype="fp32"),
            ]
            seconds = rd.server(work, what="inversion-attack")
            out[str(cp.cut.index)] = {
                "layer": cp.cut.layer,
                "ssim": r.ssim,
                "psnr": r.psnr,
                "baseline_ssim": r.baseline_ssim,
                "baseline_psnr": r.baseline_psnr,
                "class_prior_ssim": prior_ssim,
                "class_prior_psnr": prior_psnr,
                "server_s": seconds,
            }
        return out

    def security_summary(self) -> dict[str, Any]:
        """summary.json's attack and defense keys of a split run: the inversion's scores (per
        cut in ``inversion``; ``inversion_ssim`` ... of the cut it recovers best) and what
        the devices' guard and the server's attack cost."""
        cfg = self.ctx.config
        if cfg.attack is None and cfg.defense is None:
            return {}
        ledger = self.ctx.ledger
        out: dict[str, Any] = {
            "attack": cfg.attack.name if cfg.attack else None,
            "defense": cfg.defense.name if cfg.defense else None,
            "malicious": 0,
        }
        if self.guard is not None:
            events = ledger.select(side="device", what=f"defense-{self.guard.name}")
            out["defense_device_seconds"] = math.fsum(e.seconds for e in events)
            out["defense_device_energy_j"] = math.fsum(e.joules for e in events)
        if self.inversion:
            best = max(self.inversion.values(), key=lambda v: float(v["ssim"]))
            out["inversion"] = self.inversion
            out["inversion_ssim"] = best["ssim"]
            out["inversion_psnr"] = best["psnr"]
            out["inversion_baseline_ssim"] = best["baseline_ssim"]
            out["inversion_baseline_psnr"] = best["baseline_psnr"]
            if "class_prior_ssim" in best:  # absent from checkpoints of earlier versions
                out["inversion_class_prior_ssim"] = best["class_prior_ssim"]
                out["inversion_class_prior_psnr"] = best["class_prior_psnr"]
            out["inversion_server_s"] = math.fsum(
                float(v["server_s"]) for v in self.inversion.values()
            )
        return out

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
            **self.security_summary(),
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
