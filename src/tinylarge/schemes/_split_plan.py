"""The cut planner of split learning (``sl``) and SplitFed (``fsl``).

Microcontrollers cannot hold a whole model for training; split learning lets
them train the first layers while a server trains the rest (Vu et al.,
https://arxiv.org/abs/2505.15854, section on SL and FSL). For each device
profile and link of the topology, every cut point of the model
(:func:`tinylarge.models.cuts.cut_points`) is evaluated: device-side training
memory against the device (:func:`tinylarge.hardware.fit.check_fit`), device
latency and energy per round, bytes per batch and per round, server time, and
the leakage of the smashed data (distance correlation with the raw inputs,
:mod:`tinylarge.security.leakage`, at the seeded initial weights). The cut
minimising the device's round latency or round energy
(``scheme.options.objective``, or ``--objective``) is chosen among the cuts
whose device side fits; a cut that does not fit is never chosen, and a device
with no fitting cut is not admitted to the run.

Each cut's figures come from :mod:`tinylarge.schemes._split_costs`, which
prices exactly the work a run bills (the same
:class:`~tinylarge.hardware.cost.Train` descriptors and messages, on the
nominal channel), so what the plan predicts is what a run without fading bills.

A link in outage at the nominal channel (SNR below the preset's threshold)
makes every cut's round infinitely long: the planner then ranks the fitting
cuts by their computation alone, and the round clock drops the device
(``"outage"``) in every round its channel stays in outage, as in every scheme.

Bandwidth: the transfers a device makes together with the round's other
devices share its cell, ``1 / k`` each with ``k = max(1, round(fraction x
devices on that link preset))``
(:class:`~tinylarge.schemes._split_costs.Sharing`): SplitFed V1's downloads,
messages and uploads; V2's downloads; nothing in vanilla SL (one client at a
time).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from tinylarge.errors import TinylargeError
from tinylarge.hardware.catalogue import DeviceProfile, get_device
from tinylarge.hardware.fit import FitReport, check_fit
from tinylarge.network.link import Link
from tinylarge.schemes._split_costs import (
    CutEstimate,
    CutProfile,
    Objective,
    Sharing,
    SplitSetup,
    choose,
    estimate,
)

if TYPE_CHECKING:
    from tinylarge.sim.context import Context

#: Columns of ``tinylarge plan`` for split learning.
COLUMNS = (
    "device",
    "link",
    "distance_m",
    "cut",
    "layer",
    "train_memory_bytes",
    "sram_bytes",
    "fits",
    "outage",
    "latency_s",
    "energy_j",
    "bytes",
    "bytes_per_batch",
    "server_s",
    "leakage",
    "chosen",
)


@dataclass(frozen=True)
class GroupPlan:
    """The plan of one device group: every cut's estimate, the chosen cut and the verdict
    its devices are admitted by (:meth:`tinylarge.sim.context.Context.admit`)."""

    profile: DeviceProfile
    link_name: str
    link: Link
    clients: tuple[int, ...]
    samples: int
    estimates: tuple[CutEstimate, ...]
    chosen: CutProfile | None
    verdict: FitReport

    @property
    def reason(self) -> str | None:
        return self.verdict.reason

    @property
    def choice(self) -> CutEstimate | None:
        return next((e for e in self.estimates if e.chosen), None)

    @property
    def where(self) -> str:
        return f"{self.profile.id} over {self.link_name} at {self.link.distance_m:g} m"

    def note(self) -> str:
        """One line of ``tinylarge plan``: the group's cut, or why it has none."""
        choice = self.choice
        if choice is None:
            return f"{self.where}: excluded, {self.reason}"
        note = f"{self.where}: cut {choice.cut} (after {choice.layer})"
        if choice.outage:
            note += (
                "; its link is in outage at this distance (SNR below threshold): it takes "
                "part only in rounds its faded channel gets through"
            )
        return note


