"""The full check of an experiment config, as ``tinylarge validate`` runs it.

Every command that takes a config (``validate``, ``run``, ``compare``, ``plan``)
checks it here before doing anything else: the config model (types, names,
ranges: :func:`tinylarge.config.load_config`) and the scheme's options with
the settings the scheme cannot honour
(:func:`tinylarge.schemes.options.scheme_options`). Neither needs PyTorch, so a
bad config is refused in a fraction of a second, with one line per problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tinylarge.config import ExperimentConfig
    from tinylarge.schemes.options import SchemeOptions


def check_scheme(cfg: ExperimentConfig, *, source: str) -> SchemeOptions:
    """``cfg``'s scheme options, validated; raises ``ConfigError`` naming every problem."""
    from tinylarge.config import ConfigError
    from tinylarge.schemes.options import OPTIONS, scheme_options

    name = cfg.scheme.name
    if name not in OPTIONS:
        raise ConfigError(
            f"{source}: scheme.name: unknown scheme {name!r}; known: {', '.join(OPTIONS.names())}"
        )
    return scheme_options(cfg, source=source)


def out_dir(path: str | Path, *, flag: str = "--out") -> Path:
    """A run directory to write: a directory, or a path where one can be made."""
    from tinylarge.errors import TinylargeError

    out = Path(path)
    if out.exists() and not out.is_dir():
        raise TinylargeError(f"{flag} {str(out)!r} is a file, not a run directory")
    return out


def load_checked(path: str | Path) -> ExperimentConfig:
    """Load the config at ``path`` and run every check ``tinylarge validate`` runs."""
    from tinylarge.config import load_config

    cfg = load_config(path)
    check_scheme(cfg, source=str(path))
    return cfg
