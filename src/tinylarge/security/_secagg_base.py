"""SecAgg+ settings, messages, quantization and the communication graph (see ``secagg``)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import NDArray

from tinylarge.errors import TinylargeError

SERVER = "server"


@dataclass(frozen=True)
class SecAggParams:
    """SecAgg+ settings, named and defaulted as in Flower's ``SecAggPlusWorkflow``.

    Args:
        num_shares: neighbourhood size ``k``, the client itself included (odd
            when below the number of clients; equal to it for the original SecAgg).
        reconstruction_threshold: shares needed to rebuild a secret, ``2..k``.
        clipping_range: inputs are clipped to ``[-clipping_range, clipping_range]``.
        quantization_range: quantized inputs lie in ``[0, quantization_range)``.
        modulus_range: the masking modulus, a power of two up to ``2**64``.
        max_weight: weights are capped here (see the module docstring).
        stochastic_rounding: unbiased random rounding (True) or round half up.
    """

    num_shares: int
    reconstruction_threshold: int
    clipping_range: float = 8.0
    quantization_range: int = 4194304
    modulus_range: int = 2**32
    max_weight: float = 1000.0
    stochastic_rounding: bool = True

    def __post_init__(self) -> None:
        t, k, q, m = (
            self.reconstruction_threshold,
            self.num_shares,
            self.quantization_range,
            self.modulus_range,
        )
        if t < 2:
            raise TinylargeError(
                f"reconstruction_threshold must be at least 2 (one share would reveal a "
                f"secret), got {t}"
            )
        if t > k:
            raise TinylargeError(
                f"reconstruction_threshold {t} exceeds num_shares {k}; allowed: 2..{k}"
            )
        if m < 2 or m > 2**64 or m & (m - 1):
            raise TinylargeError(f"modulus_range must be a power of two from 2 to 2**64, got {m}")
        if q < 2:
            raise TinylargeError(f"quantization_range must be at least 2, got {q}")
        if not (math.isfinite(self.clipping_range) and self.clipping_range > 0):
            raise TinylargeError(
                f"clipping_range must be a positive number, got {self.clipping_range}"
            )
        if not (math.isfinite(self.max_weight) and self.max_weight > 0):
            raise TinylargeError(f"max_weight must be a positive number, got {self.max_weight}")

    @property
    def modulus_bits(self) -> int:
        """``log2(modulus_range)``: bits per masked element."""
        return self.modulus_range.bit_length() - 1

    def check_clients(self, num_clients: int) -> None:
        """Raise a one-line :class:`TinylargeError` if these settings cannot serve ``n`` clients."""
        n, k, q, m = num_clients, self.num_shares, self.quantization_range, self.modulus_range
        if k > n:
            raise TinylargeError(
                f"num_shares {k} exceeds the {n} clients; allowed: "
                f"{self.reconstruction_threshold}..{n} ({n} is the original SecAgg)"
            )
        if k < n and k % 2 == 0:
            raise TinylargeError(
                f"num_shares {k} must be odd below the {n} clients (a client and an even "
                f"number of ring neighbours); use {k - 1} or {k + 1}, or {n} for all clients"
            )
        if q * n > m:
            raise TinylargeError(
                f"quantization_range * clients = {q} * {n} = {q * n} exceeds modulus_range "
                f"{m}: the sum of quantized inputs would overflow the modulus; use "
                f"modulus_range 2**{math.ceil(math.log2(q * n))} or quantization_range <= {m // n}"
            )


@dataclass(frozen=True)
class Message:
    """One message of the protocol; ``nbytes`` is the length of its real serialized payload."""

    stage: int
    sender: int | str
    receiver: int | str
    kind: str
    nbytes: int


@dataclass(frozen=True)
class OpCount:
    """Cryptographic work of one party in one round.

    ``aead_bytes`` counts plaintext bytes encrypted plus decrypted, ``prg_bytes``
    keystream bytes generated for masks, ``hkdf`` key derivations.
    """

    x25519_keygen: int = 0
    x25519_agree: int = 0
    hkdf: int = 0
    aead_bytes: int = 0
    prg_bytes: int = 0
    shamir_shares_made: int = 0
    shamir_reconstructions: int = 0

    @classmethod
    def of(cls, counter: Counter[str]) -> OpCount:
        return cls(**{f.name: counter[f.name] for f in fields(cls)})


class SecAggAbort(Exception):  # noqa: N818 - the protocol's own word for it
    """The round failed: too few clients or shares left. ``reason`` is one line.

    ``messages`` holds what was sent before the abort (it was spent).
    """

    def __init__(self, stage: int, detail: str) -> None:
        self.stage = stage
        self.reason = f"secure aggregation aborted in stage {stage}: {detail}"
        self.messages: tuple[Message, ...] = ()
        super().__init__(self.reason)


def quantize(
    x: NDArray[np.floating] | Sequence[float],
    params: SecAggParams,
    *,
    rng: np.random.Generator | None = None,
) -> NDArray[np.uint64]:
    """Clip to ``±c`` and map ``[-c, c]`` linearly onto the integers ``0..Q-1``.

    ``q = round((clip(x, -c, c) + c) * (Q - 1) / (2c))`` with ``c =
    clipping_range`` and ``Q = quantization_range``: half up without ``rng``,
    stochastically with it (down or up with the probabilities that make the
    expectation exact, as Flower does).
    """
    c, top = params.clipping_range, params.quantization_range - 1
    scaled = (np.clip(np.asarray(x, dtype=np.float64), -c, c) + c) * (top / (2 * c))
    if rng is None:
        rounded = np.floor(scaled + 0.5)
    else:
        low = np.floor(scaled)
        rounded = low + (rng.random(scaled.shape) < scaled - low)
    return np.clip(rounded, 0, top).astype(np.uint64)


def dequantize(
    q: NDArray[np.uint64], params: SecAggParams, *, count: int = 1
) -> NDArray[np.float64]:
    """The inverse of :func:`quantize` for a sum of ``count`` quantized vectors."""
    c, top = params.clipping_range, params.quantization_range - 1
    out: NDArray[np.float64] = np.asarray(q, dtype=np.float64) * (2 * c / top) - count * c
    return out


def weight_units(weight: float, params: SecAggParams) -> int:
    """A weight as sent: ``round(min(w, max_weight) / max_weight * (Q - 1))``."""
    ratio = min(weight, params.max_weight) / params.max_weight
    return round(ratio * (params.quantization_range - 1))


def communication_graph(
    client_ids: Sequence[int], num_shares: int, *, seed: int
) -> dict[int, frozenset[int]]:
    """SecAgg+'s graph: each client with ``num_shares - 1`` ring neighbours, itself included.

    The ring is a random permutation of the ids drawn from ``seed`` (a Harary
    graph with random labels); ``num_shares >= len(client_ids)`` gives the
    complete graph.
    """
    ids = sorted(set(client_ids))
    n = len(ids)
    if num_shares >= n:
        return {u: frozenset(ids) for u in ids}
    if num_shares % 2 == 0:
        raise TinylargeError(f"num_shares {num_shares} must be odd below the {n} clients")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    ring = [ids[i] for i in rng.permutation(n)]
    half = (num_shares - 1) // 2
    return {ring[i]: frozenset(ring[(i + d) % n] for d in range(-half, half + 1)) for i in range(n)}
