"""The Flower half of bench/fedavg_vs_flower.py: one FedAvg run in Flower's simulation engine.

Runs in its own virtual environment (``make bench-flower`` builds ``.venv-flower``:
torch 2.13.0 CPU, ``flwr[simulation]`` with the Ray it pins, and tinylarge installed
``--no-deps`` for its model zoo and local training loop only). It is launched by
``bench/fedavg_vs_flower.py`` as a subprocess; run by hand as

    .venv-flower/bin/python bench/_flower_side.py WORKLOAD_DIR OUT.json

WORKLOAD_DIR (written by the main bench from a tinylarge Context) holds the
training and test arrays, every client's sample indices, the initial global
weights and, per round, the sampled clients and their training seeds. The
ServerApp is Flower's message-API FedAvg (``flwr.serverapp.strategy.FedAvg``)
with one override: ``configure_train`` sends the round's model to the clients
tinylarge sampled for that round (with their seeds) instead of drawing its own
sample. The ClientApp trains with ``tinylarge.sim.training.fit``, the very
function tinylarge's backends call, so both engines run the same model, data,
clients, seeds and SGD steps; what differs is the engine around them.
Aggregation is Flower's own (weighted by ``num-examples``).

OUT.json gets: flwr and ray versions, client updates (train replies), wall
seconds of ``strategy.start`` (the federated rounds: no evaluation inside),
wall seconds of the whole ``run_simulation`` call (Ray start-up, node
registration, a one-off query round that maps Flower node ids to partition
ids and warms each actor up with one untimed local training, the rounds,
shutdown) and the final global model's test accuracy and loss.

McMahan et al., "Communication-Efficient Learning of Deep Networks from
Decentralized Data", AISTATS 2017, https://arxiv.org/abs/1602.05629 (FedAvg);
Beutel et al., "Flower: A Friendly Federated Learning Research Framework",
https://arxiv.org/abs/2007.14390.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import time
from collections.abc import Iterable
from importlib.metadata import version
from pathlib import Path
from typing import Any, cast

import numpy as np
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation

from tinylarge.models.zoo import ModelSpec
from tinylarge.sim.training import FitTask, TrainSettings, evaluate, fit

#: Environment variable naming the workload directory (Ray actors inherit the environment).
WORKLOAD_ENV = "TINYLARGE_FLOWER_WORKLOAD"

_CACHE: dict[str, dict[str, Any]] = {}


def load_workload(path: str | Path) -> dict[str, Any]:
    """The workload written by the main bench, loaded once per process (arrays memory-mapped)."""
    key = str(path)
    if key not in _CACHE:
        d = Path(path)
        meta = json.loads((d / "workload.json").read_text())
        part = np.load(d / "partition.npz")
        flat, offsets = part["flat"], part["offsets"]
        init = np.load(d / "init.npz")
        _CACHE[key] = {
            **meta,
            "spec": ModelSpec(
                name=meta["model"],
                input_shape=tuple(meta["input_shape"]),
                num_classes=int(meta["num_classes"]),
                options=dict(meta["model_options"]),
            ),
            "settings": TrainSettings(**meta["settings"]),
            "indices": [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)],
            "init": [init[f"w{i}"] for i in range(len(init.files))],
            **{k: np.load(d / f"{k}.npy", mmap_mode="r") for k in ("x_train", "y_train")},
        }
    return _CACHE[key]


# -- ClientApp (runs in Flower's Ray actors) ---------------------------------

client_app = ClientApp()


def warm_up(w: dict[str, Any], pid: int) -> None:
    """One untimed local training per process (torch's first-call set-up), as on tinylarge."""
    if not w.get("warm"):
        task = FitTask(
            client=pid,
            round=0,
            seed=0,
            spec=w["spec"],
            weights=w["init"],
            indices=w["indices"][pid],
            settings=w["settings"],
        )
        fit(task, w["x_train"], w["y_train"])
        w["warm"] = True


@client_app.query()
def whoami(msg: Message, context: Context) -> Message:
    """Report this node's partition id; load the data and warm up, outside the timed rounds."""
    w = load_workload(os.environ[WORKLOAD_ENV])
    pid = int(context.node_config["partition-id"])
    warm_up(w, pid)
    return Message(RecordDict({"metrics": MetricRecord({"partition-id": pid})}), reply_to=msg)


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    """Local SGD on this node's partition with tinylarge's ``fit``; reply weights and size."""
    w = load_workload(os.environ[WORKLOAD_ENV])
    pid = int(context.node_config["partition-id"])
    config = msg.content.config_records["config"]
    task = FitTask(
        client=pid,
        round=cast(int, config["server-round"]) - 1,
        seed=cast(int, config["seed"]),
        spec=w["spec"],
        weights=msg.content.array_records["arrays"].to_numpy_ndarrays(),
        indices=w["indices"][pid],
        settings=w["settings"],
    )
    res = fit(task, w["x_train"], w["y_train"])
    reply = RecordDict(
        {
            "arrays": ArrayRecord(res.weights),
            "metrics": MetricRecord({"num-examples": res.num_samples, "train-loss": res.loss}),
        }
    )
    return Message(reply, reply_to=msg)


# -- ServerApp ---------------------------------------------------------------


class PlannedFedAvg(FedAvg):
    """Flower's FedAvg, training each round the clients (and seeds) of the shared plan."""

    def __init__(
        self, *, plan: list[list[list[int]]], node_of: dict[int, int], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.node_of = node_of
        self.updates = 0

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        messages = []
        for pid, seed in self.plan[server_round - 1]:
            cfg = ConfigRecord({**dict(config), "server-round": server_round, "seed": seed})
            record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: cfg})
            messages.append(Message(record, self.node_of[pid], MessageType.TRAIN))
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        self.updates += sum(not m.has_error() for m in replies)
        return super().aggregate_train(server_round, replies)


