"""Shared pieces of the knowledge-transfer schemes: TL, FTL, FedGKT, FedDF and FML.

Vu et al., "Integration of TinyML and LargeML: A Survey of 6G and Beyond",
https://arxiv.org/abs/2505.15854 (bidirectional integration frameworks):
heterogeneous tiny device models and a large server model learn from each other
through weights, features or logits, never raw data. This module holds what the
scheme modules share:

- :class:`ModelChoice` and :func:`spec_for`: a zoo model per device profile or
  tier (``{"mcu": {"name": "mlp"}, "sbc": {"name": "cnn-tiny"}}``), the
  configured model for the others;
- :func:`profile_spec` and :func:`training_fit`: cached profiles and the
  training-memory fit of a model on a device;
- :func:`kd_loss`: Hinton's temperature-scaled distillation loss (from
  :mod:`tinylarge.compress.distill`, re-exported for the schemes);
- :class:`Exchange`: the simulated clock of one round of message exchanges
  (downloads, device compute, uploads; outages, dropouts and the deadline),
  every byte and MAC billed through the context;
- the helpers the module-level task functions share (seeding, batching, logits).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, field_validator
from torch import nn

from tinylarge.compress.distill import kd_loss as kd_loss
from tinylarge.errors import TinylargeError
from tinylarge.hardware.catalogue import TIERS, DeviceProfile, get_device
from tinylarge.hardware.cost import ComputeCost
from tinylarge.hardware.fit import FitReport, check_fit
from tinylarge.models.profile import ModelProfile
from tinylarge.models.profiler import profile_model
from tinylarge.sim.client import (
    ModelSpec,
    TrainSettings,
    Weights,
    get_weights,
    make_optimizer,
    set_weights,
)
from tinylarge.sim.context import Client, Context


class ModelChoice(BaseModel):
    """A zoo model by name with its builder options."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    options: dict[str, Any] = {}

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from tinylarge.models.zoo import MODELS

        if v not in MODELS:
            raise ValueError(f"unknown model {v!r}; known: {', '.join(MODELS.names())}")
        return v


def check_model_map(value: dict[str, ModelChoice]) -> dict[str, ModelChoice]:
    """Keys of a per-device model map must be device profile ids or tiers."""
    for key in value:
        if key in TIERS:
            continue
        try:
            get_device(key)
        except TinylargeError:
            raise ValueError(
                f"{key!r} is neither a device tier ({', '.join(TIERS)}) nor a device profile "
                "(see `tinylarge devices`)"
            ) from None
    return value


def spec_of(choice: ModelChoice, *, input_shape: Sequence[int], num_classes: int) -> ModelSpec:
    """The model spec of ``choice`` for inputs of ``input_shape``."""
    return ModelSpec(
        name=choice.name,
        input_shape=tuple(int(d) for d in input_shape),
        num_classes=num_classes,
        options=dict(choice.options),
    )


def spec_for(ctx: Context, device: DeviceProfile, models: Mapping[str, ModelChoice]) -> ModelSpec:
    """The device-side model of ``device``: by profile id, else by tier, else the config's."""
    choice = models.get(device.id) or models.get(device.tier)
    if choice is None:
        return ctx.spec
    return spec_of(choice, input_shape=ctx.spec.input_shape, num_classes=ctx.spec.num_classes)


def optimizer_name(settings: TrainSettings) -> str:
    """The profiler's optimizer name for the configured optimizer (its state in memory)."""
    return {"adam": "adam", "momentum": "sgd-momentum"}.get(settings.optimizer, "sgd")


_PROFILES: dict[tuple[Any, ...], ModelProfile] = {}


def profile_module(
    module: nn.Module, *, input_shape: Sequence[int], batch_size: int, optimizer: str, name: str
) -> ModelProfile:
    """fp32 profile of ``module`` for training at ``batch_size`` with ``optimizer``."""
    return profile_model(
        module,
        input_shape=tuple(input_shape),
        name=name,
        dtype="fp32",
        train_batch_size=batch_size,
        optimizer=optimizer,
    )


def profile_spec(spec: ModelSpec, *, batch_size: int, optimizer: str) -> ModelProfile:
    """fp32 profile of a spec's model (cached per spec, batch size and optimizer)."""
    options = repr(sorted(spec.options.items()))
    key = (spec.name, spec.input_shape, spec.num_classes, options, batch_size, optimizer)
    if key not in _PROFILES:
        _PROFILES[key] = profile_module(
            spec.build(),
            input_shape=spec.input_shape,
            batch_size=batch_size,
            optimizer=optimizer,
            name=spec.name,
        )
    return _PROFILES[key]


def training_fit(ctx: Context, spec: ModelSpec, device: DeviceProfile) -> FitReport:
    """Whether ``device`` can train ``spec`` at the configured batch size and optimizer."""
    prof = profile_spec(
        spec, batch_size=ctx.settings.batch_size, optimizer=optimizer_name(ctx.settings)
    )
    return check_fit(prof, device, training=True)


