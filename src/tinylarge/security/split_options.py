"""Attacks on split learning and their defenses as a run configures them (no PyTorch).

The run's top-level ``attack`` and ``defense`` sections name Byzantine attacks and robust
rules for the FedAvg family (:mod:`tinylarge.security.attacks`,
:mod:`tinylarge.security.robust`); for the split schemes (``sl``, ``fsl``) they name:

=====================  ============================================================
``attack``
``model-inversion``    the honest-but-curious server trains a decoder from smashed
                       data back to inputs on auxiliary data and inverts the
                       victims' smashed data (He et al. 2019;
                       :mod:`tinylarge.security.inversion`). Options:
                       ``aux_samples`` (1000) training images the server holds,
                       ``victim_samples`` (256) test images it inverts,
                       ``epochs`` (10), ``batch_size`` (64), ``lr`` (0.001) of the
                       decoder's Adam training, ``width`` (32) its channels.
``defense``
``nopeek``             the device adds ``weight`` (0.1) x the distance correlation of
                       each batch's inputs and smashed data to its loss (Vepakomma
                       et al. 2020; :mod:`tinylarge.security.nopeek`); with
                       ``sigma`` (0) > 0 it also sends with cut noise (below).
``cut-noise``          the device adds noise of standard deviation ``sigma`` (0.5)
                       to every smashed value it sends, ``distribution``
                       ``gaussian`` or ``laplace``.
=====================  ============================================================

The attacker is the server, so a ``model-inversion`` run marks no device malicious. The
options are pydantic models, so ``tinylarge validate`` refuses a bad setting in one line
per problem without loading PyTorch (:func:`split_security_problems`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tinylarge.errors import TinylargeError

if TYPE_CHECKING:
    from tinylarge.config import ExperimentConfig

#: Schemes whose smashed data these attacks read and these defenses guard.
SPLIT_SCHEMES = ("fsl", "sl")
#: Datasets of images an inversion is scored on (SSIM and PSNR of pixels in [0, 1]).
IMAGE_DATASETS = ("digits", "fashion-mnist", "mnist")


class _Options(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class ModelInversionOptions(_Options):
    """The server's decoder and the data it trains and attacks with."""

    aux_samples: Annotated[int, Field(ge=16, le=1_000_000)] = 1000
    victim_samples: Annotated[int, Field(ge=2, le=10_000)] = 256
    epochs: Annotated[int, Field(ge=1, le=1000)] = 10
    batch_size: Annotated[int, Field(ge=1, le=65536)] = 64
    lr: Annotated[float, Field(gt=0, le=10)] = 1e-3
    width: Annotated[int, Field(ge=1, le=512)] = 32


class NoPeekOptions(_Options):
    """Weight of the distance-correlation term in the device's loss; optionally cut noise
    of standard deviation ``sigma`` on top (both defenses at once, 0: none)."""

    weight: Annotated[float, Field(ge=0, le=1e4)] = 0.1
    sigma: Annotated[float, Field(ge=0, le=1e4)] = 0.0
    distribution: Literal["gaussian", "laplace"] = "gaussian"


class CutNoiseOptions(_Options):
    """Noise on the smashed data a device sends: ``sigma`` is its standard deviation (a
    Laplace draw has scale ``sigma / sqrt(2)``), in the activations' own units."""

    sigma: Annotated[float, Field(ge=0, le=1e4)] = 0.5
    distribution: Literal["gaussian", "laplace"] = "gaussian"


#: Attacks on split learning by name: their options.
SPLIT_ATTACKS: dict[str, type[_Options]] = {"model-inversion": ModelInversionOptions}
#: Defenses of smashed data by name: their options.
SPLIT_DEFENSES: dict[str, type[_Options]] = {"cut-noise": CutNoiseOptions, "nopeek": NoPeekOptions}


def _parse(kind: str, name: str, cls: type[_Options], options: Mapping[str, Any]) -> _Options:
    try:
        return cls.model_validate(dict(options))
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown option; known: {', '.join(sorted(cls.model_fields))}"
        raise TinylargeError(f"{kind} {name!r}: option {key}: {msg}") from None


def attack_options(name: str, options: Mapping[str, Any]) -> ModelInversionOptions:
    """The validated options of the split attack ``name``, or a one-line error."""
    if name not in SPLIT_ATTACKS:
        raise TinylargeError(f"unknown split attack {name!r}; known: {', '.join(SPLIT_ATTACKS)}")
    parsed = _parse("attack", name, SPLIT_ATTACKS[name], options)
    assert isinstance(parsed, ModelInversionOptions)
    return parsed


def defense_options(name: str, options: Mapping[str, Any]) -> NoPeekOptions | CutNoiseOptions:
    """The validated options of the smashed-data defense ``name``, or a one-line error."""
    if name not in SPLIT_DEFENSES:
        known = ", ".join(sorted(SPLIT_DEFENSES))
        raise TinylargeError(f"unknown split defense {name!r}; known: {known}")
    parsed = _parse("defense", name, SPLIT_DEFENSES[name], options)
    assert isinstance(parsed, NoPeekOptions | CutNoiseOptions)
    return parsed


def is_split_attack(name: str | None) -> bool:
    return name in SPLIT_ATTACKS


def is_split_defense(name: str | None) -> bool:
    return name in SPLIT_DEFENSES


def split_security_problems(cfg: ExperimentConfig) -> list[str]:
    """One line per setting of a split attack or defense ``cfg`` cannot run: the wrong
    scheme, a dataset that is not images (inversion), an option out of range, robust-rule
    fields on a smashed-data defense, a clean twin of a run whose attack changes nothing."""
    problems: list[str] = []
    scheme = cfg.scheme.name
    schemes = ", ".join(SPLIT_SCHEMES)
    attack, defense = cfg.attack, cfg.defense
    if attack is not None and is_split_attack(attack.name):
        if scheme not in SPLIT_SCHEMES:
            problems.append(
                f"attack: {attack.name!r} inverts split learning's smashed data; schemes that "
                f"send smashed data: {schemes}"
            )
        if cfg.task.dataset not in IMAGE_DATASETS:
            problems.append(
                f"attack: {attack.name!r} is scored by SSIM and PSNR of images; task.dataset "
                f"{cfg.task.dataset!r} is not one (image datasets: {', '.join(IMAGE_DATASETS)})"
            )
        if cfg.training.target_accuracy is not None:
            problems.append(
                f"training.target_accuracy: {attack.name!r} runs after the last round, which "
                "a target accuracy could skip; drop one of them"
            )
        if attack.clean_twin:
            problems.append(
                f"attack.clean_twin: {attack.name!r} runs after training and changes nothing "
                "in it, so the run is its own clean run; drop clean_twin"
            )
        try:
            attack_options(attack.name, attack.options)
        except TinylargeError as exc:
            problems.append(f"attack: {exc}")
    if defense is not None and is_split_defense(defense.name):
        if scheme not in SPLIT_SCHEMES:
            problems.append(
                f"defense: {defense.name!r} guards split learning's smashed data; schemes that "
                f"send smashed data: {schemes}"
            )
        robust_only = [
            k for k in ("pre", "pre_options", "root_samples") if k in defense.model_fields_set
        ]
        if robust_only:
            problems.append(
                f"defense.{robust_only[0]}: a field of the robust aggregation rules; "
                f"{defense.name!r} takes only options"
            )
        try:
            defense_options(defense.name, defense.options)
        except TinylargeError as exc:
            problems.append(f"defense: {exc}")
    return problems
