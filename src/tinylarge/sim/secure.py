"""Secure aggregation on the round clock: SecAgg+ stage by stage, every message a transfer.

:meth:`tinylarge.sim.rounds.Round.secure_aggregate` runs the protocol of
:mod:`tinylarge.security.secagg` between the round's clients and the server with
their real payloads: each stage's server-to-client messages are downloads on the
client's link, its handler's cryptography is device compute (cycles from
:mod:`tinylarge.hardware.crypto` at the device's core class), its reply is an upload.
The server answers a stage once every reply is in (a barrier); a reply lost to an
outage or arriving after ``engine.deadline_s`` makes the client silent from that
stage on, which is exactly the dropout the protocol is built to survive. The
server's unmasking (Shamir reconstruction, regenerating masks) is server compute
after the device phase.

What the clients mask is their model update (trained weights minus the global
weights, floating tensors only), weighted by sample count as FedAvg does (Flower's
``max_weight`` caps a weight); the server learns the weighted mean and nothing
else, and adds it to the global weights. With ``privacy.dp`` (distributed DP) each
device has clipped its update and added its share of the noise before masking
(:meth:`tinylarge.sim.rounds.Round.protect`); the server learns the unweighted sum
and divides it by the expected number of devices, as DP-FedAvg does, and the
accountant is told the noise the survivors' shares really add up to.

If too few clients remain for the ``reconstruction_threshold`` the round aborts:
nothing is aggregated, what was sent is billed, the reason is reported, and the run
goes on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tinylarge.hardware.cost import Cycles
from tinylarge.hardware.crypto import crypto_clock_hz, crypto_cycles
from tinylarge.models.weights import Weights
from tinylarge.sim.aggregation import Update, flatten, unflatten

if TYPE_CHECKING:
    from tinylarge.config import SecAggConfig
    from tinylarge.hardware.catalogue import DeviceProfile
    from tinylarge.sim.rounds import Round

#: The round's protocol seed stream (graph, keys, masks, rounding).
_SECAGG_STREAM = 43


def ledger_name(kind: str) -> str:
    """A protocol message kind as the ledger's ``what``: ``public_keys`` ->
    ``secagg-public-keys``."""
    return "secagg-" + kind.replace("_", "-")


def _cycles(device: DeviceProfile, before: Mapping[str, int], after: Mapping[str, int],
            *, threshold: int, mask_elements: int) -> float:  # fmt: skip
    d = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    return crypto_cycles(
        device,
        x25519=d.get("x25519_keygen", 0) + d.get("x25519_agree", 0),
        hkdf=d.get("hkdf", 0),
        aead_bytes=d.get("aead_bytes", 0),
        prg_bytes=d.get("prg_bytes", 0),
        shares_made=d.get("shamir_shares_made", 0),
        threshold=threshold,
        reconstructions=d.get("shamir_reconstructions", 0),
        reconstruction_shares=threshold,
        mask_elements=mask_elements,
    )


def secure_aggregate(
    rd: Round, updates: Sequence[Update], *, base: Weights, cfg: SecAggConfig
) -> tuple[Weights, dict[str, Any]]:
    """The new global weights from the clients' ``updates`` through SecAgg+, and what the
    round reports (``secagg_survivors``, or ``secagg_aborted`` with the reason)."""
    from tinylarge.security.secagg import STAGES, Client, SecAggAbort, Server, server_replies

    private = rd.ctx.privacy  # distributed DP: an unweighted sum over the expected count

    def aborted(reason: str) -> tuple[Weights, dict[str, Any]]:
        if private is not None:
            private.record_round(rd.rnd, 0)  # nothing released, nothing spent
        return base, {"secagg_survivors": 0, "secagg_aborted": reason}

    by_id = {c.id: c for c in rd.participants}
    ids = sorted(u.client for u in updates if u.client not in rd.dropped)
    if len(ids) < cfg.reconstruction_threshold:
        t = cfg.reconstruction_threshold
        return aborted(f"secure aggregation not started: {len(ids)} clients left, threshold {t}")
    kept = [u for u in updates if u.client in ids]
    vectors = dict(zip((u.client for u in kept), flatten(kept, base), strict=True))
    weights = {u.client: float(u.num_samples) for u in updates if u.client in ids}
    params = cfg.params(len(ids))
    seed = int(
        np.random.SeedSequence([rd.ctx.seed, rd.rnd + 1, _SECAGG_STREAM]).generate_state(1)[0]
    )
    weighted = private is None
    clients = {
        cid: Client(cid, vectors[cid], weight=weights[cid] if weighted else None, seed=seed)
        for cid in ids
    }
    server = Server(params, ids, vector_len=len(vectors[ids[0]]), weighted=weighted, seed=seed)
    masks_per_client = params.num_shares  # self mask + one pairwise mask per other neighbour
    replies = server_replies(server)
    silent: set[int] = set()
    try:
        downlinks = server.setup()
        for stage, (down_kind, handle, up_kind) in enumerate(STAGES, start=1):
            down, up = ledger_name(down_kind), ledger_name(up_kind)
            live = [by_id[cid] for cid in sorted(downlinks) if cid not in silent]
            reached = rd.download({c.id: [(down, len(downlinks[c.id]))] for c in live}, live)
            uploads: dict[int, bytes] = {}
            for c in reached:
                before = dict(clients[c.id].ops)
                payload = handle(clients[c.id], downlinks[c.id])
                elements = server.elements * masks_per_client if stage == 3 else 0
                cycles = _cycles(c.profile, before, clients[c.id].ops,
                                 threshold=params.reconstruction_threshold,
                                 mask_elements=elements)  # fmt: skip
                if cycles > 0:
                    rd.compute(c, Cycles(cycles, crypto_clock_hz(c.profile)), what=f"{up}-crypto")
                if payload:
                    uploads[c.id] = payload
            arrived = {c.id for c in rd.upload({cid: [(up, len(p))] for cid, p in uploads.items()},
                                               [by_id[cid] for cid in uploads])}  # fmt: skip
            silent |= {c.id for c in live} - arrived
            uploads = {cid: p for cid, p in uploads.items() if cid in arrived}
            rd.barrier([by_id[cid] for cid in arrived])
            if stage < 4:
                downlinks = replies[stage - 1](uploads)
        before = dict(server.ops)
        quantized = server.on_unmask_shares(uploads)
    except SecAggAbort as abort:
        return aborted(abort.reason)
    cycles = _cycles(rd.ctx.server, before, server.ops,
                     threshold=params.reconstruction_threshold,
                     mask_elements=server.elements * (len(ids) + 1))  # fmt: skip
    rd.server(Cycles(cycles, crypto_clock_hz(rd.ctx.server)), what="secagg-unmask")
    from tinylarge.security.secagg import dequantize, weighted_mean

    survivors = len(server.survivors)
    if private is None:  # the sample-weighted mean, FedAvg's
        mean, _ = weighted_mean(quantized, params, count=survivors)
    else:  # DP-FedAvg's fixed-denominator mean of the clipped, noised updates
        mean = dequantize(quantized, params, count=survivors) / private.dp.num_sampled
        private.record_round(rd.rnd, survivors)
    return unflatten(np.asarray(mean, np.float64), base), {"secagg_survivors": survivors}
