"""Early-exit networks: side exits after each stage, stages placed on device, edge and cloud.

BranchyNet (Teerapittayanon, McDanel and Kung, ICPR 2016,
https://arxiv.org/abs/1709.01686) adds a classifier (an *exit*) after each
stage of a backbone and trains all exits with one joint loss (the weighted
sum of their cross-entropies, :func:`joint_loss`).
At inference a sample leaves at the first exit confident enough. DDNN (the
same authors, "Distributed Deep Neural Networks over the Cloud, the Edge and
End Devices", ICDCS 2017, https://arxiv.org/abs/1709.01921) places the
stages on different tiers: the first stage and its exit on the end device,
later ones at the edge and in the cloud, so a confident device exit saves the
uplink and an unconfident one sends the stage's activations, not the input.

:class:`EarlyExitSpec` builds an :class:`EarlyExitNet` for any input shape
from a backbone in :data:`BACKBONES`:

- ``mlp`` (any shape, flattened): stage 0 ``Linear(F, w0) + ReLU``, later
  stages two ``Linear + ReLU``; each exit a ``Linear`` to the classes.
- ``cnn`` (images ``(C, H, W)``): stage 0 is two 3x3 conv + ReLU + 2x2
  max-pool (``cnn-tiny``-like) with a linear exit on the flattened map; later
  stages are two 3x3 conv + BN + ReLU (pooled first from stage 2 on) with a
  global-average-pool exit.

The net returns ``(N, E, K)`` logits: all exits (one batched forward stands
for the staged execution; a sample's answer and costs depend only on the exit
it leaves at). :func:`exit_paths` gives each exit's
:class:`~tinylarge.inference.paths.ExitPath` for a placement: what runs on which
tier, for the caller to price on the device, the edge server and the cloud.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from tinylarge.errors import TinylargeError
from tinylarge.hardware.cost import Infer
from tinylarge.inference.paths import TIERS, ExitPath, Leg, PathStep, Tier
from tinylarge.models.profile import ModelProfile
from tinylarge.models.profiler import profile_model
from tinylarge.registry import Registry

FP32_BYTES = 4

Stages = tuple[list[nn.Module], list[nn.Module]]
BackboneFn = Callable[[tuple[int, ...], int, tuple[int, ...]], Stages]
BACKBONES: Registry[BackboneFn] = Registry("early-exit backbone")
DEFAULT_WIDTHS: dict[str, tuple[int, ...]] = {"mlp": (64, 256, 512), "cnn": (8, 32, 64)}


class EarlyExitNet(nn.Module):
    """Stages with one exit after each; ``forward`` returns ``(N, E, K)`` logits."""

    def __init__(self, stages: Sequence[nn.Module], exits: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(stages) != len(exits) or not stages:
            raise ValueError("an early-exit net needs one exit per stage, at least one stage")
        self.stages = nn.ModuleList(stages)
        self.exits = nn.ModuleList(exits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for stage, head in zip(self.stages, self.exits, strict=True):
            x = stage(x)
            outs.append(head(x))
        return torch.stack(outs, dim=1)


def joint_loss(
    out: torch.Tensor, y: torch.Tensor, exit_weights: Sequence[float] = ()
) -> torch.Tensor:
    """BranchyNet's joint loss: ``sum_e w_e * CE(exit_e)`` for ``(N, E, K)`` outputs (all
    weights 1 by default); plain cross-entropy for ``(N, K)`` outputs."""
    if out.ndim == 2:
        return nn.functional.cross_entropy(out, y)
    weights = tuple(exit_weights) or (1.0,) * out.shape[1]
    if len(weights) != out.shape[1]:
        raise ValueError(f"{len(weights)} exit weights for {out.shape[1]} exits")
    terms = [w * nn.functional.cross_entropy(out[:, e], y) for e, w in enumerate(weights)]
    return torch.stack(terms).sum()


@BACKBONES.register("mlp")
def mlp_backbone(input_shape: tuple[int, ...], num_classes: int, widths: tuple[int, ...]) -> Stages:
    stages: list[nn.Module] = []
    exits: list[nn.Module] = []
    features = math.prod(input_shape)
    for i, w in enumerate(widths):
        if i == 0:
            stages.append(nn.Sequential(nn.Flatten(), nn.Linear(features, w), nn.ReLU()))
        else:
            stages.append(
                nn.Sequential(nn.Linear(features, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU())
            )
        exits.append(nn.Linear(w, num_classes))
        features = w
    return stages, exits


def _conv(cin: int, cout: int, *, bn: bool) -> list[nn.Module]:
    conv = nn.Conv2d(cin, cout, 3, padding=1, bias=not bn)
    return [conv, nn.BatchNorm2d(cout), nn.ReLU()] if bn else [conv, nn.ReLU()]


@BACKBONES.register("cnn")
def cnn_backbone(input_shape: tuple[int, ...], num_classes: int, widths: tuple[int, ...]) -> Stages:
    if len(input_shape) != 3:
        raise TinylargeError(f"early-exit backbone 'cnn' takes inputs (C, H, W), got {input_shape}")
    channels, h, w = input_shape
    stages: list[nn.Module] = []
    exits: list[nn.Module] = []
    for i, width in enumerate(widths):
        layers: list[nn.Module] = []
        if i == 0:
            for cin in (channels, width):
                layers += _conv(cin, width, bn=False)
                if h >= 2 and w >= 2:
                    layers.append(nn.MaxPool2d(2))
                    h, w = h // 2, w // 2
            exits.append(nn.Sequential(nn.Flatten(), nn.Linear(width * h * w, num_classes)))
        else:
            if i >= 2 and h >= 2 and w >= 2:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            layers += _conv(widths[i - 1], width, bn=True) + _conv(width, width, bn=True)
            exits.append(
                nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))
            )
        stages.append(nn.Sequential(*layers))
    return stages, exits


@dataclass(frozen=True)
class EarlyExitSpec:
    """How to build an :class:`EarlyExitNet` (picklable, for backend tasks)."""

    input_shape: tuple[int, ...]
    num_classes: int
    backbone: str = "auto"
    widths: tuple[int, ...] = ()

    @property
    def resolved_backbone(self) -> str:
        if self.backbone != "auto":
            return self.backbone
        image = len(self.input_shape) == 3 and min(self.input_shape[1:]) >= 4
        return "cnn" if image else "mlp"

    @property
    def resolved_widths(self) -> tuple[int, ...]:
        return self.widths or DEFAULT_WIDTHS.get(self.resolved_backbone, (64, 256, 512))

    def build(self) -> EarlyExitNet:
        if any(w < 1 for w in self.resolved_widths):
            raise TinylargeError(f"early-exit widths must be >= 1, got {self.resolved_widths}")
        builder = BACKBONES[self.resolved_backbone]
        stages, exits = builder(self.input_shape, self.num_classes, self.resolved_widths)
        return EarlyExitNet(stages, exits)


@dataclass(frozen=True)
class ExitProfile:
    """Profiles of one stage and its exit head (fp32, batch 1), and the stage's output bytes."""

    stage: ModelProfile
    head: ModelProfile
    out_bytes: int