def default_server_model(input_shape: Sequence[int]) -> ModelChoice:
    """The large server model for inputs of ``input_shape``: ``cnn-large`` (width 16) for
    image-shaped inputs of at least 2x2, else an MLP of two 256-wide hidden layers."""
    if len(input_shape) == 3 and min(input_shape[1:]) >= 2:
        return ModelChoice(name="cnn-large", options={"width": 16})
    return ModelChoice(name="mlp", options={"hidden": [256, 256]})


def server_settings(
    ctx: Context, *, batch_size: int, lr: float | None, optimizer: str | None
) -> TrainSettings:
    """The server's training settings: the run's, with its own batch size, lr and optimizer."""
    s = ctx.settings
    return replace(s, batch_size=batch_size, lr=lr or s.lr, optimizer=optimizer or s.optimizer)


def device_models(
    ctx: Context, specs: Mapping[int, ModelSpec], fits: Mapping[str, FitReport], **extra: Any
) -> dict[str, dict[str, Any]]:
    """summary.json's ``device_models``: the model each profile runs and its training memory."""
    return {
        c.profile.id: {
            "model": specs[c.id].name,
            "options": specs[c.id].options,
            "train_memory_bytes": fits[c.profile.id].sram_bytes,
            **{k: v[c.id] for k, v in extra.items()},
        }
        for c in ctx.clients
    }


def fits_summary(ctx: Context, fits: Mapping[str, FitReport]) -> dict[str, Any]:
    """summary.json's ``fits`` and ``excluded`` for the scheme's own device-side models."""
    excluded: dict[str, dict[str, Any]] = {}
    for c in ctx.clients:
        report = fits[c.profile.id]
        if not report.fits:
            entry = excluded.setdefault(c.profile.id, {"count": 0, "reason": report.reason})
            entry["count"] += 1
    return {"fits": {pid: r.fits for pid, r in fits.items()}, "excluded": excluded}


def require_any(ctx: Context, fits: Mapping[str, FitReport], *, what: str) -> None:
    """Raise a user error naming every profile's reason if no device can take part."""
    if any(fits[c.profile.id].fits for c in ctx.clients):
        return
    detail = "; ".join(f"{pid}: {r.reason}" for pid, r in sorted(fits.items()))
    raise TinylargeError(f"no device of the topology can train {what} ({detail})")


def hold_out(
    ctx: Context, *, fraction: float, classes: Sequence[int] | None = None
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Split off a server-held share of the training set; the clients keep the rest.

    Returns the server's indices (``fraction`` of the training set drawn at
    random from the run seed, restricted to ``classes`` if given) and each
    client's remaining indices. The server's samples never stay on a device.
    """
    n = len(ctx.dataset.y_train)
    rng = np.random.default_rng([ctx.seed, 0x5E7])
    chosen = rng.permutation(n)[: max(1, round(fraction * n))]
    if classes is not None:
        chosen = chosen[np.isin(ctx.dataset.y_train[chosen], np.asarray(classes))]
        if len(chosen) == 0:
            raise TinylargeError(f"server classes {list(classes)} hold no training samples")
    server = np.sort(chosen)
    mask = np.zeros(n, dtype=bool)
    mask[server] = True
    local = {c.id: c.indices[~mask[c.indices]] for c in ctx.clients}
    return server, local


# -- losses and task-side helpers -------------------------------------------------
def seeded(seed: int, *, threads: int = 1) -> torch.Generator:
    """Make a task deterministic: fixed intra-op threads, torch seeded; a shuffling generator.

    Device tasks use one thread; server work uses ``engine.threads`` (the same
    on every backend, since the server's work always runs in the driver).
    """
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def batches(
    n: int, *, batch_size: int, epochs: int, gen: torch.Generator
) -> Iterator[torch.Tensor]:
    """Shuffled mini-batch index tensors over ``n`` samples, ``epochs`` times."""
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            yield order[i : i + batch_size]


def train_kd(
    model: nn.Module,
    xs: torch.Tensor,
    ys: torch.Tensor | None,
    teacher: torch.Tensor | None,
    *,
    settings: TrainSettings,
    epochs: int,
    alpha: float,
    temperature: float,
    gen: torch.Generator,
) -> float:
    """Train ``model`` on ``xs`` with cross-entropy to ``ys`` (if given) plus ``alpha`` times
    the distillation loss to the ``teacher`` logits (if given); the mean batch loss."""
    model.train()
    opt = make_optimizer(model, settings)
    total, steps = 0.0, 0
    for idx in batches(len(xs), batch_size=settings.batch_size, epochs=epochs, gen=gen):
        opt.zero_grad(set_to_none=True)
        out = model(xs[idx])
        loss = torch.zeros(())
        if ys is not None:
            loss = loss + nn.functional.cross_entropy(out, ys[idx])
        if teacher is not None:
            loss = loss + alpha * kd_loss(out, teacher[idx], temperature)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        total += float(loss.detach())
        steps += 1
    return total / max(steps, 1)


def init_weights(spec: ModelSpec, *, seed: int) -> Weights:
    """Fresh weights of ``spec``'s model, deterministic in ``seed``."""
    torch.manual_seed(seed)
    return get_weights(spec.build())


def tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def build(spec: ModelSpec, weights: Weights | None) -> nn.Module:
    model = spec.build()
    if weights is not None:
        set_weights(model, weights)
    return model


@torch.no_grad()
def logits_of(model: nn.Module, x: np.ndarray, *, batch_size: int = 1024) -> np.ndarray:
    """Eval-mode outputs of ``model`` on ``x`` as float32 numpy."""
    model.eval()
    outs = [
        model(torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size])))
        for i in range(0, len(x), batch_size)
    ]
    return torch.cat(outs).numpy().astype(np.float32, copy=False)


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((logits.argmax(1) == y).mean()) if len(y) else 0.0


