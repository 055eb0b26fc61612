"""The TFLite Micro arena model: the greedy planner against a slow first fit, struct sizes
worked from the tflite-micro headers, and the parts of a small graph added up by hand.

Predicted against measured arenas (the real runtime) are in tests/compress/test_tflm.py.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tinylarge.models.memory import Buffer, peak_bytes
from tinylarge.models.tflite_reader import read_tflite
from tinylarge.models.tflm_arena import BUILDS, greedy_offsets, planned_buffers, predict_arenas


def slow_first_fit(buffers: list[Buffer]) -> list[int]:
    """TFLM's visiting order (size down, later-added first), each at the lowest free byte."""
    order = sorted(range(len(buffers)), key=lambda i: (-buffers[i].size_bytes, -i))
    offsets: dict[int, int] = {}
    for i in order:
        offset = 0
        while any(
            buffers[j].overlaps(buffers[i])
            and offset < offsets[j] + buffers[j].size_bytes
            and offsets[j] < offset + buffers[i].size_bytes
            for j in offsets
        ):
            offset += 1
        offsets[i] = offset
    return [offsets[i] for i in range(len(buffers))]


@st.composite
def lifetimes(draw: st.DrawFn) -> list[Buffer]:
    n = draw(st.integers(1, 9))
    out = []
    for i in range(n):
        first = draw(st.integers(0, 6))
        out.append(Buffer(str(i), draw(st.integers(1, 40)), first, first + draw(st.integers(0, 4))))
    return out


@settings(max_examples=80, deadline=None)
@given(lifetimes())
def test_greedy_offsets_equal_a_slow_first_fit(buffers: list[Buffer]) -> None:
    offsets = greedy_offsets(buffers)
    assert offsets == slow_first_fit(buffers)
    arena = max(o + b.size_bytes for o, b in zip(offsets, buffers, strict=True))
    assert arena >= peak_bytes(buffers)


def test_ties_go_to_the_buffer_added_last() -> None:
    # two equal buffers alive together: TFLM visits the later one first, so it sits at 0
    buffers = [Buffer("a", 32, 0, 1), Buffer("b", 32, 0, 1)]
    assert greedy_offsets(buffers) == [32, 0]


def test_struct_sizes_from_the_headers() -> None:
    x86, arm = BUILDS["x86-64"], BUILDS["cortex-m"]
    # TfLiteEvalTensor: two pointers and an enum; NodeAndRegistration: TfLiteNode (six
    # pointers and an int) and a pointer; TfLiteTensor (static memory): 64 B measured
    # as 'Persistent TfLiteTensor data' 128 B for 2 tensors.
    assert (x86.eval_tensor_bytes, arm.eval_tensor_bytes) == (24, 12)
    assert (x86.node_bytes, arm.node_bytes) == (64, 32)
    assert (x86.tensor_bytes, arm.tensor_bytes) == (64, 40)
    assert (x86.allocation_info_bytes, arm.allocation_info_bytes) == (32, 24)
    assert (x86.scratch_request_bytes, arm.scratch_request_bytes) == (16, 12)


def test_ad_model_head_and_planning_moment_by_hand(mlperf_dir: Path) -> None:
    graph = read_tflite(mlperf_dir / "ad01_int8.tflite")
    # ten FC layers 640-128-128-128-128-8-128-128-128-128-640: the 640 B input and output
    # never live together, every 128 B layer lives beside one of them
    buffers = planned_buffers(graph)
    assert len(buffers) == 11
    offsets = greedy_offsets(buffers)
    assert max(o + b.size_bytes for o, b in zip(offsets, buffers, strict=True)) == 640 + 128
    x86 = predict_arenas(graph)["x86-64"]
    assert x86.head_bytes == 768
    # the planning moment: 31 AllocationInfo of 32 B (the 992 B TFLM reports when it
    # cannot get them) and 40 B of planner work space for each of the 11 planned tensors
    assert x86.planning_peak_bytes - x86.tail_bytes < 992 + 40 * 11 + 192 + 16
    moments = (x86.planning_peak_bytes, x86.tail_bytes + 768, x86.prepare_peak_bytes)
    assert x86.arena_bytes == -(-max(moments) // 16) * 16


def test_the_32_bit_build_needs_less_for_the_same_plan(mlperf_dir: Path) -> None:
    for name in ("ad01_int8", "kws_ref_model", "pretrainedResnet_quant", "vww_96_int8"):
        both = predict_arenas(read_tflite(mlperf_dir / f"{name}.tflite"))
        assert both["cortex-m"].head_bytes == both["x86-64"].head_bytes
        assert both["cortex-m"].arena_bytes < both["x86-64"].arena_bytes
        assert both["x86-64"].arena_bytes >= both["x86-64"].activation_peak_bytes
        assert not both["x86-64"].unmodelled_ops
