"""The ``split-inference`` mode: each device runs the first part of the model, the server the rest.

Each round the server trains the config's model; the partition planner
(:mod:`tinylarge.inference.split`) picks, per device group (profile, link,
distance), the partition minimising end-to-end latency or device energy
(``objective``) among those whose device part fits the device and that cut the
model only where a group of operators ends (:mod:`tinylarge.models.cuts`); the
device part's weights are pushed to the devices; the devices serve the test
set: they run their operators and send the crossing tensors, the server runs
the rest (really: the two parts run separately through torch.fx) and returns
the result. An outage falls back to finishing the model on the device.
Baselines in the same run: the whole model on the device (``device_only``,
which may not fit it: see ``device_only_fits``) and the input sent to the
server (``server_only``). :meth:`SplitInference.plan` is the partition table
``tinylarge plan`` prints.

Kang et al., "Neurosurgeon", ASPLOS 2017, https://doi.org/10.1145/3037697.3037698.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch

from tinylarge.errors import TinylargeError
from tinylarge.hardware.catalogue import DeviceProfile, get_device
from tinylarge.hardware.cost import Infer
from tinylarge.hardware.fit import FitReport
from tinylarge.inference.paths import ExitPath, PathStep
from tinylarge.inference.split import (
    ModelGraph,
    PartitionCost,
    PartitionPlan,
    SplitNames,
    SplitRunner,
    describe,
    model_graph,
    op_profiles,
    plan_partition,
    split_names,
)
from tinylarge.models.profile import ModelProfile
from tinylarge.models.weights import Weights, set_weights
from tinylarge.network.link import Link
from tinylarge.schemes._serving import DeviceServing, InferenceScheme
from tinylarge.schemes._serving_tasks import NetSpec
from tinylarge.schemes.base import Plan, PlanRequest, register_scheme, sweep_left_out
from tinylarge.schemes.options.inference import SplitInferenceOptions
from tinylarge.sim.context import Client

#: Columns of the plan table.
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


def _infer(profiles: Sequence[ModelProfile], ops: Sequence[int]) -> tuple[Infer, ...]:
    return tuple(Infer(profiles[i], dtype="fp32") for i in ops)


def partition_path(
    graph: ModelGraph, cost: PartitionCost, profiles: Sequence[ModelProfile]
) -> ExitPath:
    """The request path of a partition: device part, uplink, server part, result download.

    ``profiles`` are the operators' one-layer profiles
    (:func:`~tinylarge.inference.split.op_profiles`): each part runs its operators, priced
    together on its node.
    """
    steps: list[PathStep] = []
    mine = sorted(cost.device_ops)
    if mine:
        steps.append(PathStep("device", "infer-head", work=_infer(profiles, mine)))
    if len(mine) == len(graph.ops):
        return ExitPath(exit=0, steps=tuple(steps))
    rest = [i for i in range(len(graph.ops)) if i not in cost.device_ops]
    steps += [
        PathStep("uplink", "activations" if mine else "input", num_bytes=cost.up_bytes),
        PathStep("edge", "infer-tail", work=_infer(profiles, rest)),
        PathStep("downlink", "result", num_bytes=cost.down_bytes),
    ]
    return ExitPath(
        exit=0,
        steps=tuple(steps),
        fallback_exit=0,
        fallback_steps=(PathStep("device", "infer-fallback", work=_infer(profiles, rest)),),
    )


@dataclass(frozen=True)
class DevicePartTask:
    """Run a partition's device part on ``x`` (a backend task; the server part runs in-process)."""

    net: NetSpec
    weights: Weights
    names: SplitNames
    x: np.ndarray
    threads: int = 1


def run_device_part(
    task: DevicePartTask, x_train: np.ndarray, y_train: np.ndarray
) -> dict[str, np.ndarray]:
    """The tensors the device sends for every row of ``task.x``, as numpy arrays."""
    torch.set_num_threads(task.threads)
    model = task.net.build()
    set_weights(model, task.weights)
    model.eval()
    runner = SplitRunner(model, task.names)
    sent = runner.device_part(torch.from_numpy(np.ascontiguousarray(task.x)))
    return {k: v.numpy() for k, v in sent.items()}


