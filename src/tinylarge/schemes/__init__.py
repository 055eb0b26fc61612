"""Integration schemes, one module each, registered by name in :data:`SCHEMES`.

A new scheme module only has to decorate its class with :func:`register_scheme`
and register its options in :mod:`tinylarge.schemes.options` to join the
registry, config validation and the contract-test table. The scheme modules
(and PyTorch) load on the first lookup in :data:`SCHEMES`; the options load
without them.
"""

from tinylarge.schemes.base import SCHEMES, Plan, PlanRequest, Scheme, register_scheme

__all__ = ["SCHEMES", "Plan", "PlanRequest", "Scheme", "register_scheme"]
