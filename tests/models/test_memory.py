"""Memory planner: hand-computed peaks for chains, skips and branches."""

from __future__ import annotations

import pytest

from tinylarge.errors import TinylargeError, UnknownNameError
from tinylarge.models.memory import (
    Buffer,
    Step,
    greedy_arena_plan,
    lifetimes,
    live_bytes_per_step,
    peak_bytes,
    training_memory_bytes,
)


def _plan(steps: list[Step], sizes: dict[str, int], outputs: list[str]) -> list[Buffer]:
    return lifetimes(steps=steps, sizes_bytes=sizes, graph_inputs=["x"], graph_outputs=outputs)


def test_chain_peak_is_the_largest_adjacent_pair() -> None:
    sizes = {"x": 100, "a": 400, "b": 50, "c": 300, "y": 10}
    steps = [
        Step(("x",), ("a",)),
        Step(("a",), ("b",)),
        Step(("b",), ("c",)),
        Step(("c",), ("y",)),
    ]
    buffers = _plan(steps, sizes, ["y"])
    assert live_bytes_per_step(buffers) == (500, 450, 350, 310)
    assert peak_bytes(buffers) == 500


def test_skip_tensor_stays_live_until_its_consumer() -> None:
    # x -> a -> b -> c ; add(a, c) -> y : a is live during steps 0..3
    sizes = {"x": 10, "a": 100, "b": 100, "c": 100, "y": 100}
    steps = [
        Step(("x",), ("a",)),
        Step(("a",), ("b",)),
        Step(("b",), ("c",)),
        Step(("a", "c"), ("y",)),
    ]
    buffers = {b.name: b for b in _plan(steps, sizes, ["y"])}
    assert (buffers["a"].first_step, buffers["a"].last_step) == (0, 3)
    assert peak_bytes(buffers.values()) == 300  # a + b + c at step 2, a + c + y at step 3


def test_branches_keep_both_outputs_live() -> None:
    # x feeds two branches p and q, joined at the end
    sizes = {"x": 50, "p": 200, "q": 300, "y": 20}
    steps = [Step(("x",), ("p",)), Step(("x",), ("q",)), Step(("p", "q"), ("y",))]
    buffers = _plan(steps, sizes, ["y"])
    assert live_bytes_per_step(buffers) == (250, 550, 520)


def test_alias_shares_the_buffer_and_extends_its_life() -> None:
    sizes = {"x": 64, "r": 64, "y": 8}
    steps = [Step(("x",), ("r",), alias=True), Step(("r",), ("y",))]
    buffers = _plan(steps, sizes, ["y"])
    assert [b.name for b in buffers] == ["x", "y"]
    assert peak_bytes(buffers) == 72


def test_inplace_only_when_the_input_is_dead() -> None:
    sizes = {"x": 10, "a": 100, "r": 100, "y": 100}
    dead = [Step(("x",), ("a",)), Step(("a",), ("r",), inplace=True), Step(("r",), ("y",))]
    assert peak_bytes(_plan(dead, sizes, ["y"])) == 200
    alive = [Step(("x",), ("a",)), Step(("a",), ("r",), inplace=True), Step(("a", "r"), ("y",))]
    assert peak_bytes(_plan(alive, sizes, ["y"])) == 300


def test_greedy_arena_reuses_dead_space_and_bounds_the_peak() -> None:
    buffers = [
        Buffer("a", 100, 0, 1),
        Buffer("b", 50, 1, 2),
        Buffer("c", 100, 2, 3),
    ]
    plan = greedy_arena_plan(buffers)
    assert plan.peak_bytes == 150
    assert plan.arena_bytes == 150
    assert plan.offsets["a"] == plan.offsets["c"] == 0  # c reuses a's space
    assert plan.offsets["b"] == 100


def test_greedy_arena_never_overlaps_live_buffers() -> None:
    buffers = [Buffer(f"t{i}", 16 * (i % 5 + 1), i % 4, i % 4 + i % 3) for i in range(20)]
    plan = greedy_arena_plan(buffers, alignment_bytes=16)
    assert plan.arena_bytes >= plan.peak_bytes
    for i, p in enumerate(buffers):
        for q in buffers[i + 1 :]:
            if p.overlaps(q):
                a, b = plan.offsets[p.name], plan.offsets[q.name]
                assert a + p.size_bytes <= b or b + q.size_bytes <= a
        assert plan.offsets[p.name] % 16 == 0


def test_empty_plan() -> None:
    assert peak_bytes([]) == 0
    assert greedy_arena_plan([]).arena_bytes == 0


@pytest.mark.parametrize(("optimizer", "copies"), [("sgd", 0), ("momentum", 1), ("adam", 2)])
def test_training_memory_counts_weights_grads_state_and_activations(
    optimizer: str, copies: int
) -> None:
    got = training_memory_bytes(
        params=1000,
        saved_activation_elements=500,
        input_elements=100,
        batch_size=8,
        optimizer=optimizer,
    )
    assert got == 1000 * 4 * (2 + copies) + (500 + 100) * 4 * 8


def test_training_memory_rejects_bad_input() -> None:
    with pytest.raises(UnknownNameError, match="adam, momentum, sgd"):
        training_memory_bytes(
            params=1, saved_activation_elements=1, input_elements=1, batch_size=1, optimizer="lbfgs"
        )
    with pytest.raises(TinylargeError, match="train_batch_size"):
        training_memory_bytes(
            params=1, saved_activation_elements=1, input_elements=1, batch_size=0, optimizer="sgd"
        )
