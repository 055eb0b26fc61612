"""The byte formats of SecAgg+ messages: every size the protocol bills comes from here.

All integers are little-endian; client ids are unsigned 32-bit. No message
carries its sender: the transport knows who sent it (as in Flower).

Stage ``s`` holds the clients' ``s``-th upload and the server's reply to it;
a client that drops after stage ``s`` has sent its stage-``s`` upload and
nothing after (the server still sends it the stage-``s`` reply).

| message (stage, direction)    | bytes                                                    |
|-------------------------------|----------------------------------------------------------|
| setup (0, down)               | :data:`SETUP_BYTES`                                      |
| public keys (1, up)           | 2 x 32 (c_pk, s_pk)                                      |
| neighbour keys (1, down)      | per neighbour: id 4 + 64                                 |
| encrypted shares (2, up)      | per neighbour: receiver id 4 + :data:`CIPHERTEXT_BYTES`  |
| forwarded shares (2, down)    | per neighbour: sender id 4 + :data:`CIPHERTEXT_BYTES`    |
| masked input (3, up)          | ``ceil(elements * log2(modulus) / 8)``, bit-packed       |
| unmask request (3, down)      | 4 + 4 per listed neighbour (survivors, then dropped)     |
| unmask shares (4, up)         | per share: owner id 4 + kind 1 + :data:`SHARE_BYTES`     |

A share is ``x (4) || f(x) (66)``; the encrypted plaintext is
``sender (4) || receiver (4) || share of s_sk || share of b`` (Bonawitz et al.,
Fig. 4), sealed as ``nonce (12) || ciphertext || tag (16)``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from tinylarge.security._secagg_crypto import KEY_BYTES, NONCE_BYTES, TAG_BYTES
from tinylarge.security._shamir import ELEMENT_BYTES

ID_BYTES = 4
PUBLIC_KEYS_BYTES = 2 * KEY_BYTES
SHARE_BYTES = ID_BYTES + ELEMENT_BYTES
SHARE_PLAINTEXT_BYTES = 2 * ID_BYTES + 2 * SHARE_BYTES
CIPHERTEXT_BYTES = NONCE_BYTES + SHARE_PLAINTEXT_BYTES + TAG_BYTES
NEIGHBOUR_KEY_RECORD = ID_BYTES + PUBLIC_KEYS_BYTES
ROUTED_CIPHERTEXT_RECORD = ID_BYTES + CIPHERTEXT_BYTES
UNMASK_SHARE_RECORD = ID_BYTES + 1 + SHARE_BYTES
#: Kinds of a share in the unmask stage.
SEED_SHARE, KEY_SHARE = 0, 1

_SETUP = struct.Struct("<IIdQBdBBI")
SETUP_BYTES = _SETUP.size
_ID = struct.Struct("<I")


class SetupConfig(NamedTuple):
    """What the server tells every client in stage 0."""

    num_shares: int
    reconstruction_threshold: int
    clipping_range: float
    quantization_range: int
    modulus_bits: int
    max_weight: float
    stochastic_rounding: bool
    weighted: bool
    elements: int  # per masked vector, the weight included


def encode_setup(cfg: SetupConfig) -> bytes:
    return _SETUP.pack(*cfg)


def decode_setup(payload: bytes) -> SetupConfig:
    f = _SETUP.unpack(payload)
    return SetupConfig(f[0], f[1], f[2], f[3], f[4], f[5], bool(f[6]), bool(f[7]), f[8])


def encode_records(records: Iterable[tuple[int, bytes]]) -> bytes:
    """``id || blob`` records, every blob of one fixed size."""
    return b"".join(_ID.pack(i) + blob for i, blob in records)


def decode_records(payload: bytes, blob_bytes: int) -> list[tuple[int, bytes]]:
    size = ID_BYTES + blob_bytes
    if len(payload) % size:
        raise ValueError(f"payload of {len(payload)} bytes is not whole {size}-byte records")
    return [
        (_ID.unpack_from(payload, k)[0], payload[k + ID_BYTES : k + size])
        for k in range(0, len(payload), size)
    ]


def encode_share(x: int, y: int) -> bytes:
    return _ID.pack(x) + y.to_bytes(ELEMENT_BYTES, "little")


def decode_share(blob: bytes) -> tuple[int, int]:
    return _ID.unpack_from(blob)[0], int.from_bytes(blob[ID_BYTES:], "little")


def encode_share_plaintext(
    sender: int, receiver: int, key_share: bytes, seed_share: bytes
) -> bytes:
    return _ID.pack(sender) + _ID.pack(receiver) + key_share + seed_share


def decode_share_plaintext(plaintext: bytes) -> tuple[int, int, bytes, bytes]:
    sender, receiver = _ID.unpack_from(plaintext)[0], _ID.unpack_from(plaintext, ID_BYTES)[0]
    rest = plaintext[2 * ID_BYTES :]
    return sender, receiver, rest[:SHARE_BYTES], rest[SHARE_BYTES:]


def encode_id_lists(first: Sequence[int], second: Sequence[int]) -> bytes:
    """Two lists of ids: ``len(first) || first || second``."""
    return _ID.pack(len(first)) + b"".join(_ID.pack(i) for i in [*first, *second])


def decode_id_lists(payload: bytes) -> tuple[list[int], list[int]]:
    ids = [_ID.unpack_from(payload, k)[0] for k in range(0, len(payload), ID_BYTES)]
    return ids[1 : 1 + ids[0]], ids[1 + ids[0] :]


def encode_unmask_shares(shares: Iterable[tuple[int, int, bytes]]) -> bytes:
    """``(owner, kind, share)`` records; kind is :data:`SEED_SHARE` or :data:`KEY_SHARE`."""
    return b"".join(_ID.pack(owner) + bytes([kind]) + share for owner, kind, share in shares)


def decode_unmask_shares(payload: bytes) -> list[tuple[int, int, bytes]]:
    return [(owner, blob[0], blob[1:]) for owner, blob in decode_records(payload, 1 + SHARE_BYTES)]


def masked_vector_bytes(elements: int, modulus_bits: int) -> int:
    """Bytes of a bit-packed vector of ``elements`` integers below ``2**modulus_bits``."""
    return -(-elements * modulus_bits // 8)


def pack_vector(values: NDArray[np.uint64], modulus_bits: int) -> bytes:
    """Bit-pack integers below ``2**modulus_bits``, least significant bit first.

    Byte-aligned widths (8, 16, 32, 64 bits) are plain little-endian arrays.
    """
    if modulus_bits in (8, 16, 32, 64):
        return values.astype(f"<u{modulus_bits // 8}").tobytes()
    shifts = np.arange(modulus_bits, dtype=np.uint64)
    bits = ((values[:, None] >> shifts) & np.uint64(1)).astype(np.uint8)
    return np.packbits(bits.ravel(), bitorder="little").tobytes()


def unpack_vector(payload: bytes, elements: int, modulus_bits: int) -> NDArray[np.uint64]:
    """The inverse of :func:`pack_vector`."""
    if len(payload) != masked_vector_bytes(elements, modulus_bits):
        raise ValueError(f"masked vector of {len(payload)} bytes, expected {elements} elements")
    if modulus_bits in (8, 16, 32, 64):
        return np.frombuffer(payload, dtype=f"<u{modulus_bits // 8}").astype(np.uint64)
    raw = np.frombuffer(payload, dtype=np.uint8)
    bits = np.unpackbits(raw, count=elements * modulus_bits, bitorder="little")
    weights = np.uint64(1) << np.arange(modulus_bits, dtype=np.uint64)
    values: NDArray[np.uint64] = (
        bits.reshape(elements, modulus_bits).astype(np.uint64) * weights
    ).sum(axis=1, dtype=np.uint64)
    return values
