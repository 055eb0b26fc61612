"""The parties of SecAgg+, a client and the server, each speaking only bytes (see ``secagg``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from tinylarge.errors import TinylargeError
from tinylarge.security import _secagg_crypto as crypto
from tinylarge.security import _secagg_wire as wire
from tinylarge.security import _shamir as shamir
from tinylarge.security._secagg_base import (
    SERVER,
    Message,
    SecAggAbort,
    SecAggParams,
    communication_graph,
    quantize,
    weight_units,
)

_SHARE_KEY_INFO = b"tinylarge/secagg/share-encryption"
_MASK_INFO = b"tinylarge/secagg/pairwise-mask"


def _mask(seed: bytes, elements: int, modulus_bits: int, ops: Counter[str]) -> NDArray[np.uint64]:
    """``PRG(seed)`` as ``elements`` integers mod ``2**modulus_bits``."""
    width = next(w for w in (1, 2, 4, 8) if 8 * w >= modulus_bits)
    raw = crypto.prg(seed, elements * width, ops)
    values = np.frombuffer(raw, dtype=f"<u{width}").astype(np.uint64)
    return values & np.uint64((1 << modulus_bits) - 1)


def _route(sender: int, receiver: int) -> bytes:
    return wire.encode_records([(sender, b""), (receiver, b"")])


class Client:
    """One client: its private vector and weight, keys and held shares; it speaks only bytes."""

    def __init__(
        self, cid: int, vector: NDArray[np.float64], *, weight: float | None, seed: int
    ) -> None:
        self.id = cid
        self._x = vector
        self._weight = weight
        self._rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, cid)))
        self.ops: Counter[str] = Counter()
        # shares this client holds, by owner: (share of s^SK, share of b)
        self._held: dict[int, tuple[bytes, bytes]] = {}

    def on_setup(self, payload: bytes) -> bytes:
        """Stage 1: read the configuration; send the public keys ``c_pk || s_pk``."""
        cfg = wire.decode_setup(payload)
        self._cfg = cfg
        self._params = SecAggParams(
            num_shares=cfg.num_shares,
            reconstruction_threshold=cfg.reconstruction_threshold,
            clipping_range=cfg.clipping_range,
            quantization_range=cfg.quantization_range,
            modulus_range=2**cfg.modulus_bits,
            max_weight=cfg.max_weight,
            stochastic_rounding=cfg.stochastic_rounding,
        )
        if cfg.elements != len(self._x) + cfg.weighted or cfg.weighted != (
            self._weight is not None
        ):
            raise TinylargeError(f"client {self.id}: its vector does not match the round's")
        self._c_sk, self._s_sk = self._rng.bytes(32), self._rng.bytes(32)
        return crypto.x25519_public_key(self._c_sk, self.ops) + crypto.x25519_public_key(
            self._s_sk, self.ops
        )

    def on_neighbour_keys(self, payload: bytes) -> bytes:
        """Stage 2: share ``s^SK`` and a fresh seed ``b``; one sealed ciphertext per neighbour."""
        records = wire.decode_records(payload, wire.PUBLIC_KEYS_BYTES)
        self._keys = {v: (blob[:32], blob[32:]) for v, blob in records}
        t = self._cfg.reconstruction_threshold
        holders = sorted([self.id, *self._keys])
        if len(holders) < t:
            raise SecAggAbort(2, f"client {self.id} has {len(holders)} neighbours, threshold {t}")
        self._b = self._rng.bytes(32)
        xs = [h + 1 for h in holders]
        key_shares = shamir.split(
            int.from_bytes(self._s_sk, "little"), threshold=t, xs=xs, rng=self._rng
        )
        seed_shares = shamir.split(
            int.from_bytes(self._b, "little"), threshold=t, xs=xs, rng=self._rng
        )
        self.ops["shamir_shares_made"] += 2 * len(xs)

        def shares_for(v: int) -> tuple[bytes, bytes]:
            return (
                wire.encode_share(v + 1, key_shares[v + 1]),
                wire.encode_share(v + 1, seed_shares[v + 1]),
            )

        self._held[self.id] = shares_for(self.id)
        self._aead_keys: dict[int, bytes] = {}
        out = []
        for v in sorted(self._keys):
            secret = crypto.x25519_agree(self._c_sk, self._keys[v][0], self.ops)
            self._aead_keys[v] = crypto.hkdf(secret, _SHARE_KEY_INFO, self.ops)
            plaintext = wire.encode_share_plaintext(self.id, v, *shares_for(v))
            nonce = self._rng.bytes(crypto.NONCE_BYTES)
            sealed = crypto.aead_encrypt(
                self._aead_keys[v], nonce, plaintext, _route(self.id, v), self.ops
            )
            out.append((v, sealed))
        return wire.encode_records(out)

    def on_forwarded_shares(self, payload: bytes) -> bytes:
        """Stage 3: keep the neighbours' shares; send the masked, quantized input."""
        for u, sealed in wire.decode_records(payload, wire.CIPHERTEXT_BYTES):
            plaintext = crypto.aead_decrypt(
                self._aead_keys[u], sealed, _route(u, self.id), self.ops
            )
            sender, receiver, key_share, seed_share = wire.decode_share_plaintext(plaintext)
            if (sender, receiver) != (u, self.id):
                raise SecAggAbort(3, f"client {self.id} got shares of {sender} for {receiver}")
            self._held[u] = (key_share, seed_share)
        p, t = self._params, self._cfg.reconstruction_threshold
        if len(self._held) < t:
            raise SecAggAbort(3, f"client {self.id} holds {len(self._held)} shares, threshold {t}")
        x = self._x
        units = 0
        if self._weight is not None:
            units = weight_units(self._weight, p)
            x = x * (units / (p.quantization_range - 1))
        q = quantize(x, p, rng=self._rng if p.stochastic_rounding else None)
        if self._weight is not None:
            q = np.append(q, np.uint64(units))
        bits = p.modulus_bits
        y = q + _mask(self._b, len(q), bits, self.ops)
        for v in sorted(self._held):
            if v == self.id:
                continue
            agreed = crypto.x25519_agree(self._s_sk, self._keys[v][1], self.ops)
            pairwise = _mask(crypto.hkdf(agreed, _MASK_INFO, self.ops), len(q), bits, self.ops)
            y = y + pairwise if self.id > v else y - pairwise
        return wire.pack_vector(y & np.uint64(p.modulus_range - 1), bits)

    def on_unmask_request(self, payload: bytes) -> bytes:
        """Stage 4: per neighbour, the share of ``b`` if it survived, of ``s^SK`` if it dropped."""
        survivors, dropped = wire.decode_id_lists(payload)
        t = self._cfg.reconstruction_threshold
        if set(survivors) & set(dropped):
            raise SecAggAbort(4, f"client {self.id} was asked for both shares of a neighbour")
        if not set(survivors) | set(dropped) <= set(self._held):
            raise SecAggAbort(4, f"client {self.id} was asked for shares it does not hold")
        if len(survivors) < t:
            raise SecAggAbort(4, f"client {self.id} sees {len(survivors)} survivors, threshold {t}")
        return wire.encode_unmask_shares(
            [(v, wire.SEED_SHARE, self._held[v][1]) for v in survivors]
            + [(v, wire.KEY_SHARE, self._held[v][0]) for v in dropped]
        )


