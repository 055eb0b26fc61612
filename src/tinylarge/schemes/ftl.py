"""Federated transfer learning (FTL): devices adapt a pre-trained model's small part, together.

Liu et al., "A Secure Federated Transfer Learning Framework", IEEE Intelligent
Systems 2020, https://arxiv.org/abs/1812.03337, and the survey's FTL
(Vu et al., arXiv 2505.15854): the server pre-trains the backbone on data it
holds (as in :mod:`tinylarge.schemes.tl`); each round, every participating
device trains only the part of the model that fits its SRAM (its choice per
device profile is made once with the profiler and recorded in summary.json
under ``parts``: an SBC may train every layer, a microcontroller only the head
or the biases), uploads just that part, and the server averages each tensor
over the devices that trained it, weighted by their sample counts. Tensors no
device trains keep their pre-trained values.

Downloads are incremental: a device receives the whole model the first time
it takes part, later only the tensors that changed since it last synced.
``accuracy`` is the test accuracy of the federated model every device runs;
``large_accuracy`` that of the server's pre-trained model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinylarge.schemes import _kd
from tinylarge.schemes._parts import PartResult
from tinylarge.schemes.base import register_scheme
from tinylarge.schemes.tl import TLOptions, TransferLearning
from tinylarge.sim.client import Weights
from tinylarge.sim.context import Client


def average_parts(
    weights: Weights, keys: list[str], results: list[PartResult]
) -> tuple[Weights, set[str]]:
    """Average each tensor over the results that carry it, weighted by sample count.

    Integer buffers (BatchNorm's ``num_batches_tracked``) take the maximum.
    Returns the new weights and the keys that were updated.
    """
    out: Weights = []
    changed: set[str] = set()
    for key, w in zip(keys, weights, strict=True):
        carriers = [r for r in results if key in r.tensors]
        if not carriers:
            out.append(w)
            continue
        changed.add(key)
        if np.issubdtype(w.dtype, np.integer):
            out.append(np.max(np.stack([r.tensors[key] for r in carriers]), axis=0))
            continue
        total = sum(r.num_samples for r in carriers)
        acc = np.zeros_like(w, dtype=np.float64)
        for r in carriers:
            acc += (r.num_samples / total) * r.tensors[key].astype(np.float64)
        out.append(acc.astype(w.dtype))
    return out, changed


@register_scheme
class FederatedTransferLearning(TransferLearning):
    """TL whose per-device parts are averaged at the server every round."""

    name = "ftl"
    Options = TLOptions

    def setup(self) -> None:
        super().setup()
        self.global_weights: Weights = self.pretrained
        #: Round in which each tensor last changed (-1: the pre-trained value).
        self.version = dict.fromkeys(self.keys, -1)
        #: Last round whose global model each device holds.
        self.synced: dict[int, int] = {}

    def pretrain(self, rnd: int) -> float:
        seconds = super().pretrain(rnd)
        self.global_weights = self.pretrained
        return seconds

    def start_weights(self, client: Client) -> Weights:
        return self.global_weights

    def downloads(self, clients: list[Client]) -> dict[int, _kd.Payload]:
        """The whole model on a device's first round, else the tensors changed since."""
        out: dict[int, _kd.Payload] = {}
        for c in clients:
            since = self.synced.get(c.id)
            stale = [
                w
                for k, w in zip(self.keys, self.global_weights, strict=True)
                if since is None or self.version[k] > since
            ]
            out[c.id] = [("weights" if since is None else "part", _kd.nbytes(stale))]
        return out

    def delivered(self, rnd: int, clients: list[Client]) -> None:
        """These devices now hold the global model as it was at the end of round ``rnd - 1``."""
        for c in clients:
            self.synced[c.id] = rnd - 1

    def uploads(self, results: dict[int, PartResult]) -> dict[int, _kd.Payload]:
        return {cid: [("part", _kd.nbytes(list(r.tensors.values())))] for cid, r in results.items()}

    def aggregate(self, rnd: int, results: dict[int, PartResult], kept: list[Client]) -> float:
        """Per-tensor weighted average of the parts that arrived; billed to the server."""
        arrived = [results[c.id] for c in kept]
        if not arrived:
            return 0.0
        self.global_weights, changed = average_parts(self.global_weights, self.keys, arrived)
        for key in changed:
            self.version[key] = rnd
        work = sum(int(t.size) for r in arrived for t in r.tensors.values())
        return self.ctx.bill_server(rnd, work, what="aggregate")

    def device_accuracies(self) -> dict[int, tuple[float, float]]:
        acc = self.ctx.evaluate(self.global_weights)
        return {c.id: acc for c in self.pool}

    def state(self) -> dict[str, Any]:
        return {
            **super().state(),
            "global_weights": self.global_weights,
            "version": self.version,
            "synced": self.synced,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.global_weights = state["global_weights"]
        self.version = state["version"]
        self.synced = state["synced"]
