"""Which part of a model a device can train, and training only that part.

For transfer learning on devices (TL, FTL) the backbone comes pre-trained and a
device adapts the part its memory allows (Cai et al., "TinyTL: Reduce Memory,
Not Parameters for Efficient On-Device Learning", NeurIPS 2020,
https://arxiv.org/abs/2007.11622). Candidates of a sequential zoo model:

- ``all``, ``from-<i>``, ``head``: the layers from child ``i`` on (``all``
  from the first child with parameters, ``head`` the classifier alone). The
  frozen prefix runs forward one sample at a time and its output features
  are batched for the trainable suffix, so the memory is the suffix's
  training memory (weights, gradients, optimizer state, saved activations and
  the batch of input features) plus the prefix's peak inference SRAM (fp32);
- ``bias``: every bias (BitFit / TinyTL's bias-only update): the weights stay
  frozen in flash, the backward pass runs through every layer, so the memory
  is the whole model's saved activations plus the biases with their gradients
  and optimizer state.

:func:`choose_part` keeps the largest candidate (most trainable parameters)
that fits the device's SRAM. Compute is billed as the prefix's forward pass
plus the suffix's training (3x its forward MACs); a bias-only update costs a
forward and one backward pass (activation gradients, no weight gradients).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from torch import nn

from tinylarge.errors import TinylargeError
from tinylarge.hardware.catalogue import DeviceProfile
from tinylarge.hardware.cost import ComputeCost, inference_cost, training_cost
from tinylarge.hardware.fit import format_bytes
from tinylarge.models.memory import OPTIMIZER_STATE_COPIES
from tinylarge.models.profile import ModelProfile
from tinylarge.schemes._kd import batches, build, profile_module, seeded
from tinylarge.sim.client import ModelSpec, TrainSettings, Weights, make_optimizer

PartMode = Literal["auto", "all", "head", "bias"]


@dataclass(frozen=True)
class Part:
    """A trainable part of a sequential model and what training it needs.

    Attributes:
        name: ``"all"``, ``"from-<i>"``, ``"head"`` or ``"bias"``.
        cut: first trainable child (``None`` for bias-only).
        keys: state-dict keys the device trains and uploads.
        trainable_params: parameters in the part.
        memory_bytes: training memory on the device (see the module docstring).
        prefix: profile of the frozen prefix (``None`` when there is none).
        suffix: profile of the trained suffix, or of the whole model for ``bias``.
    """

    name: str
    cut: int | None
    keys: tuple[str, ...]
    trainable_params: int
    memory_bytes: int
    prefix: ModelProfile | None
    suffix: ModelProfile

    def train_cost(self, device: DeviceProfile, *, samples: int) -> ComputeCost:
        """Device compute of training this part on ``samples`` examples."""
        if samples == 0:
            return ComputeCost(0, 0.0, 0.0)
        if self.cut is None:
            return training_cost(self.suffix, device, samples=samples, backward_factor=1.0)
        cost = training_cost(self.suffix, device, samples=samples)
        if self.prefix is None:
            return cost
        head = inference_cost(self.prefix, device, dtype="fp32", batch=samples)
        return ComputeCost(
            macs=cost.macs + head.macs,
            latency_s=cost.latency_s + head.latency_s,
            energy_j=cost.energy_j + head.energy_j,
        )

    def describe(self) -> dict[str, object]:
        return {
            "part": self.name,
            "trainable_params": self.trainable_params,
            "train_memory_bytes": self.memory_bytes,
        }


def _children(model: nn.Module, name: str) -> list[nn.Module]:
    if not isinstance(model, nn.Sequential):
        raise TinylargeError(f"model {name!r} is not sequential; transfer schemes need a zoo model")
    return list(model.children())


def candidate_parts(spec: ModelSpec, *, batch_size: int, optimizer: str) -> list[Part]:
    """Every suffix that starts at a child with parameters, largest first, then ``bias``."""
    model = spec.build()
    children = _children(model, spec.name)
    keys = list(model.state_dict())
    copies = OPTIMIZER_STATE_COPIES[optimizer]
    parts: list[Part] = []
    shape: tuple[int, ...] = spec.input_shape
    x = torch.zeros((1, *shape))
    for i, child in enumerate(children):
        if i > 0:
            with torch.no_grad():
                x = children[i - 1].eval()(x)
            shape = tuple(int(d) for d in x.shape[1:])
        if not any(True for _ in child.parameters()):
            continue
        suffix = profile_module(
            nn.Sequential(*children[i:]),
            input_shape=shape,
            batch_size=batch_size,
            optimizer=optimizer,
            name=f"{spec.name}[{i}:]",
        )
        prefix = None
        if i > 0:
            prefix = profile_module(
                nn.Sequential(*children[:i]),
                input_shape=spec.input_shape,
                batch_size=1,
                optimizer=optimizer,
                name=f"{spec.name}[:{i}]",
            )
        assert suffix.train_memory_bytes is not None
        memory = suffix.train_memory_bytes + (prefix.peak_sram_bytes if prefix else 0)
        parts.append(
            Part(
                name="all" if not parts else f"from-{i}",
                cut=i,
                keys=tuple(k for k in keys if int(k.split(".")[0]) >= i),
                trainable_params=sum(p.numel() for c in children[i:] for p in c.parameters()),
                memory_bytes=memory,
                prefix=prefix,
                suffix=suffix,
            )
        )
    if len(parts) > 1:
        parts[-1] = replace(parts[-1], name="head")
    whole = profile_module(
        model,
        input_shape=spec.input_shape,
        batch_size=batch_size,
        optimizer=optimizer,
        name=spec.name,
    )
    bias_keys = tuple(k for k, _ in model.named_parameters() if k.endswith(".bias"))
    if bias_keys and whole.train_memory_bytes is not None:
        n_bias = sum(p.numel() for k, p in model.named_parameters() if k.endswith(".bias"))
        activations = whole.train_memory_bytes - whole.params * 4 * (2 + copies)
        parts.append(
            Part(
                name="bias",
                cut=None,
                keys=bias_keys,
                trainable_params=n_bias,
                memory_bytes=activations + n_bias * 4 * (2 + copies),
                prefix=None,
                suffix=whole,
            )
        )
    return parts


def choose_part(
    parts: list[Part], device: DeviceProfile, *, mode: PartMode
) -> tuple[Part | None, str]:
    """The part ``device`` trains under ``mode``, or None with the reason it cannot."""
    if not device.can_train:
        return None, f"device {device.id} cannot train on-device"
    suffixes = [p for p in parts if p.cut is not None]
    wanted = {
        "auto": parts,
        "all": suffixes[:1],
        "head": suffixes[-1:],
        "bias": [p for p in parts if p.cut is None],
    }[mode]
    for part in wanted:
        if part.memory_bytes <= device.sram_bytes:
            return part, ""
    smallest = min(wanted, key=lambda p: p.memory_bytes, default=None)
    if smallest is None:
        return None, f"the model has no {mode!r} part"
    return None, (
        f"training memory of part {smallest.name} {format_bytes(smallest.memory_bytes)} "
        f"> SRAM {format_bytes(device.sram_bytes)}"
    )


@dataclass(frozen=True)
class PartTask:
    """One device's fine-tuning job: train ``keys`` of the model from ``weights``."""

    client: int
    seed: int
    spec: ModelSpec
    weights: Weights
    indices: np.ndarray
    settings: TrainSettings
    cut: int | None
    keys: tuple[str, ...]