def mean_loss(logits: np.ndarray, y: np.ndarray) -> float:
    out = nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y))
    return float(out)


def weighted_mean(values: Mapping[int, float], weights: Mapping[int, int]) -> float | None:
    """Mean of per-client values weighted by their sample counts (None if empty)."""
    total = sum(weights[k] for k in values)
    if not values or total == 0:
        return None
    return float(sum(v * weights[k] for k, v in values.items()) / total)


def device_metrics(
    per: Mapping[int, tuple[float, float]], sizes: Mapping[int, int]
) -> dict[str, float | None]:
    """``accuracy`` and ``loss``: sample-weighted means of per-device ``(accuracy, loss)``."""
    return {
        "accuracy": weighted_mean({k: acc for k, (acc, _) in per.items()}, sizes),
        "loss": weighted_mean({k: loss for k, (_, loss) in per.items()}, sizes),
    }


def by_profile(ctx: Context, values: Mapping[int, float]) -> dict[str, float]:
    """Mean of per-client values per device profile."""
    groups: dict[str, list[float]] = {}
    for c in ctx.clients:
        if c.id in values:
            groups.setdefault(c.profile.id, []).append(values[c.id])
    return {pid: float(np.mean(v)) for pid, v in groups.items()}


def nbytes(*arrays: np.ndarray | Sequence[np.ndarray]) -> int:
    """Bytes of what is sent: numpy ``nbytes`` of arrays or lists of arrays."""
    total = 0
    for a in arrays:
        if isinstance(a, np.ndarray):
            total += a.nbytes
        else:
            total += sum(np.asarray(t).nbytes for t in a)
    return int(total)


# -- the round clock ---------------------------------------------------------------
Payload = Sequence[tuple[str, int]]


@dataclass
class Exchange:
    """One synchronous round of messages: downloads, device compute, uploads.

    Each participant's clock runs download + compute + upload; a transfer in
    outage or a dropout (``engine.dropout_prob``, drawn after the download)
    drops it for the round, and an arrival after ``engine.deadline_s`` makes
    it a straggler (its work is billed, its upload discarded). Every transfer
    and computation is billed through the context's ledger.
    """

    ctx: Context
    rnd: int
    elapsed: dict[int, float] = field(default_factory=dict)
    dropped: dict[int, str] = field(default_factory=dict)

    def _send(self, clients: Sequence[Client], payloads: Mapping[int, Payload], up: bool) -> None:
        shares = self.ctx.shares(clients)
        for c in clients:
            for what, size in payloads.get(c.id, ()):
                if c.id in self.dropped or size <= 0:
                    continue
                seconds, outage = self.ctx.transfer(
                    self.rnd,
                    c,
                    size,
                    direction="up" if up else "down",
                    what=what,
                    share=shares[c.id],
                )
                if outage:
                    self.dropped[c.id] = "outage"
                self.elapsed[c.id] = self.elapsed.get(c.id, 0.0) + seconds

    def download(self, clients: Sequence[Client], payloads: Mapping[int, Payload]) -> list[Client]:
        """Send each client its payloads; return those still taking part."""
        self._send(clients, payloads, up=False)
        draws = self.ctx.rng(self.rnd, 4).random(len(clients))
        for c, u in zip(clients, draws, strict=True):
            if c.id not in self.dropped and u < self.ctx.config.engine.dropout_prob:
                self.dropped[c.id] = "dropout"
        return [c for c in clients if c.id not in self.dropped]

    def compute(self, client: Client, cost: ComputeCost, *, what: str) -> None:
        seconds = self.ctx.bill_device_compute(self.rnd, client, cost, what=what)
        self.elapsed[client.id] = self.elapsed.get(client.id, 0.0) + seconds

    def upload(self, clients: Sequence[Client], payloads: Mapping[int, Payload]) -> list[Client]:
        """Collect each client's payloads; return those that arrived in time."""
        self._send(clients, payloads, up=True)
        deadline = self.ctx.config.engine.deadline_s
        for c in clients:
            late = deadline is not None and self.elapsed.get(c.id, 0.0) > deadline
            if c.id not in self.dropped and late:
                self.dropped[c.id] = "straggler"
        return [c for c in clients if c.id not in self.dropped]

    def end_s(self, kept: Sequence[Client]) -> float:
        """When the last kept participant arrived (the deadline if a straggler was cut)."""
        end = max((self.elapsed.get(c.id, 0.0) for c in kept), default=0.0)
        deadline = self.ctx.config.engine.deadline_s
        if deadline is not None and "straggler" in self.dropped.values():
            end = deadline
        return end
