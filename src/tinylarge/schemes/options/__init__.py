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
from tinylarge.schemes.options import (
    asynchronous,
    compress,
    federated,
    inference,
    split,
    transfer,
)
from tinylarge.schemes.options.base import (
    OPTIONS,
    NoOptions,
    SchemeOptions,
    register_options,
    set_fields,
)

# imported to register their options
del asynchronous, compress, federated, inference, split, transfer


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
    problems = options.refuse(cfg) + _privacy_problems(cfg) + _security_problems(cfg)
    if not any(p.startswith("training.selection:") for p in problems):  # one line a field
        problems += _selection_problems(cfg)
    if cfg.topology.edges and cfg.scheme.name not in HIERARCHICAL:
        problems.append(
            f"topology.edges: scheme {cfg.scheme.name!r} aggregates at one server; schemes "
            f"with edge servers: {', '.join(HIERARCHICAL)}"
        )
    if problems:
        raise ConfigError("\n".join(f"{source}: {p}" for p in problems))
    return options


#: Schemes that aggregate at the edge servers of ``topology.edges``.
HIERARCHICAL = ("hierfavg",)
#: Schemes whose averaging runs DP-FedAvg (``privacy.dp``), secure aggregation
#: (``privacy.secagg``) and Poisson client sampling.
PRIVATE_AVERAGING = ("fedavg", "fedprox", "fedadam", "fedyogi")
#: Schemes whose devices train through the FedAvg family's local training with a mean
#: per-example loss, where sample-level DP-SGD (``privacy.dpsgd``) runs.
PRIVATE_TRAINING = ("fedavg", "fedadam", "fedyogi")


#: Schemes whose rounds run the loss-driven selection policies (``training.selection:
#: power-of-choice`` keeps the highest-loss candidates, ``oort`` learns from the losses and
#: durations the trained devices report): the FedAvg family's round.
LOSS_SELECTION = ("fedavg", "fedprox", "fedadam", "fedyogi")
#: What each loss-driven policy needs of the round.
_LOSS_POLICIES = {
    "power-of-choice": "keeps the highest-loss candidates",
    "oort": "learns from the losses and durations the trained devices report",
}


def _selection_problems(cfg: ExperimentConfig) -> list[str]:
    """``power-of-choice`` or ``oort`` outside the FedAvg family's round, or beside privacy
    and attacks (a device's loss is one more release, and who trains is no longer a uniform
    sample)."""
    policy = cfg.training.selection
    if policy not in _LOSS_POLICIES:
        return []
    if cfg.scheme.name not in LOSS_SELECTION:
        return [
            f"training.selection: {policy} {_LOSS_POLICIES[policy]} in the FedAvg family's "
            f"round; scheme {cfg.scheme.name!r} does not run it; schemes that do: "
            f"{', '.join(LOSS_SELECTION)}"
        ]
    given = [
        name
        for name, value in (
            ("privacy.dp", cfg.privacy.dp),
            ("privacy.dpsgd", cfg.privacy.dpsgd),
            ("privacy.secagg", cfg.privacy.secagg),
            ("attack", cfg.attack),
            ("defense", cfg.defense),
        )
        if value is not None
    ]
    return (
        [
            f"training.selection: {policy} with {', '.join(given)}: the devices report their "
            "losses in the clear and the trained devices are no uniform sample (what the "
            "accountants and the robust rules assume); use selection: uniform"
        ]
        if given
        else []
    )


