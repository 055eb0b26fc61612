"""Cut-layer planner for split learning (``sl``) and SplitFed (``fsl``).

Microcontrollers cannot hold a whole model for training; split learning lets
them train the first layers while a server trains the rest (Vu et al.,
https://arxiv.org/abs/2505.15854, section on SL and FSL). For each device
profile and link of the topology, every cut point of the model is evaluated
(:mod:`tinylarge.orchestration.split_costs`): device-side training memory
against the device's SRAM, device latency and energy per round, bytes per
batch and per round, server time, and the leakage of the smashed data
(distance correlation with the raw inputs, :mod:`tinylarge.security.leakage`,
at the seeded initial weights). The cut minimising the device's round
latency or round energy (``scheme.options.objective``, or ``--objective``) is
chosen among the cuts whose device side fits; a cut that does not fit is
never chosen, and a device with no fitting cut is excluded from the run.

Bandwidth: SplitFed V1 clients exchange smashed data at the same time, so a
device's share of its cell is ``1 / k`` with ``k = max(1, round(fraction x
devices on that link preset))``; vanilla SL and SplitFed V2 exchange one
client at a time (share 1), and V2 synchronises client models in parallel.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from tinylarge.errors import TinylargeError
from tinylarge.hardware.catalogue import DeviceProfile, get_device
from tinylarge.network.link import Link
from tinylarge.orchestration.base import Plan, PlanRequest, register_planner
from tinylarge.orchestration.split_costs import (
    CutEstimate,
    CutProfile,
    Objective,
    SplitSetup,
    as_row,
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
    """The plan of one device group: every cut's estimate and the chosen cut (or why none)."""

    profile: DeviceProfile
    link_name: str
    link: Link
    clients: tuple[int, ...]
    samples: int
    estimates: tuple[CutEstimate, ...]
    chosen: CutProfile | None
    reason: str | None

    @property
    def choice(self) -> CutEstimate | None:
        return next((e for e in self.estimates if e.chosen), None)


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
    message_share: float = 1.0,
    sync_share: float = 1.0,
    leakage: dict[int, float] | None = None,
) -> tuple[list[CutEstimate], CutProfile | None, str | None]:
    """Evaluate every cut for one device and link; mark and return the choice."""
    estimates = [
        estimate(
            cp,
            setup,
            device=device,
            link=link,
            link_name=link_name,
            samples=samples,
            num_classes=num_classes,
            message_share=message_share,
            sync_share=sync_share,
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
        if best is None and not any(e.fits for e in estimates):
            smallest = min(estimates, key=lambda e: e.train_memory_bytes)
            reason = f"no cut fits (smallest device side, cut {smallest.cut}: {smallest.reason})"
    if best is None and reason is None:
        reason = f"link {link_name} at {link.distance_m:g} m is in outage (SNR below threshold)"
    marked = [replace(e, chosen=best is not None and e.cut == best.cut) for e in estimates]
    return marked, (by_cut[best.cut] if best is not None else None), reason


def forced_cut(option: int | dict[str, int] | None, profile: str) -> int | None:
    """The cut the options force for ``profile`` (an int for all, or a per-profile map)."""
    if isinstance(option, dict):
        return option.get(profile)
    return option


def plan_topology(
    ctx: Context,
    setup: SplitSetup,
    profiles: list[CutProfile],
    *,
    objective: Objective,
    forced: int | dict[str, int] | None,
    parallel_messages: bool,
    parallel_sync: bool,
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
        profile = get_device(profile_id)
        estimates, chosen, reason = plan_group(
            profiles,
            setup,
            device=profile,
            link=the_link,
            link_name=link_name,
            samples=round(float(np.mean(sizes))),
            num_classes=ctx.dataset.num_classes,
            objective=objective,
            forced=forced_cut(forced, profile_id),
            message_share=1.0 / k if parallel_messages else 1.0,
            sync_share=1.0 / k if parallel_sync else 1.0,
            leakage=leakage,
        )
        out.append(
            GroupPlan(
                profile=profile,
                link_name=link_name,
                link=the_link,
                clients=ids,
                samples=round(float(np.mean(sizes))),
                estimates=tuple(estimates),
                chosen=chosen,
                reason=reason,
            )
        )
    return out


@register_planner("sl", "fsl")
def plan_split(request: PlanRequest) -> Plan:
    """``tinylarge plan`` for sl/fsl: every cut of every device group, the choice marked."""
    from tinylarge.schemes import SCHEMES
    from tinylarge.schemes._split import SplitScheme
    from tinylarge.sim.context import Context

    cfg = request.config
    cls = SCHEMES[cfg.scheme.name]
    if not issubclass(cls, SplitScheme):  # pragma: no cover - registry guards this
        raise TinylargeError(f"scheme {cfg.scheme.name!r} has no cut plan")
    ctx = Context(cfg)
    scheme = cls(ctx, cls.Options.model_validate(cfg.scheme.options))
    objective: Objective = (
        "energy" if (request.objective or scheme.split_options.objective) == "energy" else "latency"
    )
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for d in request.sweep_distances_m or (request.distance_m,):
        for gp in scheme.plan(
            objective=objective, device=request.device, link=request.link, distance_m=d
        ):
            rows.extend(as_row(e) for e in gp.estimates)
            choice = gp.choice
            where = f"{gp.profile.id} over {gp.link_name} at {gp.link.distance_m:g} m"
            notes.append(
                f"{where}: cut {choice.cut} (after {choice.layer})"
                if choice is not None
                else f"{where}: excluded, {gp.reason}"
            )
    opts = scheme.split_options
    title = (
        f"{cfg.scheme.name} ({scheme.variant}) cut plan: {cfg.model.name} on {cfg.task.dataset}, "
        f"objective {objective}, smashed data {opts.compression}"
    )
    notes.append(
        "latency_s, energy_j, bytes: one round of one device (download and upload of the "
        "device-side model, smashed data up and gradients down every batch); leakage: distance "
        "correlation between inputs and smashed data at the initial weights (1 = raw data)"
    )
    return Plan(title=title, columns=COLUMNS, rows=tuple(rows), notes=tuple(notes))
