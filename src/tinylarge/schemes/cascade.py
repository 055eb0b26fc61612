"""The ``cascade`` inference mode: a tiny model on each device, a large one at the server.

Each round the server trains the tiny model (the config's ``model``) and the
large model (``large_model``), calibrates the tiny model's confidence on the
validation split, chooses the offloading threshold for the target, pushes the
tiny model to the devices, and the devices serve the test set: confident
requests are answered on the device, the others are uploaded to the large
model. Baselines in the same run: the tiny model alone (``device_only``) and
everything offloaded (``server_only``). See :mod:`tinylarge.inference.cascade`,
:mod:`tinylarge.schemes._serving` (the round) and docs/collaborative_inference.md.

Park et al., CODES+ISSS 2015, https://doi.org/10.1109/CODESISSS.2015.7331375;
Vu et al., arXiv 2505.15854, https://arxiv.org/abs/2505.15854.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tinylarge.hardware.fit import FitReport, check_fit
from tinylarge.inference.cascade import LARGE, TINY, cascade_paths
from tinylarge.inference.paths import ExitPath
from tinylarge.models.profiler import profile_model
from tinylarge.models.weights import nbytes
from tinylarge.models.zoo import ModelSpec
from tinylarge.schemes._serving import DeviceServing
from tinylarge.schemes._serving_tasks import NetSpec, PredictTask, predict_net
from tinylarge.schemes._thresholds import ThresholdedScheme
from tinylarge.schemes.base import register_scheme
from tinylarge.schemes.options.inference import CascadeOptions
from tinylarge.sim.context import Client


@register_scheme
class Cascade(ThresholdedScheme[CascadeOptions]):
    """Tiny model on the device, large model at the server, confidence offloading."""

    name = "cascade"
    first_offload_exit = LARGE

    def build_nets(self) -> dict[str, NetSpec]:
        opts = self.options
        spec = self.ctx.spec
        large = ModelSpec(
            name=opts.large_model,
            input_shape=spec.input_shape,
            num_classes=spec.num_classes,
            options=dict(opts.large_options),
        )
        large.build()  # fail early on bad options
        return {"tiny": spec, "large": large}

    def device_part(self) -> str:
        return f"the tiny model {self.ctx.spec.name!r}"

    def mode_setup(self) -> None:
        super().mode_setup()
        shape = self.ctx.spec.input_shape
        self.profiles = {
            role: profile_model(net.build(), input_shape=shape, name=role, dtype="fp32")
            for role, net in self.nets.items()
        }
        self.paths = cascade_paths(
            tiny=self.profiles["tiny"],
            large=self.profiles["large"],
            input_bytes=self.input_bytes,
            result_bytes=self.result_bytes,
        )

    def client_paths(self, client: Client) -> tuple[ExitPath, ...]:
        return self.paths.cascade

    def device_fit(self, client: Client) -> FitReport:
        return check_fit(self.profiles["tiny"], client.profile, training=False)

    def deploy_bytes(self, client: Client) -> int:
        return nbytes(self.weights["tiny"])

    def exit_logits(self, logits: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return [logits["tiny"], logits["large"]]

    def serve(self, rnd: int, clients: Sequence[Client]) -> list[DeviceServing]:
        ctx = self.ctx
        x_test = ctx.dataset.x_test
        tasks = [
            PredictTask(
                net=self.nets["tiny"], weights=self.weights["tiny"], x=x_test[self.assigned[c.id]]
            )
            for c in clients
        ]
        tiny = ctx.backend.map(predict_net, tasks)
        large = predict_net(
            PredictTask(
                net=self.nets["large"],
                weights=self.weights["large"],
                x=x_test,
                threads=ctx.config.engine.threads,
            ),
            x_test,
            ctx.dataset.y_test,
        )
        out: list[DeviceServing] = []
        for c, logits in zip(clients, tiny, strict=True):
            idx = self.assigned[c.id]
            big = large[idx]
            conf = self.confidences([logits, big])
            exits = self.decide(c, conf)
            out.append(
                DeviceServing(
                    client=c,
                    indices=idx,
                    exits=exits,
                    predictions=np.stack([logits.argmax(1), big.argmax(1)], axis=1),
                    confidence=conf[:, TINY],
                    paths=self.client_paths(c),
                )
            )
        return out

    def baselines(self, served: Sequence[DeviceServing]) -> dict[str, list[DeviceServing]]:
        out: dict[str, list[DeviceServing]] = {"device_only": [], "server_only": []}
        paths = (self.paths.device_only, self.paths.server_only)
        for s in served:
            for name, exit_ in (("device_only", TINY), ("server_only", LARGE)):
                out[name].append(
                    DeviceServing(
                        client=s.client,
                        indices=s.indices,
                        exits=np.full(len(s.indices), exit_, dtype=np.int64),
                        predictions=s.predictions,
                        confidence=s.confidence,
                        paths=paths,
                    )
                )
        return out

    def extras(self) -> dict[str, Any]:
        return {
            **super().extras(),
            "tiny_model": self.ctx.spec.name,
            "large_model": self.options.large_model,
            "tiny_macs": self.profiles["tiny"].macs,
            "large_macs": self.profiles["large"].macs,
        }
