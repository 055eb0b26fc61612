"""A model's state as plain numpy arrays: what travels over links and into checkpoints.

``Weights`` is the list of a module's ``state_dict()`` tensors (parameters and
buffers) in state-dict order, as numpy arrays. Schemes, aggregation and
checkpoints only ever see this form; :func:`get_weights` and
:func:`set_weights` convert at the edge of PyTorch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torch import nn

Weights = list[np.ndarray]


def get_weights(model: nn.Module) -> Weights:
    """The model's state (parameters and buffers) as numpy arrays in state-dict order."""
    return [t.detach().cpu().numpy().copy() for t in model.state_dict().values()]


def set_weights(model: nn.Module, weights: Sequence[np.ndarray]) -> None:
    """Load ``weights`` (state-dict order) into ``model``."""
    import torch

    keys = list(model.state_dict().keys())
    if len(keys) != len(weights):
        raise ValueError(f"model has {len(keys)} tensors, got {len(weights)}")
    state = {k: torch.from_numpy(np.asarray(w).copy()) for k, w in zip(keys, weights, strict=True)}
    model.load_state_dict(state)


def nbytes(*arrays: np.ndarray | Sequence[np.ndarray]) -> int:
    """Bytes on the wire of arrays or lists of arrays (their numpy ``nbytes``).

    >>> nbytes(np.zeros(3, np.float32), [np.zeros(2, np.float16)])
    16
    """
    total = 0
    for a in arrays:
        if isinstance(a, np.ndarray):
            total += a.nbytes
        else:
            total += sum(np.asarray(t).nbytes for t in a)
    return int(total)


def num_values(weights: Sequence[np.ndarray]) -> int:
    """How many numbers ``weights`` hold (the element-wise work of averaging them once)."""
    return int(sum(np.asarray(w).size for w in weights))
