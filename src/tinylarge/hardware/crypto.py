"""What cryptography costs a device: cycles per operation by core class, with sources.

Secure aggregation (:mod:`tinylarge.security.secagg`) counts what each party did
(X25519 key generations and agreements, HKDF calls, AEAD and mask-generator bytes,
Shamir shares); :func:`crypto_cycles` turns the counts into cycles for the device's
core class, and the round bills them as :class:`tinylarge.hardware.cost.Cycles`
at the clock of the core that runs them (:func:`crypto_clock_hz`).

Two core classes:

- ``cortex-m``: microcontrollers. X25519 625,358 cycles per scalar multiplication
  on a Cortex-M4 (Haase and Labrique, "Fast, compact, and secure implementation of
  RFC 7748 on ARM Cortex-M4", TCHES 2019(1), https://tches.iacr.org/index.php/TCHES/article/view/7332);
  AES-128-CTR 33.7 cycles/byte on a Cortex-M4 (Schwabe and Stoffelen, "All the AES
  you need on Cortex-M3 and M4", SAC 2016, https://eprint.iacr.org/2016/714), scaled
  by 14/10 rounds for AES-256 (47.2 cycles/byte, an estimate). The GHASH of
  AES-GCM, HKDF-SHA256 and the 521-bit field arithmetic of Shamir sharing are
  estimates (no published Cortex-M figure at these sizes): marked ``estimate``.
- ``application``: 64-bit application cores (Cortex-A, x86). X25519 about 120,000
  cycles (SUPERCOP/eBACS ``crypto_scalarmult/curve25519`` on recent x86-64 and
  Cortex-A7x cores lie between about 100,000 and 200,000; an estimate);
  AES-256-GCM about 1.5 cycles/byte with the ARMv8 or AES-NI instructions and
  about 25 cycles/byte in software (the Raspberry Pi 4's Cortex-A72 has no ARMv8
  crypto extension; estimates).

Devices of other architectures (the ESP32-S3's Xtensa, the RP2040's Cortex-M0+) use
the Cortex-M figures, also estimates (the M0+ lacks the M4's single-cycle 32x32->64
multiply, so its X25519 is slower than priced here).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from tinylarge.hardware.catalogue import DeviceProfile

CoreClass = Literal["cortex-m", "application"]


@dataclass(frozen=True)
class CryptoRates:
    """Cycles per operation on one core class; ``estimate`` names the figures not measured."""

    x25519: float
    aes256_per_byte: float
    aead_per_byte: float
    hkdf: float
    field_mult_521: float
    mask_add_per_element: float
    estimate: tuple[str, ...]


RATES: Mapping[CoreClass, CryptoRates] = {
    "cortex-m": CryptoRates(
        x25519=625_358,
        aes256_per_byte=33.7 * 14 / 10,
        aead_per_byte=33.7 * 14 / 10 + 40.0,  # + GHASH in software
        hkdf=4 * 2 * 3_000.0,  # HMAC-SHA256 extract + expand: about 8 compressions
        field_mult_521=4_000.0,
        mask_add_per_element=3.0,  # load, add mod 2**32, store
        estimate=("aes256_per_byte", "aead_per_byte", "hkdf", "field_mult_521"),
    ),
    "application": CryptoRates(
        x25519=120_000,
        aes256_per_byte=1.5,
        aead_per_byte=1.5,
        hkdf=4 * 2 * 1_000.0,
        field_mult_521=300.0,
        mask_add_per_element=0.5,
        estimate=("x25519", "aes256_per_byte", "aead_per_byte", "hkdf", "field_mult_521"),
    ),
}

#: Application cores without AES instructions: software AES (an estimate).
SOFTWARE_AES_PER_BYTE = 25.0
_NO_AES_INSTRUCTIONS = frozenset({"rpi4"})

#: Clock of the CPU that runs the crypto on devices whose profile clock is a GPU's: the
#: Jetsons' Arm cores (NVIDIA's module data sheets) and, for data-centre GPUs, a host
#: CPU at 2.0 GHz (an estimate).
HOST_CPU_HZ: Mapping[str, float] = {
    "jetson-nano": 1.43e9,
    "jetson-orin-nano": 1.5e9,
    "jetson-agx-orin": 2.2e9,
    "l4": 2.0e9,
    "a100": 2.0e9,
    "h100": 2.0e9,
}


def core_class(device: DeviceProfile) -> CoreClass:
    """``cortex-m`` for microcontrollers, ``application`` for everything else."""
    return "cortex-m" if device.tier == "mcu" else "application"


def crypto_clock_hz(device: DeviceProfile) -> float:
    """The clock of the core that runs ``device``'s cryptography."""
    return HOST_CPU_HZ.get(device.id, device.clock_hz)


def crypto_cycles(
    device: DeviceProfile,
    *,
    x25519: int = 0,
    hkdf: int = 0,
    aead_bytes: int = 0,
    prg_bytes: int = 0,
    shares_made: int = 0,
    threshold: int = 2,
    reconstructions: int = 0,
    reconstruction_shares: int = 0,
    mask_elements: int = 0,
) -> float:
    """Cycles of the listed operations on ``device``'s core class.

    A Shamir share is one evaluation of a degree ``threshold - 1`` polynomial
    (``threshold - 1`` field multiplications); a reconstruction from ``s`` shares is
    Lagrange interpolation at zero (about ``2 s`` multiplications per share).
    """
    rates = RATES[core_class(device)]
    aes = rates.aes256_per_byte
    aead = rates.aead_per_byte
    if device.id in _NO_AES_INSTRUCTIONS:
        aes = aead = SOFTWARE_AES_PER_BYTE
    return (
        x25519 * rates.x25519
        + hkdf * rates.hkdf
        + aead_bytes * aead
        + prg_bytes * aes
        + shares_made * (threshold - 1) * rates.field_mult_521
        + reconstructions * 2 * reconstruction_shares * rates.field_mult_521
        + mask_elements * rates.mask_add_per_element
    )
