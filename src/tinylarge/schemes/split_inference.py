"""The ``split-inference`` mode: each device runs the first part of the model, the server the rest.

Each round the server trains the config's model; the partition planner
(:mod:`tinylarge.inference.split`) picks, per device group (profile, link,
distance), the partition minimising end-to-end latency or device energy
(``objective``) among those whose device part fits the device; the device
part's weights are pushed to the devices; the devices serve the test set:
they run their operators and send the crossing tensors, the server runs the
rest (really: the two parts run separately through torch.fx) and returns the
result. An outage falls back to finishing the model on the device.
Baselines in the same run: the whole model on the device (``device_only``,
which may not fit it: see ``device_only_fits``) and the input sent to the
server (``server_only``). ``tinylarge plan`` prints the partition table.

Kang et al., "Neurosurgeon", ASPLOS 2017, https://doi.org/10.1145/3037697.3037698.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch

from tinylarge.hardware.cost import ComputeCost
from tinylarge.hardware.fit import FitReport
from tinylarge.inference.paths import ExitPath, Step
from tinylarge.inference.serving import DeviceServing, InferenceScheme, ServingOptions
from tinylarge.inference.split import (
    DevicePartTask,
    ModelGraph,
    PartitionCost,
    PartitionPlan,
    SplitRunner,
    describe,
    model_graph,
    op_costs,
    plan_partition,
    run_device_part,
    split_names,
)
from tinylarge.inference.training import NetSpec
from tinylarge.schemes.base import register_scheme
from tinylarge.sim.client import set_weights
from tinylarge.sim.context import Client


class SplitInferenceOptions(ServingOptions):
    #: What the partition minimises: end-to-end ``latency`` or device ``energy``.
    objective: Literal["latency", "energy"] = "latency"


def _sum(costs: Sequence[ComputeCost], which: Sequence[int]) -> ComputeCost:
    return ComputeCost(
        macs=sum(costs[i].macs for i in which),
        latency_s=sum(costs[i].latency_s for i in which),
        energy_j=sum(costs[i].energy_j for i in which),
    )


def partition_path(
    graph: ModelGraph, cost: PartitionCost, device_costs: Sequence[ComputeCost]
) -> ExitPath:
    """The request path of a partition: device part, uplink, server part, result download."""
    steps: list[Step] = []
    if cost.device_ops:
        steps.append(Step("device", "infer-head", cost=cost.device))
    if len(cost.device_ops) == len(graph.ops):
        return ExitPath(exit=0, steps=tuple(steps))
    rest = [i for i in range(len(graph.ops)) if i not in cost.device_ops]
    steps += [
        Step("uplink", "activations" if cost.device_ops else "input", num_bytes=cost.up_bytes),
        Step("edge", "infer-tail", cost=cost.server),
        Step("downlink", "result", num_bytes=cost.down_bytes),
    ]
    return ExitPath(
        exit=0,
        steps=tuple(steps),
        fallback_exit=0,
        fallback_steps=(Step("device", "infer-fallback", cost=_sum(device_costs, rest)),),
    )


@register_scheme
class SplitInference(InferenceScheme):
    """Neurosurgeon-style split inference at the planned partition point."""

    name = "split-inference"
    Options = SplitInferenceOptions
    uses_validation = False

    def build_nets(self) -> dict[str, NetSpec]:
        return {"model": self.ctx.spec}

    def mode_setup(self) -> None:
        spec = self.ctx.spec
        self.graph = model_graph(spec.build(), input_shape=spec.input_shape, name=spec.name)
        self.plans: dict[tuple[str, str, float], PartitionPlan] = {}
        self.device_costs: dict[str, tuple[ComputeCost, ...]] = {}

    def plan_of(self, client: Client) -> PartitionPlan:
        opts = self.options
        assert isinstance(opts, SplitInferenceOptions)
        key = (client.profile.id, client.link_name, float(client.link.distance_m))
        if key not in self.plans:
            self.plans[key] = plan_partition(
                self.graph,
                device=client.profile,
                server=self.ctx.server,
                link=client.link,
                objective=opts.objective,
            )
            self.device_costs[client.profile.id] = op_costs(self.graph, client.profile)
        return self.plans[key]

    def device_fit(self, client: Client) -> FitReport:
        best = self.plan_of(client).best
        dev = client.profile
        if best is None:
            full = self.plan_of(client).points[-1]
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

    def calibrate(self, rnd: int, val_logits: Mapping[str, np.ndarray], y_val: np.ndarray) -> None:
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
                    paths=(self._path(c, self._best(c)),),
                )
            )
        return out

    def _best(self, client: Client) -> PartitionCost:
        best = self.plan_of(client).best
        assert best is not None
        return best

    def _path(self, client: Client, cost: PartitionCost) -> ExitPath:
        return partition_path(self.graph, cost, self.device_costs[client.profile.id])

    def baselines(
        self, rnd: int, served: Sequence[DeviceServing]
    ) -> dict[str, list[DeviceServing]]:
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
                        paths=(self._path(s.client, cost),),
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
        opts = self.options
        assert isinstance(opts, SplitInferenceOptions)
        return {
            "objective": opts.objective,
            "partitions": partitions,
            "device_only_fits": device_only_fits,
        }