server_app = ServerApp()
RESULT: dict[str, Any] = {}


@server_app.main()
def server_main(grid: Grid, context: Context) -> None:
    w = load_workload(os.environ[WORKLOAD_ENV])
    while len(nodes := list(grid.get_node_ids())) < w["num_clients"]:
        time.sleep(0.05)
    query = [Message(RecordDict(), n, MessageType.QUERY) for n in nodes]
    node_of = {
        cast(int, r.content.metric_records["metrics"]["partition-id"]): r.metadata.src_node_id
        for r in grid.send_and_receive(query)
    }
    strategy = PlannedFedAvg(
        plan=w["plan"],
        node_of=node_of,
        fraction_evaluate=0.0,
        min_available_nodes=w["num_clients"],
    )
    start = time.perf_counter()
    result = strategy.start(
        grid=grid, initial_arrays=ArrayRecord(w["init"]), num_rounds=len(w["plan"])
    )
    rounds_s = time.perf_counter() - start
    d = Path(os.environ[WORKLOAD_ENV])
    x_test, y_test = np.load(d / "x_test.npy"), np.load(d / "y_test.npy")
    acc, loss = evaluate(w["spec"], result.arrays.to_numpy_ndarrays(), x_test, y_test)
    RESULT.update(updates=strategy.updates, rounds_s=rounds_s, accuracy=acc, loss=loss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    os.environ[WORKLOAD_ENV] = str(args.workload.resolve())
    w = load_workload(args.workload.resolve())
    start = time.perf_counter()
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=w["num_clients"],
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
    )
    total_s = time.perf_counter() - start
    if "updates" not in RESULT:
        raise SystemExit("the Flower ServerApp did not finish; see the log above")
    out = {"flwr": version("flwr"), "ray": version("ray"), "total_s": total_s, **RESULT}
    args.out.write_text(json.dumps(out))


if __name__ == "__main__":
    # Import this file as a module so Ray pickles the apps by reference, not by value.
    importlib.import_module("_flower_side").main()
