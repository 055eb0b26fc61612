"""Sample-level DP-SGD (Abadi et al. 2016) with Opacus, as a building block.

Abadi, Chu, Goodfellow, McMahan, Mironov, Talwar and Zhang, "Deep Learning
with Differential Privacy", CCS 2016, https://arxiv.org/abs/1607.00133: every
step draws a batch by Poisson sampling (each example independently with
probability ``q``), clips each example's gradient to L2 norm ``max_grad_norm``
(``C``), sums, adds Gaussian noise of standard deviation
``noise_multiplier * C`` and divides by the expected batch size ``q * N``. The
privacy spent over the steps is the accountant's business
(:mod:`tinylarge.security.accounting`); this module trains.

Opacus (https://opacus.ai, Yousefpour et al. 2021,
https://arxiv.org/abs/2109.12298) does the work: its grad-sample hooks compute
per-sample gradients, its ``DPOptimizer`` clips and noises, its
``DPDataLoader`` samples. :func:`make_private` wires the three without
Opacus's ``PrivacyEngine``, so that both sources of randomness come from
generators seeded here (the engine takes a noise generator but samples with
the global RNG) and the model stays the caller's object (hooks, no wrapper).

Randomness: noise and sampling come from ``torch.Generator`` objects seeded
from ``seed`` (``secure_mode=False``): the same seed gives the same weights.
That is right for a simulation and wrong for a deployment, where the noise
must come from a cryptographically secure source and resist floating-point
attacks (Mironov 2012; Jin et al. 2021, https://arxiv.org/abs/2112.05307;
Opacus's ``secure_mode=True``).

Costs, for the fit check and the bill: :func:`per_sample_grad_bytes` and
:func:`dpsgd_memory` (memory over plain training), :func:`dpsgd_extra_macs`
and :func:`dpsgd_backward_factor` (work over plain training).

Opacus is the optional ``privacy`` extra; this module imports it only when a
function needs it.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterator, Sized
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

from tinylarge.errors import TinylargeError
from tinylarge.models.profile import ModelProfile

INSTALL_HINT = "pip install 'tinylarge[privacy]'"

#: MAC-equivalents per parameter per sample of clipping: the squared norm, the scaled sum.
CLIP_OPS_PER_PARAM = 2
#: MAC-equivalents per parameter per step: draw the Gaussian, add it, divide by the batch.
NOISE_OPS_PER_PARAM = 3


def _opacus(module: str) -> Any:
    """``opacus.<module>``, or a TinylargeError with the install hint (Opacus has no stubs)."""
    try:
        return importlib.import_module(f"opacus.{module}")
    except ImportError:
        raise TinylargeError(f"DP-SGD needs Opacus, the privacy extra: {INSTALL_HINT}") from None


@dataclass(frozen=True)
class DpSgdSpec:
    """DP-SGD's hyper-parameters, with Opacus's names.

    Attributes:
        noise_multiplier: ``sigma``, the noise's standard deviation over ``max_grad_norm``
            (0 clips without noise, and gives no privacy).
        max_grad_norm: ``C``, the L2 norm each example's gradient is clipped to.
        poisson_sampling: draw each batch by Poisson sampling (what the accountants assume);
            ``False`` keeps shuffled fixed-size batches (an approximation the accountants do
            not cover).
    """

    noise_multiplier: float
    max_grad_norm: float
    poisson_sampling: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier >= 0):
            raise TinylargeError(
                f"noise_multiplier must be a finite number >= 0, got {self.noise_multiplier}"
            )
        if not (math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0):
            raise TinylargeError(
                f"max_grad_norm must be a finite number > 0, got {self.max_grad_norm}"
            )


# -- what Opacus can train -----------------------------------------------------------------------
def check_supported(model: nn.Module) -> None:
    """Refuse, in one line naming the layers, a model Opacus cannot train with DP-SGD.

    Runs Opacus's ``ModuleValidator`` validators layer by layer (so the line can name each
    layer) and its grad-sample check (a trainable layer with buffers, such as BatchNorm's
    running statistics, mixes examples of a batch: no per-sample gradient exists). The model
    is never changed: ``opacus.validators.ModuleValidator.fix`` replaces BatchNorm with
    GroupNorm, and is the caller's decision.
    """
    validators = _opacus("validators").ModuleValidator.VALIDATORS
    bad: list[str] = []
    for name, layer in model.named_modules():
        if not any(p.requires_grad for p in layer.parameters(recurse=False)):
            continue
        validate = validators.get(type(layer))
        if (validate is not None and validate(layer)) or any(True for _ in layer.buffers(False)):
            bad.append(f"{name or '<model>'} ({type(layer).__name__})")
    if bad:
        raise TinylargeError(
            f"DP-SGD cannot train layer{'s' if len(bad) > 1 else ''} {', '.join(bad)}: "
            "Opacus has no per-sample gradient for it; use GroupNorm instead of BatchNorm "
            "(opacus.validators.ModuleValidator.fix swaps BatchNorm for GroupNorm and LSTM, "
            "GRU and MultiheadAttention for their DP versions)"
        )


# -- private training ----------------------------------------------------------------------------
def _generators(seed: int) -> tuple[torch.Generator, ...]:
    """Independent generators from ``seed``: the noise, the sampling, and the loader's own
    (a ``DataLoader`` draws a worker seed from its generator before each epoch; with a
    generator of its own the sampler's draws are the same with and without the loader)."""
    states = np.random.SeedSequence(seed).generate_state(3, dtype=np.uint64)
    return tuple(torch.Generator().manual_seed(int(s)) for s in states)


@dataclass
class PrivateTraining:
    """The private versions of a model, its optimizer and its data.

    Train as usual: ``for x, y in p.data_loader: p.optimizer.zero_grad(); loss(p.model(x),
    y).backward(); p.optimizer.step()`` (the loss must be a batch *mean*). A loop over index
    batches uses :meth:`batch_indices` instead of the loader.

    Attributes:
        model: the caller's model, with Opacus's grad-sample hooks attached (not wrapped).
        optimizer: Opacus's ``DPOptimizer`` over the caller's optimizer: clips, noises and
            divides by ``expected_batch_size``, then steps the caller's optimizer.
        data_loader: Poisson sampling (Opacus's ``DPDataLoader``), or the fixed-size batches.
        sample_rate: ``q``, the probability an example is in a batch (``1 / len(loader)``, as
            Opacus sets it, or the one given): what the accountant needs, with :attr:`steps`.
        expected_batch_size: ``q * N`` rounded down (Opacus's rule), the divisor of the sum.
        spec: the hyper-parameters.
        steps: optimizer steps taken so far (steps Opacus skipped are not counted).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    data_loader: DataLoader[Any]
    sample_rate: float
    expected_batch_size: int
    spec: DpSgdSpec
    steps: int = 0
    _hooks: Any = field(default=None, repr=False)

    def batch_indices(self) -> Iterator[torch.Tensor]:
        """One epoch of the loader's batches as index tensors, for loops that index tensors
        themselves. It draws from the loader's sampler: iterate one or the other, and a fresh
        :func:`make_private` with the same seed gives the loader's batches."""
        sampler = self.data_loader.batch_sampler
        if sampler is None:
            raise TinylargeError("the data loader has no batch sampler to draw indices from")
        for idx in sampler:
            yield torch.as_tensor(list(idx), dtype=torch.long)

    def close(self) -> nn.Module:
        """Remove Opacus's hooks and what it left on the parameters; return the plain model
        (which :func:`make_private` may then take again, e.g. in the next round)."""
        if self._hooks is not None:
            self._hooks.cleanup()
            self._hooks = None
        for p in self.model.parameters():
            if hasattr(p, "summed_grad"):
                del p.summed_grad
        return self.model


def make_private(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: DataLoader[Any] | Dataset[Any],
    spec: DpSgdSpec,
    *,
    seed: int,
    batch_size: int | None = None,
    sample_rate: float | None = None,
) -> PrivateTraining:
    """Attach DP-SGD to ``model``, ``optimizer`` and ``data`` (Opacus's ``make_private``).

    Args:
        model: a model :func:`check_supported` accepts; its parameters are ``optimizer``'s.
        optimizer: any torch optimizer over the model's parameters (SGD in Abadi et al.).
        data: a ``DataLoader``, whose batch size sets ``q = 1 / len(loader)``; or a dataset
            and ``batch_size``. With Poisson sampling the loader becomes a ``DPDataLoader``
            drawing from our generator; without, a dataset is shuffled by our generator and a
            loader is kept as given (its order is then the caller's).
        spec: noise multiplier, clipping norm and sampling.
        seed: seeds the noise and the sampling (``secure_mode=False``).
        batch_size: the (expected) batch size, with a dataset only.
        sample_rate: Poisson sampling only: ``q`` itself (``batch_size / N`` for an expected
            batch of ``batch_size``) instead of Opacus's ``1 / len(loader)``; an epoch is then
            :func:`steps_per_epoch` ``(q)`` steps.

    Raises:
        TinylargeError: an unsupported layer, a missing extra, a bad batch size, or an
            optimizer over other parameters than the model's.
    """
    check_supported(model)
    owned = {id(p) for p in model.parameters()}
    if any(id(p) not in owned for g in optimizer.param_groups for p in g["params"]):
        raise TinylargeError("the optimizer must be over the model's own parameters")
    noise_gen, sampling_gen, loader_gen = _generators(seed)
    if isinstance(data, DataLoader):
        if batch_size is not None:
            raise TinylargeError("batch_size is the data loader's; pass it with a dataset only")
        loader: DataLoader[Any] = data
    else:
        if batch_size is None or batch_size < 1:
            raise TinylargeError(f"a dataset needs a batch_size >= 1, got {batch_size}")
        shuffled = RandomSampler(data, generator=sampling_gen)  # type: ignore[arg-type]
        loader = DataLoader(data, batch_size=batch_size, sampler=shuffled, generator=loader_gen)
    n = len(loader.dataset) if isinstance(loader.dataset, Sized) else 0
    if n == 0 or len(loader) == 0:
        raise TinylargeError("DP-SGD needs a non-empty dataset of known length")
    if sample_rate is not None and not spec.poisson_sampling:
        raise TinylargeError("sample_rate is Poisson sampling's; fixed-size batches have none")
    if sample_rate is not None:
        _check_rate(sample_rate)
        poisson = _opacus("data_loader").DPDataLoader(
            loader.dataset, sample_rate=sample_rate, generator=sampling_gen
        )
        # Opacus draws int(1 / q) batches an epoch; set the count so that rounding of 1 / q
        # cannot drop one (1 / (3 / 9) is 3.0000000000000004, another ratio may fall below)
        poisson.batch_sampler.steps = steps_per_epoch(sample_rate)
        poisson.generator = loader_gen
        loader = poisson
    elif spec.poisson_sampling:
        loader = _opacus("data_loader").DPDataLoader.from_data_loader(
            loader, generator=sampling_gen
        )
        loader.generator = loader_gen
    if sample_rate is None:
        sample_rate = 1.0 / len(loader)
    # Opacus's rule, int(q N), less the float error that would take q N = 32 to 31
    expected = max(1, int(n * sample_rate + 1e-9))
    hooks = _opacus("grad_sample").GradSampleHooks(
        model, batch_first=True, loss_reduction="mean", strict=True
    )
    if spec.poisson_sampling:  # a step per batch: accumulating would break the sampling
        hooks.forbid_grad_accumulation()
    dp_optimizer = _opacus("optimizers").DPOptimizer(
        optimizer,
        noise_multiplier=spec.noise_multiplier,
        max_grad_norm=spec.max_grad_norm,
        expected_batch_size=expected,
        loss_reduction="mean",
        generator=noise_gen,
        secure_mode=False,
    )
    private = PrivateTraining(
        model, dp_optimizer, loader, sample_rate, expected, spec, _hooks=hooks
    )

    def count(_: Any) -> None:
        private.steps += 1

    dp_optimizer.attach_step_hook(count)
    return private


def _check_rate(sample_rate: float) -> None:
    if not (math.isfinite(sample_rate) and 0 < sample_rate <= 1):
        raise TinylargeError(f"sample_rate must be in (0, 1], got {sample_rate}")


def poisson_sample_rate(num_examples: int, batch_size: int) -> float:
    """``q = batch_size / num_examples`` (at most 1): Poisson sampling with an expected batch
    of ``batch_size`` examples out of ``num_examples``.

    >>> poisson_sample_rate(1000, 32), poisson_sample_rate(20, 32)
    (0.032, 1.0)
    """
    if num_examples < 1 or batch_size < 1:
        raise TinylargeError(
            f"Poisson sampling needs num_examples >= 1 and batch_size >= 1, got "
            f"{num_examples} and {batch_size}"
        )
    return min(1.0, batch_size / num_examples)


def steps_per_epoch(sample_rate: float) -> int:
    """Steps of one epoch of Poisson sampling at ``sample_rate``: ``floor(1 / q)``, at least 1
    (Opacus's ``UniformWithReplacementSampler``; Abadi et al.'s ``N / L`` steps an epoch). A
    ratio within 1e-9 of an integer is that integer.

    >>> steps_per_epoch(0.032), steps_per_epoch(3 / 9), steps_per_epoch(1.0)
    (31, 3, 1)
    """
    _check_rate(sample_rate)
    ratio = 1.0 / sample_rate
    nearest = round(ratio)
    return max(1, nearest if abs(ratio - nearest) <= 1e-9 * ratio else math.floor(ratio))


# -- memory --------------------------------------------------------------------------------------
def _trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def per_sample_grad_bytes(model: nn.Module, batch_size: int) -> int:
    """Bytes of the per-sample gradients Opacus holds from the backward pass to the step.

    Opacus's grad-sample hooks store ``p.grad_sample`` of shape ``(batch, *p.shape)`` for
    every trainable parameter ``p`` (``opacus/grad_sample/grad_sample_module.py``,
    ``create_or_accumulate_grad_sample``): ``batch_size * trainable parameters * 4`` bytes at
    float32. This is most of DP-SGD's extra memory; :func:`dpsgd_memory` has the rest. With
    Poisson sampling, use a batch size the sampled batches rarely exceed.
    """
    if batch_size < 0:
        raise TinylargeError(f"batch_size must be >= 0, got {batch_size}")
    return batch_size * sum(p.numel() * p.element_size() for p in _trainable(model))


@dataclass(frozen=True)
class DpSgdMemory:
    """Bytes DP-SGD holds beyond plain training, at one batch size.

    Attributes:
        grad_sample_bytes: the per-sample gradients (:func:`per_sample_grad_bytes`).
        norm_bytes: the clipping's norms, ``batch * (2 T + 2) * 4`` for ``T`` trainable
            tensors: a norm per sample per tensor, their stack, the per-sample norm and the
            clip factor (``DPOptimizer.clip_and_accumulate``).
        summed_grad_bytes: the clipped sum ``p.summed_grad``, one more gradient's worth.
        workspace_bytes: the largest transient: the noise of the largest parameter tensor,
            or, when the input shape is known, a convolution's unfolded input
            ``batch * C_in * prod(kernel) * output positions * 4``
            (``opacus/grad_sample/conv.py``), alive while that layer's hook runs.
    """

    grad_sample_bytes: int
    norm_bytes: int
    summed_grad_bytes: int
    workspace_bytes: int

    @property
    def total_bytes(self) -> int:
        return (
            self.grad_sample_bytes + self.norm_bytes + self.summed_grad_bytes + self.workspace_bytes
        )


def _conv_unfold_elements(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Largest per-sample unfolded input of a trainable convolution, in elements."""
    sizes: list[int] = []

    def recorder(conv: nn.Conv1d | nn.Conv2d | nn.Conv3d) -> Any:
        def record(_: nn.Module, __: Any, out: torch.Tensor) -> None:
            positions = math.prod(out.shape[2:])
            sizes.append(conv.in_channels * math.prod(conv.kernel_size) * positions)

        return record

    handles = [
        m.register_forward_hook(recorder(m))
        for m in model.modules()
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d) and m.weight.requires_grad
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape)))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return max(sizes, default=0)


def dpsgd_memory(
    model: nn.Module, batch_size: int, *, input_shape: tuple[int, ...] | None = None
) -> DpSgdMemory:
    """What DP-SGD at ``batch_size`` adds to plain training's memory (see :class:`DpSgdMemory`).

    ``input_shape`` (no batch dimension) adds the convolutions' unfold workspace; without it
    only the noise is counted as workspace.
    """
    params = _trainable(model)
    grad_samples = per_sample_grad_bytes(model, batch_size)
    itemsize = max((p.element_size() for p in params), default=4)
    noise = max((p.numel() * p.element_size() for p in params), default=0)
    unfold = 0
    if input_shape is not None:
        unfold = batch_size * _conv_unfold_elements(model, input_shape) * itemsize
    return DpSgdMemory(
        grad_sample_bytes=grad_samples,
        norm_bytes=batch_size * (2 * len(params) + 2) * itemsize,
        summed_grad_bytes=sum(p.numel() * p.element_size() for p in params),
        workspace_bytes=max(noise, unfold),
    )


# -- work ----------------------------------------------------------------------------------------
def dpsgd_extra_macs(profile: ModelProfile, *, batch_size: int, steps: int = 1) -> int:
    """MAC-equivalents DP-SGD adds to plain training over ``steps`` steps that took
    ``batch_size`` examples in all (one step of ``batch_size`` by default).

    ``batch * (sum over layers with parameters of (MACs + output elements) + 2 P) + 3 P steps``:

    - per-sample gradients: a layer's weight gradient, computed per example, costs its forward
      MACs (Opacus's einsums over activations and backprops, ``opacus/grad_sample/``), and
      its bias gradient one sum per output element. Plain backward still computes the
      batched gradient as well, so this is all extra.
    - clipping: per example and parameter, one multiply-add for the squared norm and one
      for the clipped sum (:data:`CLIP_OPS_PER_PARAM`).
    - noise: per parameter and step, draw, add and scale (:data:`NOISE_OPS_PER_PARAM`).

    ``P`` is ``profile.params``. The per-sample gradient term is checked against PyTorch's
    FLOP counter in the tests.
    """
    if batch_size < 0 or steps < 0:
        raise TinylargeError(f"batch_size and steps must be >= 0, got {batch_size}, {steps}")
    per_sample = sum(
        layer.macs + math.prod(layer.output_shape) for layer in profile.layers if layer.params > 0
    )
    per_sample += CLIP_OPS_PER_PARAM * profile.params
    return batch_size * per_sample + steps * NOISE_OPS_PER_PARAM * profile.params


def dpsgd_backward_factor(
    profile: ModelProfile, *, batch_size: int, backward_factor: float = 2.0, steps: int = 1
) -> float:
    """The ``backward_factor`` that bills DP-SGD as :class:`~tinylarge.hardware.cost.Train`
    (``batch_size`` examples in all over ``steps`` steps: one step by default).

    Plain training costs ``(1 + backward_factor)`` forward passes per example; DP-SGD adds
    :func:`dpsgd_extra_macs`, i.e. that over ``batch_size * profile.macs`` forward passes per
    example. About ``backward_factor + 1`` for convolutional
    models (the per-sample weight gradients repeat the weight gradient), more for models with
    many parameters per MAC, where clipping dominates.
    """
    if batch_size < 1:
        raise TinylargeError(f"batch_size must be >= 1, got {batch_size}")
    if profile.macs <= 0:
        raise TinylargeError(f"model {profile.name!r} has no MACs to scale the extra work by")
    return backward_factor + dpsgd_extra_macs(profile, batch_size=batch_size, steps=steps) / (
        batch_size * profile.macs
    )
