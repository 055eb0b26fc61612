"""Typed experiment configuration: loading and validation at the boundary.

A run is described by one YAML file that maps onto :class:`ExperimentConfig`:
the task and its data, the device-side model, the topology (device groups,
their links, the server), the scheme, training and engine settings. Every
model is frozen and forbids extra fields, so a typo is an error, never a
silent default. Names (devices, link presets, models, datasets, partitioners)
are checked against their registries and errors list the registered names.
Every number that reaches numpy, torch, a file or a loop is bounded here, so
a value the run could not survive is refused before it starts.

The scheme's own options, and the settings a scheme cannot honour, are
checked by :func:`tinylarge.schemes.options.scheme_options` (``tinylarge
validate`` runs both): this module knows no scheme.

>>> cfg = ExperimentConfig.model_validate({"topology": {"devices": [{"profile": "rpi4"}]}})
>>> cfg.scheme.name, cfg.task.dataset
('fedavg', 'digits')
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tinylarge.errors import TinylargeError, UnknownNameError


#: Largest seed: numpy and torch take any 32-bit unsigned seed, and derived seeds stay in range.
MAX_SEED = 2**32 - 1
#: Most devices in a topology, and most samples a task may ask for.
MAX_DEVICES = 100_000
MAX_SAMPLES = 10_000_000
#: Farthest link distance (m): beyond any terrestrial or aerial link the presets model.
MAX_DISTANCE_M = 1e7


class ConfigError(TinylargeError):
    """An invalid configuration; one line per problem, each naming the field."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _check_name(lookup: Any, name: str) -> str:
    """Run a registry lookup and turn its UnknownNameError into a validation error."""
    lookup(name)
    return name


OptionValue = int | float | str | bool | list[int] | list[float] | list[str] | None
#: Scheme options may also nest mappings (e.g. a model per device tier), checked by the scheme.
SchemeOptionValue = OptionValue | dict[str, Any]


class PartitionConfig(_Frozen):
    """How the training set is split among devices (see :mod:`tinylarge.data.partition`)."""

    name: str = "iid"
    options: dict[str, OptionValue] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from tinylarge.data.partition import PARTITIONERS

        return _check_name(PARTITIONERS.__getitem__, v)


class TaskConfig(_Frozen):
    """The dataset, an optional subset size and the partition among devices."""

    dataset: str = "digits"
    subset: Annotated[int, Field(gt=0, le=MAX_SAMPLES)] | None = None
    data_dir: str | None = None
    partition: PartitionConfig = Field(default_factory=PartitionConfig)

    @field_validator("dataset")
    @classmethod
    def _known(cls, v: str) -> str:
        from tinylarge.data import DATASETS, TEXT_DATASETS

        if v in DATASETS or v in TEXT_DATASETS:  # text datasets: see Context.text_dataset
            return v
        raise UnknownNameError("dataset", v, [*DATASETS.names(), *TEXT_DATASETS.names()])


class ModelConfig(_Frozen):
    """A zoo model by name with builder options (see ``tinylarge profile``)."""

    name: str = "mlp"
    options: dict[str, OptionValue] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from tinylarge.models.zoo import MODELS

        return _check_name(MODELS.__getitem__, v)


class DeviceGroup(_Frozen):
    """``count`` devices of one catalogue profile on one link preset."""

    profile: str
    count: Annotated[int, Field(ge=1, le=100_000)] = 1
    link: str = "wifi6"
    distance_m: Annotated[float, Field(gt=0, le=MAX_DISTANCE_M)] | None = None

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, v: str) -> str:
        from tinylarge.hardware.catalogue import get_device

        return _check_name(get_device, v)

    @field_validator("link")
    @classmethod
    def _known_link(cls, v: str) -> str:
        from tinylarge.network.presets import PRESETS

        return _check_name(PRESETS.__getitem__, v)


class ServerConfig(_Frozen):
    """The edge or cloud server that aggregates and hosts large models."""

    profile: str = "l4"

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, v: str) -> str:
        from tinylarge.hardware.catalogue import get_device

        return _check_name(get_device, v)


class TopologyConfig(_Frozen):
    devices: Annotated[list[DeviceGroup], Field(min_length=1)]
    server: ServerConfig = Field(default_factory=ServerConfig)

    @property
    def num_devices(self) -> int:
        return sum(g.count for g in self.devices)

    @field_validator("devices")
    @classmethod
    def _not_too_many(cls, v: list[DeviceGroup]) -> list[DeviceGroup]:
        total = sum(g.count for g in v)
        if total > MAX_DEVICES:
            raise ValueError(f"{total:,} devices in all; at most {MAX_DEVICES:,} are allowed")
        return v


class SchemeConfig(_Frozen):
    """An integration scheme by name; its ``options`` are checked by the scheme's options model
    (:mod:`tinylarge.schemes.options`)."""

    name: str = "fedavg"
    options: dict[str, SchemeOptionValue] = Field(default_factory=dict)


class TrainingConfig(_Frozen):
    """Local training and round settings."""

    rounds: Annotated[int, Field(ge=1, le=100_000)] = 10
    fraction: Annotated[float, Field(gt=0, le=1)] = 1.0
    min_clients: Annotated[int, Field(ge=1, le=MAX_DEVICES)] = 1
    local_epochs: Annotated[int, Field(ge=1, le=1000)] = 1
    batch_size: Annotated[int, Field(ge=1, le=65536)] = 32
    lr: Annotated[float, Field(gt=0, le=100)] = 0.05
    optimizer: Literal["sgd", "momentum", "adam"] = "sgd"
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 0.0
    #: Stop after the first evaluated round whose test accuracy is at least this (0 < x <= 1).
    target_accuracy: Annotated[float, Field(gt=0, le=1)] | None = None


class EngineConfig(_Frozen):
    """Simulated-clock and backend settings."""

    backend: Literal["sequential", "ray"] = "sequential"
    ray_address: str | None = None
    deadline_s: Annotated[float, Field(gt=0, le=1e9)] | None = None
    dropout_prob: Annotated[float, Field(ge=0, lt=1)] = 0.0
    fading: bool = False
    shadowing: bool = False
    eval_every: Annotated[int, Field(ge=1, le=100_000)] = 1
    threads: Annotated[int, Field(ge=1, le=256)] = 1


class ExperimentConfig(_Frozen):
    """A whole experiment: task, model, topology, scheme, training and engine."""

    name: str = "experiment"
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] = 0
    task: TaskConfig = Field(default_factory=TaskConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    topology: TopologyConfig
    scheme: SchemeConfig = Field(default_factory=SchemeConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)

    def with_overrides(self, **changes: Any) -> ExperimentConfig:
        """A validated copy with top-level sections replaced (dict or model)."""
        # only what was set: a scheme's refusals keep telling set fields from defaults
        data = self.model_dump(exclude_unset=True)
        for key, value in changes.items():
            data[key] = value.model_dump(exclude_unset=True) if isinstance(value, BaseModel) else value
        return parse_config(data)


def format_validation_error(exc: ValidationError, *, source: str = "config") -> str:
    """One line per problem: ``source: field.path: what is wrong``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see docs/config.md)"
        elif err["type"] == "missing":
            msg = "required field is missing"
        lines.append(f"{source}: {loc}: {msg}")
    return "\n".join(lines)


def parse_config(data: Any, *, source: str = "config") -> ExperimentConfig:
    """Validate a mapping into an :class:`ExperimentConfig` or raise :class:`ConfigError`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
    try:
        cfg = ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source=source)) from None
    return cfg


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate a YAML experiment config."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return parse_config(data, source=str(p))