@register_scheme
class SplitInference(InferenceScheme[SplitInferenceOptions]):
    """Neurosurgeon-style split inference at the planned partition point."""

    name = "split-inference"
    uses_validation = False

    @cached_property
    def graph(self) -> ModelGraph:
        """The config's model as an operator graph (fp32, batch 1)."""
        spec = self.ctx.spec
        return model_graph(spec.build(), input_shape=spec.input_shape, name=spec.name)

    @cached_property
    def op_profiles(self) -> tuple[ModelProfile, ...]:
        return op_profiles(self.graph)

    def build_nets(self) -> dict[str, NetSpec]:
        return {"model": self.ctx.spec}

    def device_part(self) -> str:
        return f"any partition of model {self.ctx.spec.name!r}"

    def mode_setup(self) -> None:
        self.plans: dict[tuple[str, str, float], PartitionPlan] = {}

    def plan_of(self, client: Client) -> PartitionPlan:
        key = (client.profile.id, client.link_name, float(client.link.distance_m))
        if key not in self.plans:
            self.plans[key] = plan_partition(
                self.graph,
                device=client.profile,
                server=self.ctx.server,
                link=client.link,
                objective=self.options.objective,
            )
        return self.plans[key]

    def device_fit(self, client: Client) -> FitReport:
        plan = self.plan_of(client)
        best = plan.best
        dev = client.profile
        if best is None:
            full = plan.points[-1]
            return FitReport(
                fits=False,
                reason=f"no partition of {self.graph.profile.name} fits {dev.id} and "
                f"{client.link_name} is in outage at {client.link.distance_m:g} m",
                flash_bytes=full.flash_bytes,
                flash_capacity_bytes=dev.flash_bytes,
                sram_bytes=full.sram_bytes,
                sram_capacity_bytes=dev.sram_contiguous_bytes,
            )
        return FitReport(
            fits=True,
            reason=None,
            flash_bytes=best.flash_bytes,
            flash_capacity_bytes=dev.flash_bytes,
            sram_bytes=best.sram_bytes,
            sram_capacity_bytes=dev.sram_contiguous_bytes,
        )

    def deploy_bytes(self, client: Client) -> int:
        best = self.plan_of(client).best
        ops = best.device_ops if best is not None else frozenset()
        return 4 * sum(self.graph.ops[i].layer.params for i in ops)

    def calibrate(self, val_logits: Mapping[str, np.ndarray], y_val: np.ndarray) -> None:
        return None

    def serve(self, rnd: int, clients: Sequence[Client]) -> list[DeviceServing]:
        ctx = self.ctx
        x_test = ctx.dataset.x_test
        names = {c.id: split_names(self.graph, self._best(c).device_ops) for c in clients}
        tasks = [
            DevicePartTask(
                net=self.nets["model"],
                weights=self.weights["model"],
                names=names[c.id],
                x=x_test[self.assigned[c.id]],
            )
            for c in clients
        ]
        sent = ctx.backend.map(run_device_part, tasks)
        module = self.nets["model"].build()
        set_weights(module, self.weights["model"])
        module.eval()
        out: list[DeviceServing] = []
        for c, tensors in zip(clients, sent, strict=True):
            runner = SplitRunner(module, names[c.id])
            logits = runner.server_part(
                {k: torch.from_numpy(np.array(v)) for k, v in tensors.items()}
            )
            idx = self.assigned[c.id]
            out.append(
                DeviceServing(
                    client=c,
                    indices=idx,
                    exits=np.zeros(len(idx), dtype=np.int64),
                    predictions=logits.numpy().argmax(1)[:, None],
                    confidence=np.full(len(idx), np.nan),
                    paths=(self._path(self._best(c)),),
                )
            )
        return out

    def _best(self, client: Client) -> PartitionCost:
        best = self.plan_of(client).best
        if best is None:  # admission keeps such devices out
            raise RuntimeError(f"no feasible partition for {client.node}")
        return best

    def _path(self, cost: PartitionCost) -> ExitPath:
        return partition_path(self.graph, cost, self.op_profiles)

    def baselines(self, served: Sequence[DeviceServing]) -> dict[str, list[DeviceServing]]:
        out: dict[str, list[DeviceServing]] = {"device_only": [], "server_only": []}
        for s in served:
            points = self.plan_of(s.client).points
            for name, cost in (("device_only", points[-1]), ("server_only", points[0])):
                out[name].append(
                    DeviceServing(
                        client=s.client,
                        indices=s.indices,
                        exits=s.exits,
                        predictions=s.predictions,
                        confidence=s.confidence,
                        paths=(self._path(cost),),
                    )
                )
        return out

    def extras(self) -> dict[str, Any]:
        partitions: dict[str, Any] = {}
        device_only_fits: dict[str, bool] = {}
        for (profile, link, distance), plan in sorted(self.plans.items()):
            best = plan.best
            device_only_fits[profile] = plan.points[-1].fits
            if best is None:
                continue
            partitions[f"{profile}/{link}@{distance:g}m"] = {
                "partition": describe(self.graph, best.device_ops),
                "point": plan.point_of(best),
                "device_ops": len(best.device_ops),
                "of_ops": len(self.graph.ops),
                "up_bytes": best.up_bytes,
                "latency_s": best.latency_s,
                "energy_j": best.device_energy_j,
                "sram_bytes": best.sram_bytes,
            }
        return {
            "objective": self.options.objective,
            "partitions": partitions,
            "device_only_fits": device_only_fits,
        }

    # -- tinylarge plan ----------------------------------------------------------------------
    def plan(self, request: PlanRequest) -> Plan:
        """The partition table: for each device group of the topology (or ``request.device``),
        over its link (or ``request.link``) at its distance (or ``request.distance_m``, or each
        of ``request.sweep_distances_m``), every allowed execution-order point of the model
        (and the min-cut partition when it is not a prefix), costed by
        :func:`~tinylarge.inference.split.plan_partition`, the best feasible one marked. A
        sweep shows, per distance, the choice and the two ends."""
        ctx = self.ctx
        cfg = ctx.config
        objective = request.objective or self.options.objective
        graph = self.graph
        groups = [(g.profile, g.link, g.distance_m) for g in cfg.topology.devices]
        if request.device is not None:
            get_device(request.device)
            mine = [g for g in groups if g[0] == request.device]
            groups = mine or [(request.device, groups[0][1], groups[0][2])]
        rows: list[dict[str, Any]] = []
        seen: set[tuple[str, str, float | None]] = set()
        left_out: list[str] = []
        for profile, link_name, distance in groups:
            name = request.link or link_name
            base = request.distance_m if request.distance_m is not None else distance
            for d in request.sweep_distances_m or (base,):
                if (profile, name, d) in seen:
                    continue
                seen.add((profile, name, d))
                try:
                    rows += _rows_for(
                        graph,
                        device=get_device(profile),
                        server=ctx.server,
                        link=Link.from_preset(name, distance_m=d),
                        objective=objective,
                        sweep=bool(request.sweep_distances_m),
                    )
                except TinylargeError as exc:
                    if not request.sweep_distances_m:
                        raise  # one distance asked for: its error is the answer
                    left_out.append(f"{profile}/{name} at {d:g} m ({exc})")
        left_notes = sweep_left_out(left_out, planned=bool(rows))
        notes = [
            f"objective: {objective}; server: {ctx.server.id}; model {cfg.model.name} "
            f"({len(graph.ops)} operators, input {graph.input_bytes} B, "
            f"result {graph.result_bytes} B)",
            "point k: the first k operators run on the device (0 = send the input, "
            f"{len(graph.ops)} = all on the device); 'cut' is the min-cut partition when it is "
            "not a prefix (non-chain models)",
            "a point only follows an operator that ends a group (an activation or a pooling "
            "layer): a conv or linear layer stays with its BatchNorm and activation",
        ]
        if request.sweep_distances_m:
            notes.append("sweep: per distance, the choice and the two ends")
        notes += left_notes
        return Plan(
            title=f"split-inference plan: {cfg.model.name} on {cfg.task.dataset}",
            columns=COLUMNS,
            rows=tuple(rows),
            notes=tuple(notes),
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
    """One plan table row for a partition."""
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
