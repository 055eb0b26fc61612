"""The arithmetic of the robust aggregation rules, as pure functions on update matrices.

Every function takes ``x``, an ``(n, d)`` float64 matrix with one client's update
vector per row, and returns a ``d``-vector (a rule) or a new matrix (a
pre-aggregator). Option checks live in :mod:`tinylarge.security.robust`; these
functions assume valid arguments.
"""

from __future__ import annotations

import numpy as np


def pairwise_sq_dists(x: np.ndarray) -> np.ndarray:
    """``(n, n)`` squared Euclidean distances between the rows of ``x`` (diagonal zero)."""
    sq = np.einsum("ij,ij->i", x, x)
    dist = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    np.maximum(dist, 0.0, out=dist)  # the Gram form can go slightly negative
    np.fill_diagonal(dist, 0.0)
    return np.asarray(dist, dtype=np.float64)


def krum_scores(dist: np.ndarray, f: int) -> np.ndarray:
    """Each row's Krum score: the sum of its squared distances to its ``n - f - 2`` nearest others.

    Blanchard et al. 2017, section 4. At least one neighbour counts (as in Flower), so
    the score stays defined on the small sets Bulyan's last selections leave.
    """
    n = dist.shape[0]
    if n == 1:
        return np.zeros(1, dtype=np.float64)
    k = min(max(n - f - 2, 1), n - 1)
    others = np.sort(dist, axis=1)[:, 1 : k + 1]  # column 0 is the row itself
    return np.asarray(others.sum(axis=1), dtype=np.float64)


def krum(x: np.ndarray, f: int) -> np.ndarray:
    """The row with the smallest Krum score (ties: the lowest index)."""
    return np.array(x[int(np.argmin(krum_scores(pairwise_sq_dists(x), f)))], dtype=np.float64)


def multi_krum(x: np.ndarray, f: int, m: int, weights: np.ndarray | None = None) -> np.ndarray:
    """The mean of the ``m`` rows of smallest Krum score, weighted by ``weights`` if given."""
    scores = krum_scores(pairwise_sq_dists(x), f)
    best = np.argsort(scores, kind="stable")[:m]
    w = None if weights is None else weights[best]
    return np.asarray(np.average(x[best], axis=0, weights=w))


def coordinate_median(x: np.ndarray) -> np.ndarray:
    """Per coordinate, the median over the rows (the mean of the middle two for even ``n``)."""
    return np.asarray(np.median(x, axis=0))


def trimmed_mean(x: np.ndarray, beta: float) -> np.ndarray:
    """Per coordinate, the mean after dropping the ``int(beta * n)`` largest and smallest values.

    ``int(beta * n)`` as in Flower's ``aggregate_trimmed_avg`` and scipy's ``trim_mean``.
    """
    n = x.shape[0]
    cut = int(beta * n)
    return np.asarray(np.sort(x, axis=0)[cut : n - cut].mean(axis=0))


def geometric_median(
    x: np.ndarray, *, nu: float, iterations: int, weights: np.ndarray | None = None
) -> np.ndarray:
    """Smoothed Weiszfeld iterations for ``argmin_z sum_i w_i max(nu, |z - x_i|)``.

    Pillutla et al., "Robust Aggregation for Federated Learning" (RFA), IEEE TSP 2022,
    https://arxiv.org/abs/1912.13445, Algorithm 2: start at the weighted mean, then
    ``z <- sum_i b_i x_i / sum_i b_i`` with ``b_i = w_i / max(nu, |z - x_i|)``, stopping
    early once ``z`` no longer moves (relative change below 1e-12).
    """
    w = np.full(x.shape[0], 1.0 / x.shape[0]) if weights is None else weights / weights.sum()
    z = w @ x
    for _ in range(iterations):
        dist = np.linalg.norm(x - z, axis=1)
        b = w / np.maximum(dist, nu)
        new = (b @ x) / b.sum()
        moved = float(np.linalg.norm(new - z))
        z = new
        if moved <= 1e-12 * max(1.0, float(np.linalg.norm(z))):
            break
    return np.asarray(z)


