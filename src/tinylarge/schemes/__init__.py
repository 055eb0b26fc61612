"""Integration schemes, one module each, registered by name in :data:`SCHEMES`.

Every module of this package is imported here, so a new scheme module only
has to decorate its class with :func:`register_scheme` to join the registry,
the config validation and the contract-test table.
"""

import importlib
import pkgutil

from tinylarge.schemes.base import SCHEMES, RoundReport, Scheme, register_scheme

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name != "base" and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["SCHEMES", "RoundReport", "Scheme", "register_scheme"]