def _privacy_problems(cfg: ExperimentConfig) -> list[str]:
    """``privacy.dp``, ``privacy.dpsgd``, ``privacy.secagg`` and Poisson sampling, where the
    scheme does not average or train through them."""
    name = cfg.scheme.name
    problems = []
    if cfg.privacy.dpsgd is not None and name not in PRIVATE_TRAINING:
        why = (
            "adds a proximal term to the local loss, which is not a per-example loss DP-SGD "
            "can clip (Opacus would drop its gradient)"
            if name == "fedprox"
            else "does not train its devices through the FedAvg family's local training"
        )
        problems.append(
            f"privacy.dpsgd: scheme {name!r} {why}; schemes that train with DP-SGD: "
            f"{', '.join(PRIVATE_TRAINING)}"
        )
    if name in PRIVATE_AVERAGING:
        return problems
    known = ", ".join(PRIVATE_AVERAGING)
    if cfg.privacy.dp is not None:
        problems.append(
            f"privacy.dp: scheme {cfg.scheme.name!r} does not average model updates through "
            f"DP-FedAvg; schemes that do: {known}"
        )
    if cfg.privacy.secagg is not None:
        problems.append(
            f"privacy.secagg: scheme {cfg.scheme.name!r} does not average model updates "
            f"through secure aggregation; schemes that do: {known}"
        )
    for section in ("attack", "defense"):
        given = getattr(cfg, section)
        if given is not None and not _for_split(section, given.name):
            problems.append(
                f"{section}: scheme {cfg.scheme.name!r} does not aggregate through the robust "
                f"rules and attacks yet; schemes that do: {known}" + _split_hint(section, name)
            )
    if cfg.training.sampling != "fixed":
        problems.append(
            f"training.sampling: scheme {cfg.scheme.name!r} samples its devices with "
            f"sampling: fixed only; Poisson sampling is for {known}"
        )
    return problems


def _split_hint(section: str, scheme: str) -> str:
    """What the split schemes take in ``section`` instead (empty for other schemes)."""
    from tinylarge.security.split_options import SPLIT_ATTACKS, SPLIT_DEFENSES, SPLIT_SCHEMES

    if scheme not in SPLIT_SCHEMES:
        return ""
    names = SPLIT_ATTACKS if section == "attack" else SPLIT_DEFENSES
    return f"; scheme {scheme!r} takes {section} {', '.join(sorted(names))}"


def _for_split(section: str, name: str) -> bool:
    """Whether ``name`` is an attack on split learning or a smashed-data defense
    (:mod:`tinylarge.security.split_options`), not a Byzantine attack or a robust rule."""
    from tinylarge.security.split_options import is_split_attack, is_split_defense

    return is_split_attack(name) if section == "attack" else is_split_defense(name)


def _security_problems(cfg: ExperimentConfig) -> list[str]:
    """Unknown attack or defense names, and options they cannot take for this fleet (Krum
    with more Byzantine clients than it tolerates, a trimmed share of half or more...)."""
    from tinylarge.security.split_options import split_security_problems

    problems: list[str] = split_security_problems(cfg)
    attack = None if cfg.attack is None or _for_split("attack", cfg.attack.name) else cfg.attack
    defense = (
        None if cfg.defense is None or _for_split("defense", cfg.defense.name) else cfg.defense
    )
    if attack is None and defense is None:
        return problems
    from tinylarge.errors import TinylargeError

    per_round = cfg.training.most_per_round(cfg.topology.num_devices)
    bad = sum(g.num_malicious for g in cfg.topology.devices)
    if attack is not None:
        from tinylarge.security import attacks

        kind = "data" if attack.name in attacks.DATA_ATTACKS else "update"
        try:
            attacks.check_options(
                kind, attack.name, dict(attack.options),
                num_clients=per_round, num_byzantine=bad,
            )  # fmt: skip
        except TinylargeError as exc:
            problems.append(f"attack: {exc}")
    if defense is not None:
        from tinylarge.security import robust

        d = defense
        try:
            rows = per_round
            if d.pre is not None:
                pre = robust.make_pre(d.pre, dict(d.pre_options), num_clients=per_round)
                rows = pre.output_rows(per_round)
            robust.check_options(d.name, dict(d.options), num_clients=rows)
        except TinylargeError as exc:
            problems.append(f"defense: {exc}")
    return problems


__all__ = [
    "OPTIONS",
    "PRIVATE_AVERAGING",
    "PRIVATE_TRAINING",
    "NoOptions",
    "SchemeOptions",
    "register_options",
    "scheme_options",
    "set_fields",
]
