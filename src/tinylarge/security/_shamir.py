"""Shamir secret sharing over the Mersenne prime field GF(2^521 - 1).

Shamir, "How to share a secret", CACM 22(11), 1979. A secret ``s`` is the
constant term of a random polynomial ``f`` of degree ``threshold - 1``; the
share held by the party at abscissa ``x`` is ``(x, f(x))``. Any ``threshold``
shares give ``s = f(0)`` by Lagrange interpolation; fewer reveal nothing.

SecAgg shares 32-byte secrets (an X25519 private key, a 32-byte seed), so the
field must hold every 256-bit integer: we use the Mersenne prime
``2^521 - 1`` (a share's ordinate is then 66 bytes) instead of splitting the
secret into chunks over a smaller field. Pure functions on Python integers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

#: The field's prime, 2^521 - 1 (a Mersenne prime).
PRIME = (1 << 521) - 1
#: Bytes of a field element on the wire (521 bits).
ELEMENT_BYTES = 66


def random_element(rng: np.random.Generator) -> int:
    """A uniform element of GF(PRIME), by rejection from 521 random bits."""
    while True:
        value = int.from_bytes(rng.bytes(ELEMENT_BYTES), "little") & PRIME
        if value < PRIME:
            return value


def split(
    secret: int, *, threshold: int, xs: Iterable[int], rng: np.random.Generator
) -> dict[int, int]:
    """Shares ``{x: f(x)}`` of ``secret`` at the non-zero abscissas ``xs``.

    ``f`` has degree ``threshold - 1``, constant term ``secret`` and uniform
    random other coefficients drawn from ``rng``.
    """
    if not 0 <= secret < PRIME:
        raise ValueError("secret outside the field")
    coefficients = [secret] + [random_element(rng) for _ in range(threshold - 1)]
    shares: dict[int, int] = {}
    for x in xs:
        if not 0 < x < PRIME:
            raise ValueError(f"abscissa {x} must be a non-zero field element")
        y = 0
        for c in reversed(coefficients):  # Horner
            y = (y * x + c) % PRIME
        shares[x] = y
    return shares


def combine(shares: Mapping[int, int]) -> int:
    """``f(0)`` from shares ``{x: f(x)}`` by Lagrange interpolation.

    With at least ``threshold`` shares this is the secret; with fewer it is a
    uniformly random field element, so callers must count shares first.
    """
    xs = list(shares)
    secret = 0
    for i, xi in enumerate(xs):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if i != j:
                num = num * xj % PRIME
                den = den * (xj - xi) % PRIME
        secret = (secret + shares[xi] * num * pow(den, -1, PRIME)) % PRIME
    return secret
