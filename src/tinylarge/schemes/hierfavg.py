"""HierFAVG: client-edge-cloud hierarchical federated averaging.

Liu et al., "Client-Edge-Cloud Hierarchical Federated Learning", ICC 2020,
https://arxiv.org/abs/1905.06641 (Algorithm 1).

Devices are served by edge servers (``topology.edges``; without it, one edge per
device group), each over its own cell. A cloud round (one metric round):

1. the cloud (``topology.server``) sends the global model to every edge with
   participants over the edge's backhaul;
2. ``kappa2`` times: each edge's devices download the edge model, train
   ``training.local_epochs`` epochs (the paper's kappa1 counts local SGD steps;
   here the unit of local training is the epoch), upload, and the edge averages
   them (weighted by samples) when its last device is done;
3. each edge sends its model to the cloud over its backhaul; the cloud averages
   the edge models, weighted by the samples behind them.

Edges work in parallel; every transfer (device links, backhauls) and every
aggregation (edges, cloud) is billed. With one edge and ``kappa2 = 1`` the model is
exactly FedAvg's.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from tinylarge.hardware.catalogue import DeviceProfile, get_device
from tinylarge.hardware.cost import Elementwise
from tinylarge.models.weights import Weights, nbytes
from tinylarge.network.edges import EdgeConfig, group_names
from tinylarge.network.link import Link
from tinylarge.schemes.base import register_scheme
from tinylarge.schemes.fedavg import FedAvgFamily
from tinylarge.schemes.options.asynchronous import HierFavgOptions
from tinylarge.sim.aggregation import AGGREGATORS, Update
from tinylarge.sim.context import Client
from tinylarge.sim.rounds import Round, RoundReport


def edges_of(config: Any) -> list[EdgeConfig]:
    """The topology's edge servers, or one per device group when it names none."""
    topology = config.topology
    if topology.edges:
        return list(topology.edges)
    names = group_names([g.name for g in topology.devices])
    return [EdgeConfig(name=n, serves=[n]) for n in names]


@register_scheme
class HierFAVG(FedAvgFamily[HierFavgOptions]):
    """HierFAVG (Liu et al. 2020): device -> edge -> cloud averaging."""

    name = "hierfavg"

    def setup(self) -> None:
        super().setup()
        topology = self.ctx.config.topology
        self.edges = edges_of(self.ctx.config)
        edge_of_group = {g: e.name for e in self.edges for g in e.serves}
        names = group_names([g.name for g in topology.devices])
        self.edge_of: dict[int, str] = {}
        for name, group in zip(names, topology.devices, strict=True):
            for _ in range(group.count):
                self.edge_of[len(self.edge_of)] = edge_of_group[name]
        self.profiles: dict[str, DeviceProfile] = {
            e.name: get_device(e.profile) for e in self.edges
        }
        self.backhauls = {e.name: Link.from_preset(e.backhaul) for e in self.edges}

    @staticmethod
    def node(edge: str) -> str:
        """The ledger's node of an edge server."""
        return f"edge-{edge}"

    def run_round(self, rnd: int) -> RoundReport:
        ctx = self.ctx
        kappa2 = self.options.kappa2
        rd = ctx.round(rnd, self.pool)
        served: dict[str, list[Client]] = {e.name: [] for e in self.edges}
        for c in rd.participants:
            served[self.edge_of[c.id]].append(c)
        size = nbytes(self.weights)
        models: dict[str, Weights] = {}
        samples: dict[str, int] = {}
        losses: list[float] = []
        for edge, clients in served.items():  # the cloud's model to every edge in the round
            if clients:
                self._backhaul(rd, edge, clients, size, "down")
                models[edge] = self.weights
        for k in range(kappa2):
            for edge, clients in served.items():
                still = [c for c in clients if c.id not in rd.dropped]
                if not still:
                    continue
                active = rd.download({c.id: [("weights", size)] for c in still}, still)
                results = self.local_fit(rnd * kappa2 + k, active, models[edge])
                for c in active:
                    r = results[c.id]
                    rd.compute(c, ctx.local_training(r.examples, steps=r.steps), what="local-train")
                kept = rd.upload(
                    {c.id: [("weights", nbytes(results[c.id].weights))] for c in active}, active
                )
                updates = [
                    Update.full(c.id, results[c.id].weights, results[c.id].num_samples)
                    for c in kept
                ]
                if not updates:
                    continue
                models[edge] = AGGREGATORS["fedavg"](updates, base=models[edge])
                values = sum(int(t.size) for u in updates for t in u.tensors if t is not None)
                rd.edge_work(
                    kept,
                    Elementwise(values),
                    node=self.node(edge),
                    profile=self.profiles[edge],
                    what="edge-aggregate",
                )
                samples[edge] = sum(u.num_samples for u in updates)
                if k == kappa2 - 1:
                    losses += [results[c.id].loss for c in kept]
        ups = []
        for i, (edge, clients) in enumerate(served.items()):  # edges to the cloud
            still = [c for c in clients if c.id not in rd.dropped]
            if edge in samples and still:
                self._backhaul(rd, edge, still, nbytes(models[edge]), "up")
                ups.append(Update.full(i, models[edge], samples[edge]))
        if ups:
            self.weights = rd.aggregate(ups, base=self.weights, what="cloud-aggregate")
        return rd.report(train_loss=float(np.mean(losses)) if losses else None)

    def _backhaul(
        self,
        rd: Round,
        edge: str,
        clients: list[Client],
        num_bytes: int,
        direction: Literal["up", "down"],
    ) -> None:
        rd.backhaul(
            clients,
            num_bytes,
            link=self.backhauls[edge],
            direction=direction,
            node=self.node(edge),
            profile=self.profiles[edge],
            what="weights",
        )

    def summary_extras(self) -> dict[str, Any]:
        ledger = self.ctx.ledger
        out: dict[str, Any] = {"kappa2": self.options.kappa2, "edges": {}}
        for e in self.edges:
            node = self.node(e.name)
            out["edges"][e.name] = {
                "profile": e.profile,
                "backhaul": e.backhaul,
                "devices": sum(1 for v in self.edge_of.values() if v == e.name),
                "backhaul_bytes_up": int(ledger.total("bytes", node=node, kind="upload")),
                "backhaul_bytes_down": int(ledger.total("bytes", node=node, kind="download")),
                "compute_s": ledger.total("seconds", node=node, kind="compute"),
            }
        out["backhaul_bytes"] = sum(
            v["backhaul_bytes_up"] + v["backhaul_bytes_down"] for v in out["edges"].values()
        )
        return out
