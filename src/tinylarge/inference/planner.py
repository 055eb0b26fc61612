"""``tinylarge plan`` for split inference: the partition table of a config's model.

For each device group of the topology (or ``--device``), over its link (or
``--link``) at its distance (or ``--distance-m``, or each of
``--sweep-distance-m``), every execution-order partition point of the
config's model is costed with :func:`~tinylarge.inference.split.plan_partition`
(device compute, uplink bytes, server compute, result download) and the best
feasible one is marked. A sweep prints, per distance, the choice and the two
ends, so the best point can be seen moving as the link weakens.
"""

from __future__ import annotations

import math
from typing import Any

from tinylarge.data import load_dataset
from tinylarge.hardware.catalogue import DeviceProfile, get_device
from tinylarge.inference.split import (
    ModelGraph,
    PartitionCost,
    describe,
    model_graph,
    plan_partition,
)
from tinylarge.models.zoo import build_model
from tinylarge.network.link import Link
from tinylarge.orchestration.base import Plan, PlanRequest, register_planner

COLUMNS = (
    "device",
    "link",
    "distance_m",
    "point",
    "partition",
    "latency_s",
    "energy_j",
    "bytes",
    "device_s",
    "transfer_s",
    "server_s",
    "sram_bytes",
    "fits",
    "chosen",
)


def row(
    graph: ModelGraph,
    cost: PartitionCost,
    *,
    device: str,
    link: Link,
    point: int | None,
    chosen: bool,
) -> dict[str, Any]:
    """One table row for a partition."""
    transfer = math.fsum(t.time_s for t in (cost.up, cost.down) if t is not None)
    return {
        "device": device,
        "link": link.preset.name,
        "distance_m": link.distance_m,
        "point": "cut" if point is None else point,
        "partition": describe(graph, cost.device_ops),
        "latency_s": cost.latency_s,
        "energy_j": cost.device_energy_j,
        "bytes": cost.up_bytes + cost.down_bytes,
        "device_s": cost.device.latency_s,
        "transfer_s": transfer if not cost.outage else math.inf,
        "server_s": cost.server.latency_s,
        "sram_bytes": cost.sram_bytes,
        "fits": cost.fits,
        "chosen": chosen,
    }


def _rows_for(
    graph: ModelGraph,
    *,
    device: DeviceProfile,
    server: DeviceProfile,
    link: Link,
    objective: str,
    sweep: bool,
) -> list[dict[str, Any]]:
    plan = plan_partition(graph, device=device, server=server, link=link, objective=objective)
    best = plan.best
    candidates: list[PartitionCost] = list(plan.points)
    if plan.mincut is not None and plan.point_of(plan.mincut) is None:
        candidates.append(plan.mincut)
    if sweep:
        ends = (plan.points[0], plan.points[-1])
        candidates = [c for c in candidates if c in ends or c is best]
    return [
        row(
            graph,
            c,
            device=device.id,
            link=link,
            point=plan.point_of(c),
            chosen=best is not None and c.device_ops == best.device_ops,
        )
        for c in candidates
    ]


@register_planner("split-inference")
def plan_split_inference(req: PlanRequest) -> Plan:
    """The split-inference partition table for ``req.config``."""
    from tinylarge.schemes.split_inference import SplitInferenceOptions

    cfg = req.config
    options = SplitInferenceOptions.model_validate(cfg.scheme.options)
    objective = req.objective or options.objective
    task = cfg.task
    ds = load_dataset(task.dataset, data_dir=task.data_dir, subset=task.subset, seed=cfg.seed)
    module = build_model(
        cfg.model.name,
        input_shape=ds.input_shape,
        num_classes=ds.num_classes,
        **dict(cfg.model.options),
    )
    graph = model_graph(module, input_shape=ds.input_shape, name=cfg.model.name)
    server = get_device(cfg.topology.server.profile)
    groups = [(g.profile, g.link, g.distance_m) for g in cfg.topology.devices]
    if req.device is not None:
        get_device(req.device)
        mine = [g for g in groups if g[0] == req.device]
        groups = mine or [(req.device, groups[0][1], groups[0][2])]
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str, float | None]] = set()
    for profile, link_name, distance in groups:
        name = req.link or link_name
        base = req.distance_m if req.distance_m is not None else distance
        for d in req.sweep_distances_m or (base,):
            if (profile, name, d) in seen:
                continue
            seen.add((profile, name, d))
            rows += _rows_for(
                graph,
                device=get_device(profile),
                server=server,
                link=Link.from_preset(name, distance_m=d),
                objective=objective,
                sweep=bool(req.sweep_distances_m),
            )
    notes = [
        f"objective: {objective}; server: {server.id}; model {cfg.model.name} "
        f"({len(graph.ops)} operators, input {graph.input_bytes} B, result {graph.result_bytes} B)",
        "point k: the first k operators run on the device (0 = send the input, "
        f"{len(graph.ops)} = all on the device); 'cut' is the min-cut partition when it is "
        "not a prefix (non-chain models)",
    ]
    if req.sweep_distances_m:
        notes.append("sweep: per distance, the choice and the two ends")
    return Plan(
        title=f"split-inference plan: {cfg.model.name} on {task.dataset}",
        columns=COLUMNS,
        rows=tuple(rows),
        notes=tuple(notes),
    )
