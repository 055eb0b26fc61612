"""Federated transfer learning (FTL): devices adapt a pre-trained model's small part, together.

Liu et al., "A Secure Federated Transfer Learning Framework", IEEE Intelligent
Systems 2020, https://arxiv.org/abs/1812.03337, and the survey's FTL
(Vu et al., arXiv 2505.15854): the server pre-trains the backbone on data it
holds (as in :mod:`tinylarge.schemes.tl`); each round, every participating
device trains only the part of the model that fits its SRAM (its choice per
device profile is made once with the profiler and recorded in summary.json
under ``parts``: an SBC may train every layer, a microcontroller only the head
or the biases), uploads just that part, and the server averages each tensor
over the devices that trained it, weighted by their sample counts
(:meth:`tinylarge.sim.rounds.Round.aggregate`, an
:class:`~tinylarge.sim.aggregation.Update` with ``None`` for every tensor the
device did not train). Tensors no device trains keep their pre-trained values.

Downloads are incremental: a device receives the whole model the first time
it takes part, later only the tensors that changed since it last synced.
``accuracy`` is the test accuracy of the federated model every device runs;
``large_accuracy`` that of the server's pre-trained model.
"""

from __future__ import annotations

from typing import Any

from tinylarge.models.weights import Weights, nbytes
from tinylarge.schemes._parts import PartResult
from tinylarge.schemes.base import register_scheme
from tinylarge.schemes.tl import TransferLearning
from tinylarge.sim.aggregation import Update
from tinylarge.sim.context import Client
from tinylarge.sim.rounds import Payload, Round


def part_update(keys: list[str], result: PartResult) -> Update:
    """A device's part as an update of the whole model: ``None`` for every tensor not in it."""
    return Update(result.client, [result.tensors.get(k) for k in keys], result.num_samples)


@register_scheme
class FederatedTransferLearning(TransferLearning):
    """TL whose per-device parts are averaged at the server every round."""

    name = "ftl"

    def setup(self) -> None:
        super().setup()
        self.global_weights: Weights = self.pretrained
        #: Round in which each tensor last changed (-1: the pre-trained value).
        self.version = dict.fromkeys(self.keys, -1)
        #: Last round whose global model each device holds.
        self.synced: dict[int, int] = {}

    def pretrain(self, rd: Round) -> None:
        super().pretrain(rd)
        self.global_weights = self.pretrained

    def start_weights(self, client: Client) -> Weights:
        return self.global_weights

    def downloads(self, clients: list[Client]) -> dict[int, Payload]:
        """The whole model on a device's first round, else the tensors changed since."""
        out: dict[int, Payload] = {}
        for c in clients:
            since = self.synced.get(c.id)
            stale = [
                w
                for k, w in zip(self.keys, self.global_weights, strict=True)
                if since is None or self.version[k] > since
            ]
            out[c.id] = [("weights" if since is None else "part", nbytes(stale))]
        return out

    def delivered(self, rnd: int, clients: list[Client]) -> None:
        """These devices now hold the global model as it was at the end of round ``rnd - 1``."""
        for c in clients:
            self.synced[c.id] = rnd - 1

    def uploads(self, results: dict[int, PartResult]) -> dict[int, Payload]:
        return {cid: [("part", nbytes(list(r.tensors.values())))] for cid, r in results.items()}

    def aggregate(self, rd: Round, results: dict[int, PartResult], kept: list[Client]) -> None:
        """Per-tensor weighted average of the parts that arrived."""
        updates = [part_update(self.keys, results[c.id]) for c in kept]
        self.global_weights = rd.aggregate(updates, base=self.global_weights)
        for i, key in enumerate(self.keys):
            if any(u.tensors[i] is not None for u in updates):
                self.version[key] = rd.rnd

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
