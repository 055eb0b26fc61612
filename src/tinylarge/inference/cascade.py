"""Tiny-to-large cascade: answer on the device when confident, else ask the large model.

Every request runs the tiny model on the device. When its calibrated
confidence (:mod:`tinylarge.inference.calibration`) reaches the threshold
(:mod:`tinylarge.inference.policy`) the device answers; otherwise it uploads
the input, the large model at the edge or cloud answers, and the result
comes back. This is the big/little pattern (Park et al., "Big/little deep
neural network for ultra low power inference", CODES+ISSS 2015,
https://doi.org/10.1109/CODESISSS.2015.7331375) that the survey lists for
TinyML-LargeML collaborative inference (Vu et al., arXiv 2505.15854).

Costs (batch 1, fp32): a local answer runs the tiny model on the device; an
offloaded one also sends the input over the uplink, runs the large model on the
server and returns the result (the large model's logits) over the downlink. An
uplink or downlink outage falls back to the tiny model's answer. The paths say
what runs where (:class:`~tinylarge.hardware.cost.Infer`); the caller prices
them on the device and the server it serves with.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinylarge.hardware.cost import Infer
from tinylarge.inference.paths import ExitPath, PathStep
from tinylarge.models.profile import ModelProfile

#: Exit 0: the tiny model on the device; exit 1: the large model on the server.
TINY, LARGE = 0, 1


@dataclass(frozen=True)
class CascadePaths:
    """The cascade's two exit paths and the two baselines' paths."""

    cascade: tuple[ExitPath, ExitPath]
    device_only: ExitPath
    server_only: ExitPath


def cascade_paths(
    *, tiny: ModelProfile, large: ModelProfile, input_bytes: int, result_bytes: int
) -> CascadePaths:
    """Paths of a cascade: ``tiny`` on the device, ``large`` on the edge server."""
    local = PathStep("device", "infer-tiny", work=Infer(tiny))
    offload = (
        PathStep("uplink", "input", num_bytes=input_bytes),
        PathStep("edge", "infer-large", work=Infer(large)),
        PathStep("downlink", "result", num_bytes=result_bytes),
    )
    answer_here = ExitPath(exit=TINY, steps=(local,))
    ask_large = ExitPath(exit=LARGE, steps=(local, *offload), fallback_exit=TINY)
    return CascadePaths(
        cascade=(answer_here, ask_large),
        device_only=answer_here,
        server_only=ExitPath(exit=LARGE, steps=offload, fallback_exit=None),
    )
