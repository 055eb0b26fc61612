"""The full check of an experiment config, as ``tinylarge validate`` runs it.

Every command that takes a config (``validate``, ``run``, ``compare``, ``plan``)
checks it here before doing anything else: the config model (types, names,
ranges: :func:`tinylarge.config.load_config`) and the scheme's options with
the settings the scheme cannot honour
(:func:`tinylarge.schemes.options.scheme_options`). Neither needs PyTorch, so a
bad config is refused in a fraction of a second, with one line per problem.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


#: Set to anything but ``""`` or ``"0"``: every command that reads a config file runs a
#: reduced copy of it (:func:`reduced`). For smoke tests of long examples (the README
#: tour's test sets it); the reduced config is what the run directory records.
QUICK_ENV = "TINYLARGE_QUICK"
#: The reduction: at most this many rounds, training samples, epochs of any kind and
#: tokens per text (a foundation model's ``max_length``).
QUICK_ROUNDS, QUICK_SUBSET, QUICK_EPOCHS, QUICK_TOKENS = 2, 1000, 1, 32
#: Datasets small enough to keep whole (the embedded digits: 1,797 samples).
_SMALL_DATASETS = ("digits",)


def quick() -> bool:
    """Whether :data:`QUICK_ENV` asks for reduced runs."""
    return os.environ.get(QUICK_ENV, "") not in ("", "0")


def reduced(data: dict[str, Any]) -> dict[str, Any]:
    """A config mapping cut down for a smoke run: ``training.rounds`` and
    ``training.local_epochs`` at most :data:`QUICK_ROUNDS` and :data:`QUICK_EPOCHS`,
    ``task.subset`` at most :data:`QUICK_SUBSET` (set on any dataset but the embedded
    digits), every scheme option named ``*_epochs`` at most :data:`QUICK_EPOCHS` and
    ``max_length`` at most :data:`QUICK_TOKENS`.

    >>> r = reduced({"task": {"dataset": "mnist"}, "training": {"rounds": 30},
    ...              "scheme": {"name": "kd", "options": {"teacher_epochs": 3, "lr": 0.1}}})
    >>> r["task"]["subset"], r["training"]["rounds"], r["scheme"]["options"]
    (1000, 2, {'teacher_epochs': 1, 'lr': 0.1})
    """
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    training = out.setdefault("training", {})
    training["rounds"] = min(int(training.get("rounds") or QUICK_ROUNDS), QUICK_ROUNDS)
    if training.get("local_epochs") is not None:
        training["local_epochs"] = min(int(training["local_epochs"]), QUICK_EPOCHS)
    task = out.setdefault("task", {})
    if task.get("subset") is not None or task.get("dataset") not in _SMALL_DATASETS:
        task["subset"] = min(int(task.get("subset") or QUICK_SUBSET), QUICK_SUBSET)
        partition = task.get("partition")
        options = partition.get("options") if isinstance(partition, dict) else None
        if (
            isinstance(partition, dict)
            and isinstance(options, dict)
            and isinstance(options.get("min_size"), int)
        ):
            # every device keeps a share of the smaller training set
            devices = sum(
                int(g.get("count", 1)) for g in (out.get("topology") or {}).get("devices", [])
            )
            share = max(1, task["subset"] // (10 * max(devices, 1)))
            task["partition"] = {
                **partition,
                "options": {**options, "min_size": min(options["min_size"], share)},
            }
    scheme = out.get("scheme")
    if isinstance(scheme, dict) and isinstance(scheme.get("options"), dict):
        options = dict(scheme["options"])
        for key, value in options.items():
            if key.endswith("_epochs") and isinstance(value, int) and value > QUICK_EPOCHS:
                options[key] = QUICK_EPOCHS
            if key == "max_length" and isinstance(value, int) and value > QUICK_TOKENS:
                options[key] = QUICK_TOKENS
        out["scheme"] = {**scheme, "options": options}
    return out


def load_user_config(path: str | Path) -> ExperimentConfig:
    """The config file at ``path``, reduced (:func:`reduced`) when :data:`QUICK_ENV` is set,
    with a note on stderr saying so."""
    from tinylarge.config import load_config, parse_config

    cfg = load_config(path)
    if not quick():
        return cfg
    print(
        f"note: {QUICK_ENV} is set: {path} runs reduced (at most {QUICK_ROUNDS} rounds, "
        f"{QUICK_SUBSET:,} training samples, {QUICK_EPOCHS} epoch of anything, "
        f"{QUICK_TOKENS} tokens per text); its numbers are a smoke test, not the example's",
        file=sys.stderr,
    )
    data = cfg.model_dump(mode="json", exclude_unset=True)
    return parse_config(reduced(data), source=f"{path} (reduced)")


def load_checked(path: str | Path) -> ExperimentConfig:
    """Load the config at ``path`` and run every check ``tinylarge validate`` runs."""
    cfg = load_user_config(path)
    check_scheme(cfg, source=str(path))
    return cfg