@torch.no_grad()
def profile_exits(net: EarlyExitNet, input_shape: tuple[int, ...]) -> tuple[ExitProfile, ...]:
    """Profile each stage and exit head on the shapes they see."""
    net.eval()
    x = torch.zeros((1, *input_shape))
    out: list[ExitProfile] = []
    for i, (stage, head) in enumerate(zip(net.stages, net.exits, strict=True)):
        shape = tuple(int(d) for d in x.shape[1:])
        sp = profile_model(stage, input_shape=shape, name=f"stage{i}", dtype="fp32")
        x = stage(x)
        hshape = tuple(int(d) for d in x.shape[1:])
        hp = profile_model(head, input_shape=hshape, name=f"exit{i}", dtype="fp32")
        out.append(ExitProfile(stage=sp, head=hp, out_bytes=FP32_BYTES * math.prod(hshape)))
    return tuple(out)


def device_segment(net: EarlyExitNet, placement: Sequence[str]) -> EarlyExitNet | None:
    """The stages (and exits) placed on the device, as one net to profile and deploy."""
    k = sum(1 for t in placement if t == "device")
    if k == 0:
        return None
    return EarlyExitNet(list(net.stages)[:k], list(net.exits)[:k])


def check_placement(placement: Sequence[str], num_stages: int) -> tuple[Tier, ...]:
    """Validate a placement: one tier per stage, never moving back towards the device."""
    if len(placement) != num_stages:
        raise TinylargeError(
            f"placement has {len(placement)} tiers for {num_stages} stages; give one per stage"
        )
    tiers: list[Tier] = []
    for t in placement:
        if t not in TIERS:
            raise TinylargeError(f"placement tier {t!r} unknown; known: {', '.join(TIERS)}")
        tiers.append(t)
    ranks = [TIERS.index(t) for t in tiers]
    if ranks != sorted(ranks):
        raise TinylargeError(f"placement {list(placement)} must go device -> edge -> cloud")
    return tuple(tiers)


#: Transfer legs from one tier to a later one (device -> cloud relays through the edge).
_HOPS: dict[tuple[Tier, Tier], tuple[Leg, ...]] = {
    ("device", "edge"): ("uplink",),
    ("device", "cloud"): ("uplink", "backhaul_up"),
    ("edge", "cloud"): ("backhaul_up",),
}
_RETURN: dict[Tier, tuple[Leg, ...]] = {
    "device": (),
    "edge": ("downlink",),
    "cloud": ("backhaul_down", "downlink"),
}


def exit_paths(
    profiles: Sequence[ExitProfile],
    placement: Sequence[Tier],
    *,
    input_bytes: int,
    result_bytes: int,
) -> tuple[ExitPath, ...]:
    """One path per exit: stages and heads on their tiers, activations across tier changes.

    Stage 0 on the edge sends the input; an exit away from the device returns
    ``result_bytes`` to it. The fallback on an outage is the last exit the
    device computed (``None`` when no stage is on the device).
    """
    paths: list[ExitPath] = []
    for e in range(len(profiles)):
        steps: list[PathStep] = []
        here: Tier = "device"
        for i in range(e + 1):
            tier = placement[i]
            if tier != here:
                size = input_bytes if i == 0 else profiles[i - 1].out_bytes
                what = "input" if i == 0 else "activations"
                steps += [PathStep(leg, what, num_bytes=size) for leg in _HOPS[(here, tier)]]
                here = tier
            for part, label in ((profiles[i].stage, "stage"), (profiles[i].head, "exit")):
                steps.append(PathStep(tier, f"{label}{i}", work=Infer(part)))
        steps += [PathStep(leg, "result", num_bytes=result_bytes) for leg in _RETURN[here]]
        on_device = [i for i in range(e + 1) if placement[i] == "device"]
        paths.append(
            ExitPath(exit=e, steps=tuple(steps), fallback_exit=on_device[-1] if on_device else None)
        )
    return tuple(paths)
