"""Small-scale fading and shadowing samplers; randomness only through a Generator.

Power gains are normalised to unit mean (``E[|h|^2] = 1``), so fading moves the SNR
around the deterministic link budget without biasing it:

- Rayleigh: ``|h|^2 ~ Exp(1)``, the NLOS case (no dominant path).
- Rician with K factor (linear ``K = 10^(K_dB/10)``):
  ``h = sqrt(K/(K+1)) + sqrt(1/(K+1)) * CN(0, 1)``. K -> infinity tends to a
  constant gain of 1; TR 38.901 Table 7.5-6 gives mean K of 9 dB (UMa, UMi) and
  7 dB (RMa, InH) for LOS.
- Log-normal shadowing: ``X ~ N(0, sigma_SF)`` dB added to the path loss
  (TR 38.901 section 7.4.1, sigma from Table 7.4.1-1).

Reference: A. Goldsmith, *Wireless Communications*, 2005, sections 3.2.1-3.2.2.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from tinylarge.network import _checks
from tinylarge.registry import Registry


def rayleigh_power_gain(rng: np.random.Generator, *, size: int) -> NDArray[np.float64]:
    """``size`` i.i.d. Rayleigh power gains (exponential, mean 1)."""
    return rng.exponential(1.0, size=size)


def rician_power_gain(
    rng: np.random.Generator, *, k_factor_db: float, size: int
) -> NDArray[np.float64]:
    """``size`` i.i.d. Rician power gains with K factor ``k_factor_db`` (mean 1)."""
    k = 10.0 ** (_checks.finite("k_factor_db", k_factor_db) / 10.0)
    los = np.sqrt(k / (k + 1.0))
    scatter = np.sqrt(1.0 / (k + 1.0) / 2.0)
    re = los + scatter * rng.standard_normal(size)
    im = scatter * rng.standard_normal(size)
    gain: NDArray[np.float64] = re * re + im * im
    return gain


def shadowing_db(rng: np.random.Generator, *, sigma_db: float) -> float:
    """One log-normal shadowing draw ``N(0, sigma_db)`` in dB (added to the path loss)."""
    sigma = _checks.non_negative("sigma_db", sigma_db, " dB")
    return float(rng.normal(0.0, sigma)) if sigma > 0 else 0.0


#: A sampler draws one power gain from ``(rng, k_factor_db)``.
FadingSampler = Callable[[np.random.Generator, float], float]

FADING_MODELS: Registry[FadingSampler] = Registry("fading model")
FADING_MODELS.add("rayleigh", lambda rng, k_db: float(rayleigh_power_gain(rng, size=1)[0]))
FADING_MODELS.add(
    "rician", lambda rng, k_db: float(rician_power_gain(rng, k_factor_db=k_db, size=1)[0])
)