def centered_clipping(
    x: np.ndarray, center: np.ndarray, *, tau: float, iterations: int
) -> np.ndarray:
    """Karimireddy et al. 2021's centred clipping, ``iterations`` steps from ``center``.

    ``v <- v + mean_i (x_i - v) min(1, tau / |x_i - v|)``; each step moves ``v`` by at
    most ``tau``, and one row moves it by at most ``tau / n``.
    """
    v = center.astype(np.float64, copy=True)
    for _ in range(iterations):
        diff = x - v
        norms = np.linalg.norm(diff, axis=1)
        scale = np.minimum(1.0, tau / np.maximum(norms, np.finfo(np.float64).tiny))
        v = v + (diff * scale[:, None]).mean(axis=0)
    return v


def fltrust(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Cao et al. 2021's FLTrust: trust ``ReLU(cos(x_i, ref))``, rows rescaled to ``|ref|``.

    Returns ``sum_i t_i |g0| x_i / |x_i| / sum_i t_i``, or zeros when no row is trusted
    (every cosine at most 0), so the model does not move.
    """
    ref_norm = float(np.linalg.norm(reference))
    norms = np.linalg.norm(x, axis=1)
    safe = np.where(norms > 0.0, norms, 1.0)
    cos = (x @ reference) / (safe * ref_norm) if ref_norm > 0.0 else np.zeros(x.shape[0])
    trust = np.where(norms > 0.0, np.maximum(cos, 0.0), 0.0)
    total = float(trust.sum())
    if total == 0.0:
        return np.zeros(x.shape[1])
    rescaled = x * (ref_norm / safe)[:, None]
    return np.asarray((trust @ rescaled) / total)


def bucketing(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """Rows shuffled by ``rng.permutation(n)``, then the mean of each run of ``s`` consecutive rows.

    Karimireddy et al., "Byzantine-Robust Learning on Heterogeneous Datasets via
    Bucketing", ICLR 2022. ``ceil(n / s)`` buckets; the last holds the ``n mod s``
    leftover rows when ``s`` does not divide ``n`` (as in ByzFL).
    """
    shuffled = x[rng.permutation(x.shape[0])]
    chunks = np.array_split(shuffled, list(range(s, x.shape[0], s)))
    return np.stack([chunk.mean(axis=0) for chunk in chunks])


def nearest_neighbour_mixing(x: np.ndarray, f: int) -> np.ndarray:
    """Each row replaced by the mean of its ``n - f`` nearest rows (itself included).

    Allouah et al., "Fixing by Mixing", AISTATS 2023, https://arxiv.org/abs/2302.01772.
    Ties in distance go to the lower row index.
    """
    k = x.shape[0] - f
    nearest = np.argsort(pairwise_sq_dists(x), axis=1, kind="stable")[:, :k]
    return np.asarray(x[nearest].mean(axis=1))


def bulyan(x: np.ndarray, f: int) -> np.ndarray:
    """El Mhamdi et al. 2018's Bulyan over Krum.

    "The Hidden Vulnerability of Distributed Learning in Byzantium", ICML 2018,
    https://arxiv.org/abs/1802.07927: select ``theta = n - 2f`` rows by Krum, one at a
    time, each time removing the winner; then per coordinate average the
    ``beta = theta - 2f`` selected values closest to their median.
    """
    n = x.shape[0]
    theta = n - 2 * f
    remaining = list(range(n))
    dist = pairwise_sq_dists(x)
    selected: list[int] = []
    for _ in range(theta):
        sub = dist[np.ix_(remaining, remaining)]
        pick = remaining[int(np.argmin(krum_scores(sub, f)))]
        selected.append(pick)
        remaining.remove(pick)
    chosen = x[selected]
    beta = theta - 2 * f
    med = np.median(chosen, axis=0)
    closest = np.argsort(np.abs(chosen - med), axis=0, kind="stable")[:beta]
    return np.asarray(np.take_along_axis(chosen, closest, axis=0).mean(axis=0))
