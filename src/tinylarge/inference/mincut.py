"""Minimum s-t cut by maximum flow (Edmonds-Karp), on float capacities.

The split-inference planner (:mod:`tinylarge.inference.split`) turns "which
operators run on the device" into a minimum cut, as DADS does for DNN graphs
that are not chains (Hu et al., "Dynamic Adaptive DNN Surgery for Inference
Acceleration on the Edge", IEEE INFOCOM 2019,
https://doi.org/10.1109/INFOCOM.2019.8737614). Graphs there have tens to a few
hundred nodes, so a plain breadth-first augmenting-path algorithm is enough.

Pure functions; ``math.inf`` is a valid capacity (a constraint that must not be cut).

>>> value, side = min_cut(4, [(0, 1, 3.0), (0, 2, 2.0), (1, 3, 1.0), (2, 3, 5.0)], 0, 3)
>>> value, sorted(side)
(3.0, [0, 1])
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

#: Relative tolerance under which a residual capacity counts as saturated.
REL_TOL = 1e-12


def min_cut(
    num_nodes: int,
    edges: Sequence[tuple[int, int, float]],
    source: int,
    sink: int,
) -> tuple[float, frozenset[int]]:
    """Value of a minimum ``source``-``sink`` cut and the nodes on the source side.

    Args:
        num_nodes: nodes are ``0 .. num_nodes - 1``.
        edges: directed ``(u, v, capacity)``; parallel edges add up; capacities
            must be >= 0 and may be ``math.inf``.
        source: the source node.
        sink: the sink node (must differ from ``source``).

    Returns:
        ``(cut value, source side)``: the source side is the set of nodes
        reachable from ``source`` in the residual graph of a maximum flow, the
        smallest source side among the minimum cuts.

    Raises:
        ValueError: a negative capacity, a node out of range, ``source == sink``,
            or an infinite cut (an uncuttable path from source to sink).
    """
    if source == sink:
        raise ValueError("source and sink must differ")
    cap: list[dict[int, float]] = [{} for _ in range(num_nodes)]
    finite = 0.0
    for u, v, c in edges:
        if not (0 <= u < num_nodes and 0 <= v < num_nodes):
            raise ValueError(f"edge ({u}, {v}) has a node outside 0..{num_nodes - 1}")
        if not c >= 0:
            raise ValueError(f"edge ({u}, {v}) has a negative capacity {c}")
        cap[u][v] = cap[u].get(v, 0.0) + c
        cap[v].setdefault(u, 0.0)
        if math.isfinite(c):
            finite += c
    tol = REL_TOL * max(finite, 1e-300)
    flow = 0.0
    while True:
        parent = _bfs(cap, source, sink, tol)
        if parent is None:
            break
        bottleneck = math.inf
        v = sink
        while v != source:
            u = parent[v]
            bottleneck = min(bottleneck, cap[u][v])
            v = u
        if math.isinf(bottleneck):
            raise ValueError("the cut is infinite: an uncuttable path joins source and sink")
        v = sink
        while v != source:
            u = parent[v]
            cap[u][v] -= bottleneck
            cap[v][u] += bottleneck
            v = u
        flow += bottleneck
    return flow, frozenset(_reachable(cap, source, tol))


def _bfs(cap: list[dict[int, float]], source: int, sink: int, tol: float) -> dict[int, int] | None:
    parent: dict[int, int] = {source: source}
    queue = deque([source])
    while queue:
        u = queue.popleft()
        for v, c in cap[u].items():
            if c > tol and v not in parent:
                parent[v] = u
                if v == sink:
                    return parent
                queue.append(v)
    return None


def _reachable(cap: list[dict[int, float]], source: int, tol: float) -> set[int]:
    seen = {source}
    queue = deque([source])
    while queue:
        u = queue.popleft()
        for v, c in cap[u].items():
            if c > tol and v not in seen:
                seen.add(v)
                queue.append(v)
    return seen
