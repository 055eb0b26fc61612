"""Integration schemes, one module each, registered by name in :data:`SCHEMES`."""

from tinylarge.schemes import fedavg, fedopt, fedprox
from tinylarge.schemes.base import SCHEMES, RoundReport, Scheme, register_scheme

__all__ = ["SCHEMES", "RoundReport", "Scheme", "fedavg", "fedopt", "fedprox", "register_scheme"]
