"""The split-inference planner against exhaustive evaluation, and the split execution.

The reference is the slow, obvious one: every set of operators closed under
predecessors, minus those that separate an operator that does not end its group
from an operator reading it (:mod:`tinylarge.models.cuts`), each evaluated exactly.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from tinylarge.hardware.catalogue import get_device
from tinylarge.hardware.cost import inference_cost
from tinylarge.inference.split import (
    INPUT,
    GraphOp,
    ModelGraph,
    SplitRunner,
    crossing,
    describe,
    evaluate,
    model_graph,
    op_costs,
    plan_partition,
    split_names,
)
from tinylarge.models.cuts import ends_group
from tinylarge.models.profile import LayerProfile, ModelProfile
from tinylarge.models.zoo import build_model
from tinylarge.network.link import Link


def closed_partitions(graph: ModelGraph) -> list[frozenset[int]]:
    """Every set of operators closed under predecessors (the slow, obvious reference)."""
    out: list[frozenset[int]] = []

    def rec(i: int, chosen: set[int]) -> None:
        if i == len(graph.ops):
            out.append(frozenset(chosen))
            return
        rec(i + 1, chosen)
        if all(p == INPUT or p in chosen for p in graph.ops[i].inputs):
            chosen.add(i)
            rec(i + 1, chosen)
            chosen.remove(i)

    rec(0, set())
    return out


def separates_a_group(graph: ModelGraph, device_ops: frozenset[int]) -> bool:
    """Whether some device operator that does not end its group is read on the server."""
    for i, op in enumerate(graph.ops):
        for p in op.inputs:
            if (
                p != INPUT
                and p in device_ops
                and i not in device_ops
                and not graph.ops[p].ends_group
            ):
                return True
    return False


def allowed_partitions(graph: ModelGraph) -> list[frozenset[int]]:
    return [s for s in closed_partitions(graph) if not separates_a_group(graph, s)]


def exhaustive_best(
    graph: ModelGraph,
    *,
    device: str,
    server: str,
    link: Link,
    objective: str,
    keep_groups: bool = True,
) -> float:
    dev, srv = get_device(device), get_device(server)
    dc, sc = op_costs(graph, dev), op_costs(graph, srv)
    candidates = allowed_partitions(graph) if keep_groups else closed_partitions(graph)
    # evaluate() refuses a partition that separates a group: cost those as a planner without
    # groups would (the same graph with every operator ending its group)
    free = replace(graph, ops=tuple(replace(op, ends_group=True) for op in graph.ops))
    target = graph if keep_groups else free
    values = [
        c.objective(objective)
        for c in (
            evaluate(target, s, device=dev, device_costs=dc, server_costs=sc, link=link)
            for s in candidates
        )
        if c.feasible
    ]
    return min(values)


GRAPHS = {
    name: model_graph(
        build_model(name, input_shape=shape, num_classes=10), input_shape=shape, name=name
    )
    for name, shape in (
        ("mlp", (1, 28, 28)),
        ("cnn-tiny", (1, 28, 28)),
        ("cnn-large", (1, 28, 28)),
        ("resnet-small", (3, 32, 32)),
    )
}
CASES = [
    ("rpi4", "ble-2m"),
    ("rpi4", "wifi6"),
    ("galaxy-s24", "nr-sub6"),
    ("galaxy-s24", "6g-subthz"),
    ("stm32h743", "nb-iot"),
    ("stm32h743", "ble-1m"),
    ("nrf52840", "ble-2m"),
]


def chain_points(name: str, shape: tuple[int, ...]) -> list[int]:
    """The cuts of a chain zoo model, from its children: the two ends, and after every child
    that ends a group."""
    children = list(build_model(name, input_shape=shape, num_classes=10).children())
    inner = [k for k in range(1, len(children)) if ends_group(children[k - 1])]
    return [0, *inner, len(children)]


def test_chain_partitions_are_the_group_ends() -> None:
    # mlp: Flatten, Linear, ReLU, Linear: the input, after the ReLU, or everything
    assert chain_points("mlp", (1, 28, 28)) == [0, 3, 4]
    for name, shape in (
        ("mlp", (1, 28, 28)),
        ("cnn-tiny", (1, 28, 28)),
        ("cnn-large", (1, 28, 28)),
    ):
        graph = GRAPHS[name]
        expected = chain_points(name, shape)
        assert sorted(len(s) for s in allowed_partitions(graph)) == expected
        plan = plan_partition(
            graph,
            device=get_device("rpi4"),
            server=get_device("l4"),
            link=Link.from_preset("wifi6"),
            objective="latency",
        )
        assert [plan.point_of(c) for c in plan.points] == expected
    # cnn-large: every conv has its BatchNorm and ReLU with it, on one side
    kinds = [op.layer.kind for op in GRAPHS["cnn-large"].ops]
    for s in allowed_partitions(GRAPHS["cnn-large"]):
        if 0 < len(s) < len(kinds):
            assert kinds[len(s) - 1] in ("ReLU", "MaxPool2d", "AdaptiveAvgPool2d"), len(s)


@pytest.mark.parametrize("name", sorted(GRAPHS))
@pytest.mark.parametrize("objective", ["latency", "energy"])
def test_choice_equals_exhaustive_evaluation(name: str, objective: str) -> None:
    graph = GRAPHS[name]
    if name == "resnet-small":
        # skip connections: more closed partitions than prefixes (the device could run a
        # block's shortcut and not its main branch), but the shortcut is fused with the
        # residual addition and its ReLU, so the allowed ones are prefixes (one per residual
        # block sends two tensors: the block's input and its first conv group's output)
        closed = closed_partitions(graph)
        assert sum(s != frozenset(range(len(s))) for s in closed) > 0
        assert all(s == frozenset(range(len(s))) for s in allowed_partitions(graph))
        assert sum(len(crossing(graph, s)) == 2 for s in allowed_partitions(graph)) == 3
    for device, preset in CASES:
        link = Link.from_preset(preset)
        plan = plan_partition(
            graph,
            device=get_device(device),
            server=get_device("l4"),
            link=link,
            objective=objective,
        )
        assert plan.best is not None
        expected = exhaustive_best(
            graph, device=device, server="l4", link=link, objective=objective
        )
        assert plan.best.objective(objective) == pytest.approx(expected, rel=1e-9), (device, preset)


#: Share of the random graphs' operators that end their group.
END_PROBABILITY = 0.7


def random_graph(seed: int) -> ModelGraph:
    """A random DAG with random costs, tensor sizes and groups (branches and joins)."""
    rng = np.random.default_rng(seed)
    groups = np.random.default_rng([seed, 1])
    n = int(rng.integers(5, 11))
    ops = []
    for i in range(n):
        # one or two producers among the input and the earlier operators: branches and joins
        preds = [int(p) for p in rng.integers(-1, i, size=int(rng.integers(1, 3)))]
        size = int(rng.choice([64, 512, 4096, 32768]))
        layer = LayerProfile(
            f"op{i}", "conv", int(rng.integers(1, 5)) * 10**5, 10, (size // 4,), size
        )
        ops.append(
            GraphOp(
                node=f"op{i}",
                layer=layer,
                inputs=tuple(dict.fromkeys(preds)),
                ends_group=bool(groups.random() < END_PROBABILITY),
            )
        )
    # the output reads every operator nothing else reads: no dead branches, as in a model
    read = {p for op in ops for p in op.inputs}
    loose = tuple(i for i in range(n) if i not in read)
    ops.append(
        GraphOp(node="out", layer=LayerProfile("out", "elementwise", 0, 0, (10,), 40), inputs=loose)
    )
    layers = tuple(op.layer for op in ops)
    profile = ModelProfile("rand", (1024,), "fp32", layers, sum(x.macs for x in layers), 0, 0, 0, 0)
    return ModelGraph(profile=profile, ops=tuple(ops), output=n, input_bytes=4096)


def test_random_dags_equal_exhaustive_and_need_non_prefix_cuts() -> None:
    non_prefix_wins = 0
    groups_bind = 0
    for seed in range(40):
        graph = random_graph(seed)
        for device, preset, objective in (
            ("rpi4", "wifi6", "latency"),
            ("rpi4", "nr-sub6", "energy"),
            ("galaxy-s24", "wifi6", "energy"),
            ("esp32s3", "ble-2m", "latency"),
        ):
            link = Link.from_preset(preset)
            plan = plan_partition(
                graph,
                device=get_device(device),
                server=get_device("l4"),
                link=link,
                objective=objective,
            )
            assert plan.best is not None
            expected = exhaustive_best(
                graph, device=device, server="l4", link=link, objective=objective
            )
            assert plan.best.objective(objective) == pytest.approx(expected, rel=1e-9)
            assert not separates_a_group(graph, plan.best.device_ops)
            assert plan.mincut is None or not separates_a_group(graph, plan.mincut.device_ops)
            best_prefix = min(c.objective(objective) for c in plan.points)
            non_prefix_wins += expected < best_prefix * (1 - 1e-9)
            free = exhaustive_best(
                graph,
                device=device,
                server="l4",
                link=link,
                objective=objective,
                keep_groups=False,
            )
            groups_bind += free < expected * (1 - 1e-9)
    assert non_prefix_wins > 0  # the min cut matters, prefixes alone are not enough
    assert groups_bind > 0  # and the groups constrain it: ignoring them would choose otherwise


def test_operator_costs_add_up_and_memory_matches_the_profiler() -> None:
    graph = GRAPHS["resnet-small"]
    dev = get_device("stm32h743")
    costs = op_costs(graph, dev)
    whole = inference_cost(graph.profile, dev, dtype="fp32")
    assert sum(c.macs for c in costs) == whole.macs
    assert math.fsum(c.latency_s for c in costs) == pytest.approx(whole.latency_s)
    everything = frozenset(range(len(graph.ops)))
    cost = evaluate(
        graph,
        everything,
        device=dev,
        device_costs=costs,
        server_costs=costs,
        link=Link.from_preset("wifi6"),
    )
    assert cost.sram_bytes == graph.profile.peak_sram_bytes
    assert cost.up_bytes == cost.down_bytes == 0
    assert cost.latency_s == pytest.approx(whole.latency_s)
    nothing = evaluate(
        graph,
        frozenset(),
        device=dev,
        device_costs=costs,
        server_costs=costs,
        link=Link.from_preset("wifi6"),
    )
    assert nothing.up_bytes == graph.input_bytes == 4 * 3 * 32 * 32
    assert nothing.down_bytes == graph.result_bytes == 40
    assert (nothing.flash_bytes, nothing.sram_bytes) == (0, 0)


def test_skip_connection_sends_both_branches() -> None:
    graph = GRAPHS["resnet-small"]
    names = [op.layer.name for op in graph.ops]
    upto_relu1 = frozenset(range(names.index("4.relu1") + 1))
    sent = crossing(graph, upto_relu1)
    # the block's first conv group's output and its input (read again by the 1x1 shortcut)
    assert [graph.ops[p].layer.name for p in sent] == ["3.relu2", "4.relu1"]
    rpi4, l4 = get_device("rpi4"), get_device("l4")
    costs = {"device_costs": op_costs(graph, rpi4), "server_costs": op_costs(graph, l4)}
    cost = evaluate(graph, upto_relu1, device=rpi4, link=Link.from_preset("wifi6"), **costs)
    assert cost.up_bytes == sum(graph.ops[p].layer.output_bytes for p in sent)
    # a cut between a conv and its BatchNorm is refused; so is running the shortcut alone
    for ops in (
        frozenset(range(names.index("4.conv1") + 1)),
        upto_relu1 | {names.index("4.shortcut")},
    ):
        assert separates_a_group(graph, ops)
        with pytest.raises(ValueError, match="group"):
            evaluate(graph, ops, device=rpi4, link=Link.from_preset("wifi6"), **costs)
    with pytest.raises(ValueError, match="server"):
        evaluate(
            graph,
            frozenset({names.index("4.conv1")}),
            device=get_device("rpi4"),
            device_costs=op_costs(graph, get_device("rpi4")),
            server_costs=op_costs(graph, get_device("l4")),
            link=Link.from_preset("wifi6"),
        )


@pytest.mark.parametrize(
    ("name", "shape"), [("cnn-tiny", (1, 12, 12)), ("resnet-small", (3, 12, 12))]
)
def test_split_execution_reproduces_the_model(name: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = build_model(name, input_shape=shape, num_classes=10).eval()
    graph = model_graph(model, input_shape=shape, name=name)
    x = torch.randn(3, *shape)
    with torch.no_grad():
        full = model(x)
    # any closed partition runs correctly (the groups are a deployment rule, not a math one)
    partitions = closed_partitions(graph)
    for ops in [*partitions[:: max(1, len(partitions) // 6)], frozenset(range(len(graph.ops)))]:
        runner = SplitRunner(model, split_names(graph, ops))
        sent = runner.device_part(x)
        assert len(sent) == (1 if len(ops) == len(graph.ops) else len(crossing(graph, ops)))
        assert torch.allclose(runner.server_part(sent), full, atol=1e-5), describe(graph, ops)


def test_best_point_moves_with_the_link() -> None:
    # a bottleneck MLP: the narrow first layer makes the cut after it the cheapest to send
    module = build_model("mlp", input_shape=(1, 28, 28), num_classes=10, hidden=[64, 1024, 1024])
    graph = model_graph(module, input_shape=(1, 28, 28), name="mlp")
    points = []
    for d in (10.0, 300.0, 1000.0):
        link = Link.from_preset("nr-sub6", distance_m=d)
        plan = plan_partition(
            graph,
            device=get_device("esp32s3"),
            server=get_device("jetson-orin-nano"),
            link=link,
            objective="energy",
        )
        assert plan.best is not None
        points.append(plan.point_of(plan.best))
    # near: send the input; farther: send the 64 bottleneck features (after their ReLU, the
    # end of the first Linear's group); far: all on the device
    assert points == [0, 3, len(graph.ops)]


def test_outage_leaves_only_the_device() -> None:
    graph = GRAPHS["mlp"]
    link = Link.from_preset("ble-2m", distance_m=5000.0)
    assert link.budget().outage
    plan = plan_partition(
        graph,
        device=get_device("stm32h743"),
        server=get_device("l4"),
        link=link,
        objective="latency",
    )
    assert plan.mincut is None
    assert plan.best is not None
    assert len(plan.best.device_ops) == len(graph.ops)
    tiny = replace(get_device("nrf52840"), flash_bytes=1000)
    assert (
        plan_partition(
            graph, device=tiny, server=get_device("l4"), link=link, objective="latency"
        ).best
        is None
    )
