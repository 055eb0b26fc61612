"""Which part of a model a device can train, and training only that part.

For transfer learning on devices (TL, FTL) the backbone comes pre-trained and a
device adapts the part its memory allows (Cai et al., "TinyTL: Reduce Memory,
Not Parameters for Efficient On-Device Learning", NeurIPS 2020,
https://arxiv.org/abs/2007.11622). Candidates of a chain zoo model:

- ``all``, ``from-<k>``, ``head``: the suffix of children ``[k, n)`` for every
  ``k`` of :func:`tinylarge.models.cuts.suffix_cuts` (``all`` is ``k = 0``,
  ``head`` the last: the classifier with the ``Flatten`` before it, since a
  model is only cut where an operator group ends). The frozen prefix runs
  forward one sample at a time and its output features are batched for the
  trainable suffix, so the memory is the suffix's training memory (weights,
  gradients, optimizer state, saved activations and the batch of input
  features) plus the prefix's peak inference SRAM (fp32);
- ``bias``: every bias (BitFit / TinyTL's bias-only update): the weights stay
  frozen in flash, the backward pass runs through every layer, so the memory
  is the whole model's saved activations plus the biases with their gradients
  and optimizer state.

:func:`choose_part` keeps the largest candidate (most trainable parameters)
that fits the device's SRAM. :meth:`Part.work` is what training it runs: the
prefix's forward pass plus the suffix's training (3x its forward MACs); a
bias-only update costs a forward and one backward pass (activation gradients,
no weight gradients).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from tinylarge.hardware.catalogue import DeviceProfile
from tinylarge.hardware.cost import Infer, Train, Work
from tinylarge.hardware.fit import format_bytes
from tinylarge.models import cuts
from tinylarge.models.memory import OPTIMIZER_STATE_COPIES
from tinylarge.models.profile import ModelProfile
from tinylarge.models.profiler import profile_model
from tinylarge.models.weights import Weights
from tinylarge.models.zoo import ModelSpec
from tinylarge.schemes.options.transfer import PartMode
from tinylarge.sim.training import TrainSettings, build, make_optimizer, run_steps, seeded, tensor


@dataclass(frozen=True)
class Part:
    """A trainable part of a chain model and what training it needs.

    Attributes:
        name: ``"all"``, ``"from-<k>"``, ``"head"`` or ``"bias"``.
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

    def work(self, samples: int) -> list[Work]:
        """What training this part on ``samples`` examples runs on the device."""
        if samples == 0:
            return []
        if self.cut is None:
            return [Train(self.suffix, samples, backward_factor=1.0)]
        train: list[Work] = [Train(self.suffix, samples)]
        if self.prefix is None:
            return train
        return [*train, Infer(self.prefix, batch=samples, dtype="fp32")]

    def describe(self) -> dict[str, object]:
        return {
            "part": self.name,
            "trainable_params": self.trainable_params,
            "train_memory_bytes": self.memory_bytes,
        }


def _profile(
    module: nn.Module, shape: tuple[int, ...], batch: int, opt: str, name: str
) -> ModelProfile:
    return profile_model(
        module, input_shape=shape, name=name, dtype="fp32", train_batch_size=batch, optimizer=opt
    )


def candidate_parts(spec: ModelSpec, *, batch_size: int, optimizer: str) -> list[Part]:
    """Every suffix that starts at a cut (:func:`~tinylarge.models.cuts.suffix_cuts`), largest
    first, then ``bias``; ``optimizer`` as the profiler names it ("sgd", "momentum", "adam")."""
    model = spec.build()
    children = list(cuts.as_chain(model, name=spec.name).children())
    points = cuts.cut_points(model, input_shape=spec.input_shape, name=spec.name, required=False)
    shapes = {p.index: p.output_shape for p in points}
    keys = list(model.state_dict())
    starts = cuts.suffix_cuts(model, input_shape=spec.input_shape, name=spec.name)
    parts: list[Part] = []
    for k in starts:
        suffix = _profile(
            nn.Sequential(*children[k:]),
            spec.input_shape if k == 0 else shapes[k],
            batch_size,
            optimizer,
            f"{spec.name}[{k}:]",
        )
        prefix = None
        if k > 0:
            prefix = _profile(
                nn.Sequential(*children[:k]), spec.input_shape, 1, optimizer, f"{spec.name}[:{k}]"
            )
        assert suffix.train_memory_bytes is not None
        parts.append(
            Part(
                name="all" if k == 0 else f"from-{k}",
                cut=k,
                keys=tuple(key for key in keys if int(key.split(".")[0]) >= k),
                trainable_params=sum(p.numel() for c in children[k:] for p in c.parameters()),
                memory_bytes=suffix.train_memory_bytes + (prefix.peak_sram_bytes if prefix else 0),
                prefix=prefix,
                suffix=suffix,
            )
        )
    if len(parts) > 1:
        parts[-1] = replace(parts[-1], name="head")
    whole = parts[0].suffix
    biases = [(k, p) for k, p in model.named_parameters() if k.endswith(".bias")]
    if biases and whole.train_memory_bytes is not None:
        copies = OPTIMIZER_STATE_COPIES[optimizer]
        n_bias = sum(p.numel() for _, p in biases)
        activations = whole.train_memory_bytes - whole.params * 4 * (2 + copies)
        parts.append(
            Part(
                name="bias",
                cut=None,
                keys=tuple(k for k, _ in biases),
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
    """The trained part's tensors by state-dict key (what the device uploads)."""

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
    if task.cut is not None:
        for child in list(model.children())[task.cut :]:
            child.train()
    wanted = set(task.keys)
    for name, p in model.named_parameters():
        p.requires_grad_(name in wanted)
    xs, ys = tensor(x[task.indices]), tensor(y[task.indices])

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(model(xs[idx]), ys[idx])

    stats = run_steps(
        loss_of,
        make_optimizer(model, task.settings),
        n=len(task.indices),
        settings=task.settings,
        gen=gen,
    )
    state = model.state_dict()
    tensors = {k: state[k].detach().numpy().copy() for k in task.keys}
    return PartResult(task.client, tensors, len(task.indices), stats.loss)