@dataclass(frozen=True)
class PartResult:
    client: int
    tensors: dict[str, np.ndarray]
    num_samples: int
    loss: float


def train_part(task: PartTask, x: np.ndarray, y: np.ndarray) -> PartResult:
    """Fine-tune only the part ``task.keys``; return its tensors (what the device uploads).

    Frozen layers run in eval mode (batch-norm statistics fixed); a suffix runs
    in train mode. Deterministic for a given task.
    """
    gen = seeded(task.seed)
    model = build(task.spec, task.weights)
    model.eval()
    children = list(model.children())
    if task.cut is not None:
        for child in children[task.cut :]:
            child.train()
    wanted = set(task.keys)
    for name, p in model.named_parameters():
        p.requires_grad_(name in wanted)
    opt = make_optimizer(model, task.settings)
    xs = torch.from_numpy(np.ascontiguousarray(x[task.indices]))
    ys = torch.from_numpy(np.ascontiguousarray(y[task.indices]))
    n = len(task.indices)
    total, steps = 0.0, 0
    for idx in batches(
        n, batch_size=task.settings.batch_size, epochs=task.settings.epochs, gen=gen
    ):
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(xs[idx]), ys[idx])
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        total += float(loss.detach())
        steps += 1
    state = model.state_dict()
    tensors = {k: state[k].detach().numpy().copy() for k in task.keys}
    return PartResult(task.client, tensors, n, total / max(steps, 1))
