"""What each scheme accepts: its typed options, and the run settings it cannot honour.

These models load without PyTorch, so ``tinylarge validate`` checks a config's
``scheme.options`` (types, ranges, names) and refuses the settings a scheme
cannot honour in a fraction of a second, before anything runs. One module per
scheme family; every options model is registered under its scheme's name in
:data:`OPTIONS`, and the scheme classes are typed by them
(``class FedProx(FedAvgFamily[FedProxOptions])``).

A scheme refuses a setting it cannot honour in :meth:`SchemeOptions.refuse`
(one line naming the field and why); it never ignores one silently.
"""

from __future__ import annotations

from pydantic import ValidationError

from tinylarge.config import ConfigError, ExperimentConfig, format_validation_error
from tinylarge.schemes.options import compress, federated, inference, split, transfer
from tinylarge.schemes.options.base import (
    OPTIONS,
    NoOptions,
    SchemeOptions,
    register_options,
    set_fields,
)

del compress, federated, inference, split, transfer  # imported to register their options


def scheme_options(cfg: ExperimentConfig, *, source: str = "config") -> SchemeOptions:
    """The validated options of ``cfg``'s scheme, or a :class:`~tinylarge.config.ConfigError`
    with one line per problem (``scheme.options.<field>: ...``) and per setting of ``cfg``
    the scheme cannot honour."""
    cls = OPTIONS[cfg.scheme.name]
    try:
        options = cls.model_validate(cfg.scheme.options)
    except ValidationError as exc:
        msg = format_validation_error(exc, source=source)
        raise ConfigError(msg.replace(f"{source}: ", f"{source}: scheme.options.")) from None
    problems = options.refuse(cfg)
    if problems:
        raise ConfigError("\n".join(f"{source}: {p}" for p in problems))
    return options


__all__ = [
    "OPTIONS",
    "NoOptions",
    "SchemeOptions",
    "register_options",
    "scheme_options",
    "set_fields",
]