class Server:
    """The aggregator. Its only inputs after construction are the clients' payloads.

    It knows the settings, the sampled client ids, the vector length and the
    round seed (for the graph). With ``record=True`` it keeps everything it
    receives in :attr:`received`.
    """

    def __init__(
        self,
        params: SecAggParams,
        client_ids: Sequence[int],
        *,
        vector_len: int,
        weighted: bool,
        seed: int,
        record: bool = False,
    ) -> None:
        self.params = params
        self.client_ids = sorted(client_ids)
        self.elements = vector_len + weighted
        self.weighted = weighted
        self._seed = seed
        self._record = record
        self.ops: Counter[str] = Counter()
        self.received: list[tuple[Message, bytes]] = []
        self.neighbours: dict[int, frozenset[int]] = {}
        self.survivors: frozenset[int] = frozenset()

    def _receive(self, stage: int, kind: str, uploads: Mapping[int, bytes]) -> None:
        if self._record:
            for cid in sorted(uploads):
                msg = Message(stage, cid, SERVER, kind, len(uploads[cid]))
                self.received.append((msg, uploads[cid]))

    def _check(self, stage: int, alive: set[int], needed: set[int]) -> None:
        """Abort unless ``threshold`` clients are alive and every needed secret is recoverable."""
        t = self.params.reconstruction_threshold
        if len(alive) < t:
            raise SecAggAbort(stage, f"{len(alive)} clients left, threshold {t}")
        for u in sorted(needed):
            live = len(self.neighbours[u] & alive)
            if live < t:
                who = f"client {u}" if u in alive else f"dropped client {u}"
                raise SecAggAbort(
                    stage, f"{who} has {live} live neighbours (itself included), threshold {t}"
                )

    def setup(self) -> dict[int, bytes]:
        """Stage 0: the graph, and the configuration for every client."""
        p = self.params
        self.neighbours = communication_graph(self.client_ids, p.num_shares, seed=self._seed)
        cfg = wire.SetupConfig(
            p.num_shares,
            p.reconstruction_threshold,
            p.clipping_range,
            p.quantization_range,
            p.modulus_bits,
            p.max_weight,
            p.stochastic_rounding,
            self.weighted,
            self.elements,
        )
        return dict.fromkeys(self.client_ids, wire.encode_setup(cfg))

    def on_public_keys(self, uploads: Mapping[int, bytes]) -> dict[int, bytes]:
        """End of stage 1: relay each client its live neighbours' public keys."""
        self._receive(1, "public_keys", uploads)
        self._keys = {u: (pk[:32], pk[32:]) for u, pk in uploads.items()}
        alive = set(uploads)
        self._check(1, alive, alive)
        return {
            u: wire.encode_records(
                (v, b"".join(self._keys[v])) for v in sorted(self.neighbours[u] & alive - {u})
            )
            for u in sorted(alive)
        }

    def on_encrypted_shares(self, uploads: Mapping[int, bytes]) -> dict[int, bytes]:
        """End of stage 2: forward each ciphertext to its receiver, unread."""
        self._receive(2, "encrypted_shares", uploads)
        alive = set(uploads)
        self._check(2, alive, alive)
        inbox: dict[int, list[tuple[int, bytes]]] = {v: [] for v in sorted(alive)}
        for u in sorted(alive):
            for v, sealed in wire.decode_records(uploads[u], wire.CIPHERTEXT_BYTES):
                if v in inbox:
                    inbox[v].append((u, sealed))
        self._shared = alive
        return {v: wire.encode_records(records) for v, records in inbox.items()}

    def on_masked_inputs(self, uploads: Mapping[int, bytes]) -> dict[int, bytes]:
        """End of stage 3: sum the masked inputs; ask survivors for the shares that unmask it."""
        self._receive(3, "masked_input", uploads)
        alive = set(uploads)
        # dropouts whose mask key is needed: someone alive masked with them
        self._dropped = {v for v in self._shared - alive if self.neighbours[v] & alive}
        self._check(3, alive, alive | self._dropped)
        total = np.zeros(self.elements, dtype=np.uint64)
        for u in sorted(alive):
            total += wire.unpack_vector(uploads[u], self.elements, self.params.modulus_bits)
        self._masked_sum = total
        self.survivors = frozenset(alive)
        return {
            u: wire.encode_id_lists(
                sorted(self.neighbours[u] & alive), sorted(self.neighbours[u] & self._dropped)
            )
            for u in sorted(alive)
        }

    def on_unmask_shares(self, uploads: Mapping[int, bytes]) -> NDArray[np.uint64]:
        """Stage 4: rebuild the secrets, remove the masks; the sum mod ``modulus_range``."""
        self._receive(4, "unmask_shares", uploads)
        p, t = self.params, self.params.reconstruction_threshold
        if len(uploads) < t:
            raise SecAggAbort(4, f"{len(uploads)} clients left, threshold {t}")
        got: dict[tuple[int, int], dict[int, int]] = {
            **{(u, wire.SEED_SHARE): {} for u in self.survivors},
            **{(v, wire.KEY_SHARE): {} for v in self._dropped},
        }
        for w in sorted(uploads):
            for owner, kind, blob in wire.decode_unmask_shares(uploads[w]):
                x, y = wire.decode_share(blob)
                got[owner, kind][x] = y
        for (owner, kind), shares in sorted(got.items()):
            if len(shares) < t:
                what = "self-mask seed" if kind == wire.SEED_SHARE else "mask key"
                raise SecAggAbort(
                    4, f"client {owner}'s {what}: {len(shares)} share(s) arrived, threshold {t}"
                )
        bits, total = p.modulus_bits, self._masked_sum
        for u in sorted(self.survivors):
            total = total - _mask(
                self._rebuild(got[u, wire.SEED_SHARE]), self.elements, bits, self.ops
            )
        for v in sorted(self._dropped):
            key = self._rebuild(got[v, wire.KEY_SHARE])
            for u in sorted(self.neighbours[v] & self.survivors):
                agreed = crypto.x25519_agree(key, self._keys[u][1], self.ops)
                pairwise = _mask(
                    crypto.hkdf(agreed, _MASK_INFO, self.ops), self.elements, bits, self.ops
                )
                total = total - pairwise if u > v else total + pairwise  # undo u's mask for v
        return total & np.uint64(p.modulus_range - 1)

    def _rebuild(self, shares: Mapping[int, int]) -> bytes:
        """A 32-byte secret from any ``threshold`` of its shares."""
        self.ops["shamir_reconstructions"] += 1
        chosen = dict(sorted(shares.items())[: self.params.reconstruction_threshold])
        return shamir.combine(chosen).to_bytes(32, "little")
