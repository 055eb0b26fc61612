"""Secure aggregation: SecAgg+ with real cryptography, simulated message by message.

The server learns the sum of the clients' vectors and nothing else, even when
clients drop out mid-round. Bonawitz et al., "Practical Secure Aggregation for
Privacy-Preserving Machine Learning", CCS 2017 (https://eprint.iacr.org/2017/281),
mask each input with a self mask ``PRG(b_u)`` and one pairwise mask
``±PRG(s_uv)`` per other client; pairwise masks cancel in the sum, and
Shamir shares of ``b_u`` (survivors) or of the mask key ``s_u^SK`` (dropouts)
let the server remove the rest. Bell et al., "Secure Single-Server Aggregation
with (Poly)Logarithmic Overhead", CCS 2020 (https://eprint.iacr.org/2020/704),
SecAgg+, do the same on a sparse ``k``-regular graph: each client masks with
and shares to its neighbours only, so the cost per client is ``O(k + m)``
instead of ``O(n + m)``. Parameter names and defaults follow Flower's
``SecAggPlusWorkflow``.

The stages (Flower's names in brackets), with the choices made here:

0. setup: the server draws the communication graph and sends the
   configuration. ``num_shares`` counts the client itself: its neighbourhood is
   itself plus ``num_shares - 1`` others on a ring over a random permutation of
   the client ids (a Harary graph with random labels, Bell et al.'s semi-honest
   choice, seeded from the round seed); ``num_shares == n`` is the complete
   graph, the original SecAgg.
1. advertise keys [setup]: two X25519 key pairs per client, ``c`` for
   encryption and ``s`` for masks; the server relays neighbours' public keys.
2. share keys: Shamir shares (threshold ``reconstruction_threshold``, over
   GF(2^521 - 1)) of ``s_u^SK`` and of a fresh 32-byte seed ``b_u``, one per
   neighbour, the client keeping its own; each sealed with AES-256-GCM under
   HKDF-SHA256 of the X25519 agreement of ``c`` keys. The server only relays.
3. masked input [collect masked vectors]: clip to ±``clipping_range``, quantize
   onto ``[0, quantization_range)`` (stochastic rounding by default, like
   Flower; deterministic with ``stochastic_rounding=False``), then add
   ``PRG(b_u)`` and, for each neighbour ``v`` whose shares arrived,
   ``+PRG(s_uv)`` if ``u > v`` else ``-PRG(s_uv)``, all mod ``modulus_range``.
   PRG: the AES-256-CTR keystream keyed by the 32-byte seed, read as
   little-endian integers and reduced mod the (power-of-two) modulus;
   ``s_uv`` is HKDF-SHA256 of the X25519 agreement of ``s`` keys.
4. unmask: each survivor sends, per neighbour, the share of ``b`` (if that
   neighbour's masked input arrived) or of ``s^SK`` (if it dropped after stage
   2), never both. The server reconstructs and removes the masks.

If fewer than ``reconstruction_threshold`` clients remain, or a secret the
server needs is held by fewer live clients, the round ends in
:class:`SecAggAbort`. The model is semi-honest (honest-but-curious server and
clients): there are no signatures nor the consistency round of the actively
secure variant. For reproducibility every random draw (keys, seeds,
polynomials, nonces, rounding) comes from the round seed through independent
streams per party; a deployment would draw them from ``os.urandom``.

With ``weights`` (e.g. sample counts), client ``u`` scales its vector by
``r_u = min(w_u, max_weight) / max_weight``, quantized to a multiple of
``1 / (quantization_range - 1)``, and appends ``r_u`` in those units as one
more element (as Flower does); the result is the weighted mean
``sum(r_u x_u) / sum(r_u)``. Clipping then applies to ``r_u x_u``, and a large
``max_weight`` costs precision.

Where the code is: settings, quantization and the graph in ``_secagg_base``;
:class:`Client` and :class:`Server` in ``_secagg_parties``; byte formats (and
so every size billed) in ``_secagg_wire``; primitives in ``_secagg_crypto``;
Shamir sharing in ``_shamir``. This module runs a round and prices it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tinylarge.errors import TinylargeError
from tinylarge.security import _secagg_crypto as crypto
from tinylarge.security import _secagg_wire as wire
from tinylarge.security._secagg_base import (
    SERVER,
    Message,
    OpCount,
    SecAggAbort,
    SecAggParams,
    communication_graph,
    dequantize,
    quantize,
    weight_units,
)
from tinylarge.security._secagg_parties import Client, Server

__all__ = [
    "SERVER",
    "STAGES",
    "Client",
    "Message",
    "OpCount",
    "SecAggAbort",
    "SecAggParams",
    "SecAggResult",
    "Server",
    "communication_graph",
    "dequantize",
    "expansion",
    "quantize",
    "secure_sum",
    "server_replies",
    "weight_units",
    "weighted_mean",
]

#: Largest client id: Shamir abscissas are ``id + 1`` in 32 bits.
MAX_CLIENT_ID = 2**32 - 2
DROP_STAGES = (0, 1, 2, 3, 4)


#: The protocol's four client stages, in order: what the server sends, the client's handler,
#: what the client replies. :func:`secure_sum` and the round clock
#: (:mod:`tinylarge.sim.secure`) both drive the parties through this table.
STAGES: tuple[tuple[str, Callable[[Client, bytes], bytes], str], ...] = (
    ("setup", Client.on_setup, "public_keys"),
    ("neighbour_keys", Client.on_neighbour_keys, "encrypted_shares"),
    ("forwarded_shares", Client.on_forwarded_shares, "masked_input"),
    ("unmask_request", Client.on_unmask_request, "unmask_shares"),
)


def server_replies(server: Server) -> tuple[Callable[[Mapping[int, bytes]], dict[int, bytes]], ...]:
    """The server's answers to the replies of stages 1 to 3 (stage 4's ends the round:
    :meth:`Server.on_unmask_shares`)."""
    return (server.on_public_keys, server.on_encrypted_shares, server.on_masked_inputs)


def weighted_mean(
    quantized_sum: NDArray[np.uint64], params: SecAggParams, *, count: int
) -> tuple[NDArray[np.float64], float]:
    """The weighted mean of ``count`` weighted inputs from their quantized sum (the last
    element is the summed weight, see the module docstring), and that summed weight."""
    ratio_sum = float(quantized_sum[-1]) / (params.quantization_range - 1)
    mean = dequantize(quantized_sum[:-1], params, count=count) / ratio_sum
    return mean, ratio_sum * params.max_weight


@dataclass(frozen=True)
class SecAggResult:
    """The outcome of one secure-aggregation round.

    Attributes:
        total: the dequantized sum of the survivors' (clipped) vectors, or with
            weights their weighted mean.
        quantized_sum: what the server computed, the sum mod ``modulus_range``
            of the quantized inputs (with weights, the last element is the summed
            weight in units of ``max_weight / (quantization_range - 1)``).
        survivors: clients whose inputs are in the sum (their masked input arrived).
        messages: every message, in order, server replies included.
        ops: per client id and for ``"server"``.
        neighbours: the communication graph, each client in its own set.
        weight_sum: with weights, the survivors' summed (capped, quantized) weight.
        server_view: with ``record=True``, every message the server received
            with its payload: all it ever learns.
    """

    total: NDArray[np.float64]
    quantized_sum: NDArray[np.uint64]
    survivors: tuple[int, ...]
    messages: tuple[Message, ...]
    ops: Mapping[int | str, OpCount]
    neighbours: Mapping[int, frozenset[int]]
    weight_sum: float | None = None
    server_view: tuple[tuple[Message, bytes], ...] = ()


def _check_inputs(
    vectors: Mapping[int, NDArray[np.floating]],
    params: SecAggParams,
    seed: int,
    weights: Mapping[int, float] | None,
    drops: Mapping[int, int] | None,
) -> dict[int, NDArray[np.float64]]:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise TinylargeError(f"seed must be a non-negative integer, got {seed!r}")
    for cid in vectors:
        if isinstance(cid, bool) or not isinstance(cid, int) or not 0 <= cid <= MAX_CLIENT_ID:
            raise TinylargeError(f"client ids must be integers in 0..{MAX_CLIENT_ID}, got {cid!r}")
    arrays = {cid: np.asarray(v, dtype=np.float64) for cid, v in sorted(vectors.items())}
    shapes = {a.shape for a in arrays.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1 or next(iter(shapes))[0] == 0:
        raise TinylargeError(f"vectors must be 1-D, non-empty and of one length, got {shapes}")
    if not all(np.isfinite(a).all() for a in arrays.values()):
        raise TinylargeError("vectors must be finite (no NaN or inf)")
    params.check_clients(len(arrays))
    if weights is not None:
        if set(weights) != set(arrays):
            raise TinylargeError("weights must name exactly the clients of vectors")
        for cid, w in weights.items():
            if not (math.isfinite(w) and w > 0) or weight_units(w, params) == 0:
                raise TinylargeError(
                    f"weight {w} of client {cid} must be positive and at least "
                    f"max_weight / (quantization_range - 1) = "
                    f"{params.max_weight / (params.quantization_range - 1):.3g}"
                )
    for cid, stage in (drops or {}).items():
        if cid not in arrays or stage not in DROP_STAGES:
            raise TinylargeError(
                f"drops maps a client of vectors to a stage in {DROP_STAGES}, got {cid}: {stage}"
            )
    return arrays


def secure_sum(
    vectors: Mapping[int, NDArray[np.floating]],
    params: SecAggParams,
    *,
    seed: int,
    weights: Mapping[int, float] | None = None,
    drops: Mapping[int, int] | None = None,
    record: bool = False,
) -> SecAggResult:
    """Sum the clients' vectors with SecAgg+, as clients and a server exchanging bytes.

    Args:
        vectors: client id (``0..2**32-2``) to its 1-D vector; all of one length.
        params: the protocol settings.
        seed: the round seed (graph, keys, masks, rounding); same seed, same bytes.
        weights: client id to its weight (e.g. sample count); the result is then
            the weighted mean (see the module docstring).
        drops: client id to the stage after which it goes silent: 0 (sends
            nothing), 1 (sent its keys), 2 (also its encrypted shares), 3 (also
            its masked input: it is in the sum, but sends no unmasking shares),
            4 (drops during stage 4: only the first half of its unmasking
            shares arrive).
        record: keep every payload the server received in ``server_view``.

    Raises:
        SecAggAbort: too few clients or shares left at some stage.
        TinylargeError: invalid settings or inputs, or ``cryptography`` missing.
    """
    crypto.require()
    arrays = _check_inputs(vectors, params, seed, weights, drops)
    silent_after = dict(drops or {})
    ids = list(arrays)
    clients = {
        cid: Client(cid, arrays[cid], weight=None if weights is None else weights[cid], seed=seed)
        for cid in ids
    }
    server = Server(
        params,
        ids,
        vector_len=len(arrays[ids[0]]),
        weighted=weights is not None,
        seed=seed,
        record=record,
    )
    messages: list[Message] = []

    def send(stage: int, kind: str, payloads: Mapping[int, bytes], up: bool) -> None:
        for cid in sorted(payloads):
            sender, receiver = (cid, SERVER) if up else (SERVER, cid)
            messages.append(Message(stage, sender, receiver, kind, len(payloads[cid])))

    replies = server_replies(server)
    try:
        downlinks = server.setup()
        for stage, (down_kind, handle, up_kind) in enumerate(STAGES, start=1):
            send(stage - 1, down_kind, downlinks, up=False)
            uploads = {}
            for cid in sorted(downlinks):
                if silent_after.get(cid, stage) < stage:
                    continue
                payload = handle(clients[cid], downlinks[cid])
                if stage == 4 and silent_after.get(cid) == 4:  # cut off mid-upload
                    kept = len(payload) // wire.UNMASK_SHARE_RECORD // 2
                    payload = payload[: kept * wire.UNMASK_SHARE_RECORD]
                if payload:
                    uploads[cid] = payload
            send(stage, up_kind, uploads, up=True)
            if stage < 4:
                downlinks = replies[stage - 1](uploads)
        quantized_sum = server.on_unmask_shares(uploads)
    except SecAggAbort as abort:
        abort.messages = tuple(messages)
        raise
    survivors = tuple(sorted(server.survivors))
    weight_sum = None
    if weights is None:
        total = dequantize(quantized_sum, params, count=len(survivors))
    else:
        total, weight_sum = weighted_mean(quantized_sum, params, count=len(survivors))
    ops: dict[int | str, OpCount] = {cid: OpCount.of(c.ops) for cid, c in clients.items()}
    ops[SERVER] = OpCount.of(server.ops)
    return SecAggResult(
        total=total,
        quantized_sum=quantized_sum,
        survivors=survivors,
        messages=tuple(messages),
        ops=ops,
        neighbours=dict(server.neighbours),
        weight_sum=weight_sum,
        server_view=tuple(server.received),
    )


def expansion(
    num_clients: int,
    vector_len: int,
    bits: int,
    params: SecAggParams,
    *,
    weighted: bool = False,
    include_received: bool = True,
) -> float:
    """Bytes on one client's link in a round without dropouts, over its plaintext bytes.

    Sums the sizes of the messages :func:`secure_sum` sends (the formats of
    ``_secagg_wire``) without running any cryptography; the plaintext is
    ``vector_len`` values of ``bits`` bits. Bonawitz et al. (Sec. 7.1) count what
    a client sends and receives; ``include_received=False`` counts what it sends.
    Their 1.73x for 2^10 clients, 2^20 elements and 16-bit inputs uses a
    26-bit masking modulus (16 bits plus log2 of the clients).
    """
    params.check_clients(num_clients)
    others = params.num_shares - 1
    sent = (
        wire.PUBLIC_KEYS_BYTES
        + others * wire.ROUTED_CIPHERTEXT_RECORD
        + wire.masked_vector_bytes(vector_len + weighted, params.modulus_bits)
        + params.num_shares * wire.UNMASK_SHARE_RECORD
    )
    received = (
        wire.SETUP_BYTES
        + others * wire.NEIGHBOUR_KEY_RECORD
        + others * wire.ROUTED_CIPHERTEXT_RECORD
        + wire.ID_BYTES * (1 + params.num_shares)
    )
    return (sent + include_received * received) / (vector_len * bits / 8)
