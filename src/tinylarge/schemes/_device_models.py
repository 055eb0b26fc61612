"""Per-device models and server-held data: what the knowledge-transfer schemes share.

Vu et al., "Integration of TinyML and LargeML: A Survey of 6G and Beyond",
https://arxiv.org/abs/2505.15854 (bidirectional integration frameworks):
heterogeneous tiny device models and a large server model learn from each other
through weights, features or logits, never raw data. TL, FTL, FedGKT, FedDF,
FML and FFM share

- the choice of a device's model (:func:`spec_for`): by device profile id,
  else by tier (``{"mcu": {"name": "mlp"}, "sbc": {"name": "cnn-tiny"}}``,
  :class:`~tinylarge.schemes.options.transfer.ModelChoice`), else the config's,
  and the large server model's default (:func:`default_server_model`);
- the share of the training set the server holds and no device sees
  (:func:`hold_out`: TL's pre-training data, FedDF's and FFM's public set);
- the device-side metrics when every device keeps its own model: the
  sample-weighted mean over devices (:func:`device_metrics`) and per profile
  (:func:`by_profile`), and summary.json's ``device_models``.

Rounds, prices and fit verdicts are not here: the round clock
(:mod:`tinylarge.sim.rounds`) and the context (:meth:`tinylarge.sim.context.Context.admit`)
own them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tinylarge.errors import TinylargeError
from tinylarge.hardware.catalogue import DeviceProfile
from tinylarge.hardware.fit import FitReport
from tinylarge.models.zoo import ModelSpec
from tinylarge.schemes.options.transfer import ModelChoice
from tinylarge.sim.context import Context

#: Client id of the server's own training tasks in :meth:`Context.task_seed` (no device has it).
SERVER_TASK = 10**6


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


def default_server_model(input_shape: Sequence[int]) -> ModelChoice:
    """The large server model for inputs of ``input_shape``: ``cnn-large`` (width 16) for
    image-shaped inputs of at least 2x2, else an MLP of two 256-wide hidden layers."""
    if len(input_shape) == 3 and min(input_shape[1:]) >= 2:
        return ModelChoice(name="cnn-large", options={"width": 16})
    return ModelChoice(name="mlp", options={"hidden": [256, 256]})


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


def device_models(
    ctx: Context, specs: Mapping[int, ModelSpec], **extra: Mapping[int, Any]
) -> dict[str, dict[str, Any]]:
    """summary.json's ``device_models``: the model each profile runs and the training memory
    of its verdict (:meth:`Context.admit`), plus ``extra`` per-client entries."""
    verdicts: Mapping[int, FitReport] = ctx.verdicts
    return {
        c.profile.id: {
            "model": specs[c.id].name,
            "options": specs[c.id].options,
            "train_memory_bytes": verdicts[c.id].sram_bytes,
            **{k: v[c.id] for k, v in extra.items()},
        }
        for c in ctx.clients
    }