def plan_group(
    profiles: list[CutProfile],
    setup: SplitSetup,
    *,
    device: DeviceProfile,
    link: Link,
    link_name: str,
    samples: int,
    num_classes: int,
    objective: Objective,
    forced: int | None = None,
    shares: tuple[float, float, float] = (1.0, 1.0, 1.0),
    leakage: dict[int, float] | None = None,
) -> tuple[list[CutEstimate], CutProfile | None, FitReport]:
    """Evaluate every cut for one device and link; mark and return the choice and the
    device's verdict (the chosen device side's fit, or why no cut can be used)."""
    estimates = [
        estimate(
            cp,
            setup,
            device=device,
            link=link,
            link_name=link_name,
            samples=samples,
            num_classes=num_classes,
            shares=shares,
            leakage=(leakage or {}).get(cp.cut.index),
        )
        for cp in profiles
    ]
    by_cut = {cp.cut.index: cp for cp in profiles}
    reason: str | None = None
    if forced is not None:
        if forced not in by_cut:
            raise TinylargeError(
                f"scheme.options.cut {forced} is not a cut point of model {setup.spec.name!r}; "
                f"allowed: {', '.join(str(k) for k in sorted(by_cut))} (or leave it out to plan)"
            )
        pick = next(e for e in estimates if e.cut == forced)
        best = choose([pick], objective)
        if not pick.fits:
            reason = f"cut {forced} does not fit: {pick.reason}"
    else:
        best = choose(estimates, objective)
        pick = min(estimates, key=lambda e: e.train_memory_bytes)
        if best is None:
            reason = f"no cut fits (smallest device side, cut {pick.cut}: {pick.reason})"
    marked = [replace(e, chosen=best is not None and e.cut == best.cut) for e in estimates]
    chosen = by_cut[best.cut] if best is not None else None
    verdict = check_fit((chosen or by_cut[pick.cut]).device, device, training=True)
    return marked, chosen, replace(verdict, reason=reason) if chosen is None else verdict


def forced_cut(option: int | dict[str, int] | None, profile: str) -> int | None:
    """The cut the options force for ``profile`` (an int for all, or a per-profile map)."""
    if isinstance(option, dict):
        return option.get(profile)
    return option


def plan_groups(
    ctx: Context,
    setup: SplitSetup,
    profiles: list[CutProfile],
    *,
    objective: Objective,
    forced: int | dict[str, int] | None,
    sharing: Sharing,
    leakage: dict[int, float] | None = None,
    device: str | None = None,
    link: str | None = None,
    distance_m: float | None = None,
) -> list[GroupPlan]:
    """Plan every device group of ``ctx``'s topology (optionally one device, link, distance)."""
    cfg = ctx.config
    groups: list[tuple[str, str, float | None, tuple[int, ...]]] = []
    offset = 0
    for g in cfg.topology.devices:
        ids = tuple(range(offset, offset + g.count))
        offset += g.count
        groups.append((g.profile, g.link, g.distance_m, ids))
    if device is not None:
        get_device(device)  # unknown names list the catalogue
        mine = [grp for grp in groups if grp[0] == device]
        first = groups[0]
        groups = mine or [(device, first[1], first[2], ())]
    per_link: dict[str, int] = {}
    for g in cfg.topology.devices:
        name = link or g.link
        per_link[name] = per_link.get(name, 0) + g.count
    all_sizes = [len(c.indices) for c in ctx.clients]
    out = []
    for profile_id, group_link, group_distance, ids in groups:
        link_name = link or group_link
        the_link = Link.from_preset(link_name, distance_m=distance_m or group_distance)
        sizes = [len(ctx.clients[i].indices) for i in ids] or all_sizes
        k = max(1, round(cfg.training.fraction * per_link.get(link_name, 1)))
        shared = 1.0 / k
        profile = get_device(profile_id)
        samples = round(float(np.mean(sizes)))
        estimates, chosen, verdict = plan_group(
            profiles,
            setup,
            device=profile,
            link=the_link,
            link_name=link_name,
            samples=samples,
            num_classes=ctx.dataset.num_classes,
            objective=objective,
            forced=forced_cut(forced, profile_id),
            shares=(
                shared if sharing.download else 1.0,
                shared if sharing.messages else 1.0,
                shared if sharing.upload else 1.0,
            ),
            leakage=leakage,
        )
        out.append(
            GroupPlan(
                profile=profile,
                link_name=link_name,
                link=the_link,
                clients=ids,
                samples=samples,
                estimates=tuple(estimates),
                chosen=chosen,
                verdict=verdict,
            )
        )
    return out
