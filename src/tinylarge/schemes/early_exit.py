"""The ``early-exit`` inference mode: a multi-exit network split over device, edge and cloud.

Each round the server trains a BranchyNet-style network (one exit per stage,
joint loss with ``exit_weights``), calibrates every exit's confidence on the
validation split and chooses one threshold for the target; the device-tier
stages are pushed to the devices; a request leaves at the first exit whose
confidence passes the threshold. Stages sit on the tiers of ``placement``
(DDNN): leaving the device sends the last device stage's activations over the
uplink, leaving the edge sends them over the ``backhaul`` to the ``cloud``
profile, and an answer found off the device comes back to it. Baselines in
the same run: the device's own last exit (``device_only``; the whole network
on the device when no stage is placed there) and the whole network at the
edge (``server_only``). See :mod:`tinylarge.inference.early_exit` and
:mod:`tinylarge.schemes._serving` (the round).

Teerapittayanon et al., BranchyNet (ICPR 2016), https://arxiv.org/abs/1709.01686;
DDNN (ICDCS 2017), https://arxiv.org/abs/1709.01921.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tinylarge.errors import TinylargeError
from tinylarge.hardware.catalogue import get_device
from tinylarge.hardware.fit import FitReport, check_fit
from tinylarge.inference.early_exit import (
    EarlyExitSpec,
    check_placement,
    device_segment,
    exit_paths,
    profile_exits,
)
from tinylarge.inference.paths import ExitPath, Tier
from tinylarge.models.profiler import profile_model
from tinylarge.models.weights import get_weights, nbytes
from tinylarge.network.link import Link
from tinylarge.schemes._serving import DeviceServing
from tinylarge.schemes._serving_tasks import NetSpec, PredictTask, predict_net
from tinylarge.schemes._thresholds import ThresholdedScheme
from tinylarge.schemes.base import register_scheme
from tinylarge.schemes.options.inference import EarlyExitOptions
from tinylarge.sim.context import Client


@register_scheme
class EarlyExit(ThresholdedScheme[EarlyExitOptions]):
    """BranchyNet exits with DDNN tier placement."""

    name = "early-exit"

    def net_spec(self) -> EarlyExitSpec:
        """The multi-exit network (input shape and classes from the dataset)."""
        spec = self.ctx.spec
        return EarlyExitSpec(
            input_shape=spec.input_shape,
            num_classes=spec.num_classes,
            backbone=self.options.backbone,
            widths=tuple(self.options.widths or ()),
        )

    def build_nets(self) -> dict[str, NetSpec]:
        return {"net": self.net_spec()}

    def exit_weights(self, role: str) -> tuple[float, ...]:
        return tuple(self.options.exit_weights or ())

    def device_part(self) -> str:
        return "the device stages of the early-exit network"

    def mode_setup(self) -> None:
        super().mode_setup()
        opts = self.options
        net = self.net_spec().build()
        shape = self.ctx.spec.input_shape
        self.profiles = profile_exits(net, shape)
        num = len(self.profiles)
        self.tiers: tuple[Tier, ...] = check_placement(opts.placement, num)
        if opts.exit_weights is not None and len(opts.exit_weights) != num:
            raise TinylargeError(
                f"scheme.options.exit_weights has {len(opts.exit_weights)} values for {num} exits"
            )
        self.cloud = get_device(opts.cloud)
        self.backhaul = Link.from_preset(opts.backhaul)
        self.first_offload_exit = sum(1 for t in self.tiers if t == "device")
        segment = device_segment(net, self.tiers)
        self.segment_bytes = nbytes(get_weights(segment)) if segment else 0
        self.segment_profile = (
            profile_model(segment, input_shape=shape, name="device-stages", dtype="fp32")
            if segment is not None
            else None
        )
        self._paths: dict[tuple[Tier, ...], tuple[ExitPath, ...]] = {}

    def paths_for(self, tiers: tuple[Tier, ...]) -> tuple[ExitPath, ...]:
        if tiers not in self._paths:
            self._paths[tiers] = exit_paths(
                self.profiles, tiers, input_bytes=self.input_bytes, result_bytes=self.result_bytes
            )
        return self._paths[tiers]

    def client_paths(self, client: Client) -> tuple[ExitPath, ...]:
        return self.paths_for(self.tiers)

    def device_fit(self, client: Client) -> FitReport:
        if self.segment_profile is None:
            return FitReport(True, None, 0, client.profile.flash_bytes, 0, 0)
        return check_fit(self.segment_profile, client.profile, training=False)

    def deploy_bytes(self, client: Client) -> int:
        return self.segment_bytes

    def exit_logits(self, logits: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        out = logits["net"]
        return [out[:, e] for e in range(out.shape[1])]

    def serve(self, rnd: int, clients: Sequence[Client]) -> list[DeviceServing]:
        ctx = self.ctx
        x_test = ctx.dataset.x_test
        tasks = [
            PredictTask(
                net=self.nets["net"], weights=self.weights["net"], x=x_test[self.assigned[c.id]]
            )
            for c in clients
        ]
        out: list[DeviceServing] = []
        for c, logits in zip(clients, ctx.backend.map(predict_net, tasks), strict=True):
            per_exit = [logits[:, e] for e in range(logits.shape[1])]
            conf = self.confidences(per_exit)
            exits = self.decide(c, conf)
            rows = np.arange(len(exits))
            out.append(
                DeviceServing(
                    client=c,
                    indices=self.assigned[c.id],
                    exits=exits,
                    predictions=logits.argmax(axis=2),
                    confidence=conf[rows, exits],
                    paths=self.client_paths(c),
                )
            )
        return out

    def baselines(self, served: Sequence[DeviceServing]) -> dict[str, list[DeviceServing]]:
        last = len(self.profiles) - 1
        k_dev = self.first_offload_exit
        all_device: tuple[Tier, ...] = tuple("device" for _ in self.profiles)
        local = self.tiers if k_dev else all_device
        edge: tuple[Tier, ...] = tuple("edge" for _ in self.profiles)
        out: dict[str, list[DeviceServing]] = {"device_only": [], "server_only": []}
        for s in served:
            n = len(s.indices)
            for name, tiers, exit_ in (
                ("device_only", local, k_dev - 1 if k_dev else last),
                ("server_only", edge, last),
            ):
                out[name].append(
                    DeviceServing(
                        client=s.client,
                        indices=s.indices,
                        exits=np.full(n, exit_, dtype=np.int64),
                        predictions=s.predictions,
                        confidence=s.confidence,
                        paths=self.paths_for(tiers),
                    )
                )
        return out

    def extras(self) -> dict[str, Any]:
        return {
            **super().extras(),
            "placement": list(self.tiers),
            "exit_macs": [p.stage.macs + p.head.macs for p in self.profiles],
            "exit_activation_bytes": [p.out_bytes for p in self.profiles],
        }
