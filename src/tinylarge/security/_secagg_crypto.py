"""The cryptographic primitives of SecAgg+, on the ``cryptography`` package, with op counts.

``cryptography`` belongs to the optional ``privacy`` extra: it is imported
inside each function, and :func:`require` turns its absence into a
:class:`~tinylarge.errors.TinylargeError` with the install hint.

- key agreement: X25519 (RFC 7748); a 32-byte shared secret.
- key derivation: HKDF-SHA256 (RFC 5869) from the shared secret, no salt, a
  purpose string as ``info``, 32 bytes out.
- authenticated encryption: AES-256-GCM with a 12-byte random nonce; the
  ciphertext on the wire is ``nonce || ciphertext || 16-byte tag``.
- pseudorandom generator: AES-256-CTR keyed by the 32-byte seed, zero IV,
  encrypting zeros (the keystream). Each seed keys one stream only.

Every function adds what it did to a ``Counter`` of operation names
(``x25519_keygen``, ``x25519_agree``, ``hkdf``, ``aead_bytes`` counting
plaintext bytes encrypted or decrypted, ``prg_bytes`` counting keystream bytes).
"""

from __future__ import annotations

from collections import Counter

from tinylarge.errors import TinylargeError

INSTALL_HINT = "pip install 'tinylarge[privacy]'"
#: Raw X25519 key and shared-secret length.
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16


def require() -> None:
    """Raise a one-line :class:`TinylargeError` if ``cryptography`` is not installed."""
    try:
        import cryptography  # noqa: F401
    except ImportError as exc:
        raise TinylargeError(
            f"secure aggregation needs the cryptography package: {INSTALL_HINT}"
        ) from exc


def x25519_public_key(private_key: bytes, ops: Counter[str]) -> bytes:
    """The raw public key of a raw 32-byte X25519 private key (key generation)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    ops["x25519_keygen"] += 1
    return X25519PrivateKey.from_private_bytes(private_key).public_key().public_bytes_raw()


def x25519_agree(private_key: bytes, public_key: bytes, ops: Counter[str]) -> bytes:
    """The 32-byte X25519 shared secret of our private and their public key."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import (
        X25519PrivateKey,
        X25519PublicKey,
    )

    ops["x25519_agree"] += 1
    key = X25519PrivateKey.from_private_bytes(private_key)
    return key.exchange(X25519PublicKey.from_public_bytes(public_key))


def hkdf(secret: bytes, info: bytes, ops: Counter[str]) -> bytes:
    """HKDF-SHA256 of ``secret`` for the purpose ``info``: a 32-byte key."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    ops["hkdf"] += 1
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(secret)


def aead_encrypt(
    key: bytes, nonce: bytes, plaintext: bytes, aad: bytes, ops: Counter[str]
) -> bytes:
    """AES-256-GCM: ``nonce || ciphertext || tag``, authenticating ``aad`` too."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    ops["aead_bytes"] += len(plaintext)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def aead_decrypt(key: bytes, blob: bytes, aad: bytes, ops: Counter[str]) -> bytes:
    """The plaintext of :func:`aead_encrypt`'s output; ``InvalidTag`` if tampered with."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    plaintext = AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    ops["aead_bytes"] += len(plaintext)
    return plaintext


def prg(seed: bytes, n_bytes: int, ops: Counter[str]) -> bytes:
    """``n_bytes`` of the AES-256-CTR keystream under the 32-byte ``seed``."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    ops["prg_bytes"] += n_bytes
    encryptor = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor()
    return encryptor.update(bytes(n_bytes)) + encryptor.finalize()
