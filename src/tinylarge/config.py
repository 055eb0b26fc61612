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

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tinylarge.errors import TinylargeError, UnknownNameError
from tinylarge.explore.spec import SweepConfig
from tinylarge.network.edges import EdgeConfig, check_edges, group_names
from tinylarge.network.mobility_config import (
    CellConfig,
    HandoverConfig,
    MobilityConfig,
    check_cells,
    check_group,
    mobility_shorthand,
)

if TYPE_CHECKING:
    from tinylarge.security._secagg_base import SecAggParams

#: Largest seed: numpy and torch take any 32-bit unsigned seed, and derived seeds stay in range.
MAX_SEED = 2**32 - 1
#: Most devices in a topology, and most samples a task may ask for.
MAX_DEVICES = 1_000_000
MAX_SAMPLES = 10_000_000
#: Farthest link distance (m): beyond any terrestrial or aerial link the presets model.
MAX_DISTANCE_M = 1e7
#: Most device groups in a topology.
MAX_GROUPS = 1024
#: Longest path or address a config may name (Linux's PATH_MAX).
MAX_PATH_CHARS = 4096

#: A run name becomes a directory (``runs/<name>``, ``tinylarge compare``'s run directories).
_RUN_NAME = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,99}")


def _path_text(v: str) -> str:
    """A path as text: not empty, no NUL byte (no file system takes one), at most 4096 chars."""
    if not v.strip():
        raise ValueError("must not be empty")
    if "\x00" in v:
        raise ValueError("must not contain a NUL byte")
    if len(v) > MAX_PATH_CHARS:
        raise ValueError(f"at most {MAX_PATH_CHARS} characters, got {len(v):,}")
    return v


class ConfigError(TinylargeError):
    """An invalid configuration; one line per problem, each naming the field."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


def _check_name(lookup: Any, name: str) -> str:
    """Run a registry lookup and turn its UnknownNameError into a validation error."""
    lookup(name)
    return name


#: Options of a partitioner or a zoo model: their types and ranges are checked by its own
#: options model (:func:`tinylarge.data.partition.check_options`,
#: :func:`tinylarge.models.zoo.check_options`), which names the option and its range.
OptionValue = Any
#: Scheme options may also nest mappings (e.g. a model per device tier), checked by the scheme.
SchemeOptionValue = OptionValue


class PartitionConfig(_Frozen):
    """How the training set is split among devices (see :mod:`tinylarge.data.partition`):
    a partitioner by name and its parameters, each within its range
    (:data:`tinylarge.data.partition.PARAMETERS`)."""

    name: str = "iid"
    options: dict[str, OptionValue] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from tinylarge.data.partition import PARTITIONERS

        return _check_name(PARTITIONERS.__getitem__, v)

    @field_validator("options")
    @classmethod
    def _in_range(cls, v: dict[str, OptionValue], info: ValidationInfo) -> dict[str, OptionValue]:
        from tinylarge.data.partition import check_options

        if "name" in info.data:  # else the name's own error says what is wrong
            check_options(info.data["name"], v)
        return v


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

    @field_validator("data_dir")
    @classmethod
    def _a_path(cls, v: str | None) -> str | None:
        return None if v is None else _path_text(v)


class ModelConfig(_Frozen):
    """A zoo model by name with builder options (see ``tinylarge profile``), each within its
    range (:data:`tinylarge.models.zoo.OPTION_RANGES`)."""

    name: str = "mlp"
    options: dict[str, OptionValue] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from tinylarge.models.zoo import MODELS

        return _check_name(MODELS.__getitem__, v)

    @field_validator("options")
    @classmethod
    def _in_range(cls, v: dict[str, OptionValue], info: ValidationInfo) -> dict[str, OptionValue]:
        from tinylarge.models.zoo import check_options

        if "name" in info.data:
            check_options(info.data["name"], v)
        return v


class DeviceGroup(_Frozen):
    """``count`` devices of one catalogue profile on one link preset."""

    profile: str
    count: Annotated[int, Field(ge=1, le=MAX_DEVICES)] = 1
    link: str = "wifi6"
    #: How ``topology.edges[].serves`` names the group (default: its position, ``"0"``...).
    name: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    distance_m: Annotated[float, Field(gt=0, le=MAX_DISTANCE_M)] | None = None
    #: Malicious devices in the group (``attack``): a count (an integer) or a share (a
    #: number with a point, 0.0 to 1.0). They are devices like the others: linked, billed.
    malicious: Annotated[int, Field(ge=0, le=MAX_DEVICES)] | Annotated[float, Field(ge=0, le=1)] = 0
    #: Inference stack for the group's int8 inference (``x-cube-ai@9.0``; docs/devices.md);
    #: ``None``: the profile's own.
    stack: str | None = None
    #: How the group moves (docs/network.md): None or ``static``: at ``distance_m``.
    mobility: MobilityConfig | None = None

    @field_validator("mobility", mode="before")
    @classmethod
    def _mobility_shorthand(cls, v: Any) -> Any:
        return mobility_shorthand(v)

    @model_validator(mode="after")
    def _moves_on_a_radio(self) -> DeviceGroup:
        check_group(link=self.link, distance_m=self.distance_m, mobility=self.mobility)
        return self

    @property
    def num_malicious(self) -> int:
        """How many of the group's devices are malicious."""
        if isinstance(self.malicious, int):
            return self.malicious
        return round(self.malicious * self.count)

    @model_validator(mode="after")
    def _malicious_within_the_group(self) -> DeviceGroup:
        if isinstance(self.malicious, int) and self.malicious > self.count:
            raise ValueError(
                f"malicious {self.malicious} exceeds the group's count {self.count}; give a "
                "count up to it or a share from 0.0 to 1.0"
            )
        return self

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, v: str) -> str:
        from tinylarge.hardware.catalogue import get_device

        return _check_name(get_device, v)

    @model_validator(mode="after")
    def _stack_runs_on_the_profile(self) -> DeviceGroup:
        if self.stack is not None:
            from tinylarge.hardware.catalogue import get_device
            from tinylarge.hardware.stacks import check_stack

            device = get_device(self.profile)
            try:
                check_stack(device.id, device.core, self.stack)
            except TinylargeError as exc:
                raise ValueError(str(exc)) from None
        return self

    @field_validator("link")
    @classmethod
    def _known_link(cls, v: str) -> str:
        from tinylarge.network.presets import PRESETS

        return _check_name(PRESETS.__getitem__, v)

    @field_validator("distance_m")
    @classmethod
    def _within_the_links_model(cls, v: float | None, info: ValidationInfo) -> float | None:
        """A distance the link's channel model covers (TR 38.901 scenarios have ranges)."""
        from tinylarge.network.link import Link

        if v is not None and "link" in info.data:
            Link.from_preset(info.data["link"], distance_m=v)
        return v


class ServerConfig(_Frozen):
    """The edge or cloud server that aggregates and hosts large models."""

    profile: str = "l4"

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, v: str) -> str:
        from tinylarge.hardware.catalogue import get_device

        return _check_name(get_device, v)


class TopologyConfig(_Frozen):
    devices: Annotated[list[DeviceGroup], Field(min_length=1, max_length=MAX_GROUPS)]
    server: ServerConfig = Field(default_factory=ServerConfig)
    #: Edge servers between the groups and the cloud (``server``), for hierarchical schemes
    #: (hierfavg); each group served by exactly one (:mod:`tinylarge.network.edges`).
    edges: Annotated[list[EdgeConfig], Field(max_length=MAX_GROUPS)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _edges_serve_every_group(self) -> TopologyConfig:
        check_edges(self.edges, group_names([g.name for g in self.devices]))
        return self

    #: Where the cells of moving devices stand (docs/network.md); none: one at the origin.
    cells: Annotated[list[CellConfig], Field(max_length=MAX_GROUPS)] = Field(default_factory=list)
    handover: HandoverConfig = Field(default_factory=HandoverConfig)

    @model_validator(mode="after")
    def _cells_serve_the_moving(self) -> TopologyConfig:
        check_cells(self.cells, [(g.link, g.mobility) for g in self.devices])
        return self

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
    #: How a round's participants are drawn: ``fixed`` takes ``round(fraction * n)`` without
    #: replacement; ``poisson`` takes each device independently with probability ``fraction``
    #: (the sampling DP-FedAvg's accounting assumes; see docs/privacy.md).
    sampling: Literal["fixed", "poisson"] = "fixed"
    #: Which devices a fixed-size round takes (:mod:`tinylarge.sim.selection`): ``uniform``,
    #: ``channel`` (best uplinks), ``energy`` (least spent) or ``power-of-choice`` (highest
    #: local loss) among ``selection_candidates`` times as many uniform candidates, or
    #: ``oort`` (statistical and system utility, Lai et al. 2021).
    selection: Literal["uniform", "channel", "energy", "power-of-choice", "oort"] = "uniform"
    selection_candidates: Annotated[float, Field(ge=1, le=1000)] = 2.0
    optimizer: Literal["sgd", "momentum", "adam"] = "sgd"
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 0.0

    def per_round(self, pool: int) -> int:
        """How many of ``pool`` devices a round samples: ``round(fraction * pool)`` (at least
        ``min_clients``, at most ``pool``); with Poisson sampling the nearest integer to the
        expected number, at least 1."""
        if self.sampling == "poisson":
            return max(1, round(self.fraction * pool))
        return min(pool, max(self.min_clients, round(self.fraction * pool)))

    def most_per_round(self, pool: int) -> int:
        """The most devices a round can take: :meth:`per_round`, or all of ``pool`` with
        Poisson sampling."""
        return pool if self.sampling == "poisson" else self.per_round(pool)

    #: Stop after the first evaluated round whose test accuracy is at least this (0 < x <= 1).
    target_accuracy: Annotated[float, Field(gt=0, le=1)] | None = None


class EngineConfig(_Frozen):
    """Simulated-clock and backend settings."""

    backend: Literal["sequential", "process", "batched", "ray"] = "sequential"
    #: Worker processes of the process and batched backends (default: one per core).
    workers: Annotated[int, Field(ge=1, le=1024)] | None = None
    ray_address: Annotated[str, Field(min_length=1, max_length=MAX_PATH_CHARS)] | None = None
    deadline_s: Annotated[float, Field(gt=0, le=1e9)] | None = None
    dropout_prob: Annotated[float, Field(ge=0, lt=1)] = 0.0
    fading: bool = False
    shadowing: bool = False
    eval_every: Annotated[int, Field(ge=1, le=100_000)] = 1
    threads: Annotated[int, Field(ge=1, le=256)] = 1


class DpConfig(_Frozen):
    """User-level differential privacy for federated averaging: DP-FedAvg (McMahan et al.
    2018, https://arxiv.org/abs/1710.06963) with fixed or adaptive clipping (Andrew et al.
    2021, https://arxiv.org/abs/1905.03871). Field names and meanings follow Flower's
    ``DifferentialPrivacy{Server,Client}Side{Fixed,Adaptive}Clipping`` wrappers; see
    docs/privacy.md. Give ``noise_multiplier`` or ``target_epsilon`` (then the noise
    multiplier is solved for before the run)."""

    clipping: Literal["server-fixed", "server-adaptive", "client-fixed"] = "server-fixed"
    noise_multiplier: Annotated[float, Field(ge=0, le=1e4)] | None = None
    target_epsilon: Annotated[float, Field(gt=0, le=1e4)] | None = None
    delta: Annotated[float, Field(gt=0, lt=1)] = 1e-5
    accountant: Literal["rdp", "pld"] = "rdp"
    #: Fixed clipping: the L2 bound of one client's model update.
    clipping_norm: Annotated[float, Field(gt=0, le=1e6)] = 1.0
    #: Adaptive clipping (Andrew et al.'s recommended defaults, as Flower's).
    initial_clipping_norm: Annotated[float, Field(gt=0, le=1e6)] = 0.1
    target_clipped_quantile: Annotated[float, Field(ge=0, le=1)] = 0.5
    clip_norm_lr: Annotated[float, Field(gt=0, le=10)] = 0.2
    #: Noise on the count of unclipped updates; default: clients per round / 20.
    clipped_count_stddev: Annotated[float, Field(gt=0, le=1e6)] | None = None

    @model_validator(mode="after")
    def _one_noise_setting(self) -> DpConfig:
        if (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise ValueError("give exactly one of noise_multiplier and target_epsilon")
        return self


class DpSgdConfig(_Frozen):
    """Sample-level DP-SGD in the devices' local training (Abadi et al. 2016,
    https://arxiv.org/abs/1607.00133), with Opacus: each step's batch is a Poisson sample of
    the device's records at rate ``training.batch_size / N``, each record's gradient is
    clipped to ``max_grad_norm`` and Gaussian noise of ``noise_multiplier * max_grad_norm``
    is added to their sum. Field names are Opacus's. Give ``noise_multiplier`` or
    ``target_epsilon`` (then the noise multiplier is solved for before the run, for a device
    taking part in every round); see docs/config.md."""

    noise_multiplier: Annotated[float, Field(ge=0, le=1e4)] | None = None
    target_epsilon: Annotated[float, Field(gt=0, le=1e4)] | None = None
    #: The L2 bound each record's gradient is clipped to.
    max_grad_norm: Annotated[float, Field(gt=0, le=1e6)]
    #: Below 1/N for the N training records of the devices that train (checked at set-up).
    delta: Annotated[float, Field(gt=0, lt=1)] = 1e-5
    accountant: Literal["rdp", "pld"] = "rdp"
    #: Poisson sampling of every batch, what the accountants assume (``false`` is refused).
    poisson_sampling: bool = True

    @model_validator(mode="after")
    def _accountable(self) -> DpSgdConfig:
        if (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise ValueError("give exactly one of noise_multiplier and target_epsilon")
        if not self.poisson_sampling:
            raise ValueError(
                "poisson_sampling: false (shuffled fixed-size batches) is not what the "
                "accountants analyse, so no epsilon could be reported; keep it true"
            )
        return self


class SecAggConfig(_Frozen):
    """Secure aggregation, SecAgg+ (Bell et al. 2020) on Bonawitz et al. 2017: the server
    learns only the sum of the round's updates. Names and defaults after Flower's
    ``SecAggPlusWorkflow``; see docs/privacy.md."""

    #: Neighbours each client shares its secrets with, itself included (odd below the
    #: round's client count; capped at it, which is the complete graph of the original
    #: SecAgg).
    num_shares: Annotated[int, Field(ge=3, le=MAX_DEVICES)]
    #: Shares needed to rebuild a secret: the fewest clients that must stay to the end.
    reconstruction_threshold: Annotated[int, Field(ge=2, le=MAX_DEVICES)]
    clipping_range: Annotated[float, Field(gt=0, le=1e6)] = 8.0
    quantization_range: Annotated[int, Field(ge=2, le=2**62)] = 4194304
    modulus_range: Annotated[int, Field(ge=4, le=2**64)] = 2**32
    max_weight: Annotated[float, Field(gt=0, le=1e9)] = 1000.0

    def params(self, clients: int) -> SecAggParams:
        """The protocol settings for a round of ``clients``: ``num_shares`` capped at the
        client count (the complete graph) and made odd below it (SecAgg+'s ring needs an odd
        size). Raises :class:`TinylargeError` for settings that round cannot run."""
        from tinylarge.security._secagg_base import SecAggParams

        k = min(self.num_shares, clients)
        if k < clients and k % 2 == 0:
            k -= 1
        return SecAggParams(
            num_shares=k,
            reconstruction_threshold=self.reconstruction_threshold,
            clipping_range=self.clipping_range,
            quantization_range=self.quantization_range,
            modulus_range=self.modulus_range,
            max_weight=self.max_weight,
        )

    @model_validator(mode="after")
    def _consistent(self) -> SecAggConfig:
        try:
            self.params(self.num_shares)  # the complete graph of num_shares clients
        except TinylargeError as exc:
            raise ValueError(str(exc)) from None
        return self


class PrivacyConfig(_Frozen):
    """Privacy around training and aggregation (docs/privacy.md)."""

    dp: DpConfig | None = None
    dpsgd: DpSgdConfig | None = None
    secagg: SecAggConfig | None = None

    @model_validator(mode="after")
    def _composable(self) -> PrivacyConfig:
        if self.dp is not None and self.dpsgd is not None:
            raise ValueError(
                "dpsgd with dp: one run reports one (epsilon, delta), per record for dpsgd, "
                "per device for dp; use one of them"
            )
        if self.dp is not None and self.secagg is not None and self.dp.clipping != "client-fixed":
            raise ValueError(
                f"dp.clipping {self.dp.clipping} with secagg: the server sees only masked "
                "updates and cannot clip them; use clipping: client-fixed (each device clips "
                "and adds its share of the noise: distributed DP)"
            )
        return self


class AttackConfig(_Frozen):
    """What the malicious devices (``topology.devices[].malicious``) do; docs/security.md.
    Update attacks (sign-flip, gaussian, alie, ipm, mimic) replace the update they send;
    data attacks (label-flip, backdoor) poison their local training data."""

    name: str
    options: dict[str, OptionValue] = Field(default_factory=dict)
    #: Also run the same config without attackers (into ``<run>/clean``): summary.json then
    #: has ``clean_accuracy`` and ``accuracy_drop``.
    clean_twin: bool = False


class DefenseConfig(_Frozen):
    """A robust aggregation rule (krum, multi-krum, bulyan, median, trimmed-mean,
    geometric-median, centered-clipping, fltrust), optionally after a pre-aggregator
    (bucketing, nnm); docs/security.md."""

    name: str
    options: dict[str, OptionValue] = Field(default_factory=dict)
    pre: str | None = None
    pre_options: dict[str, OptionValue] = Field(default_factory=dict)
    #: FLTrust's root dataset: training samples the server holds (drawn per class).
    root_samples: Annotated[int, Field(ge=1, le=MAX_SAMPLES)] = 100


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
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    attack: AttackConfig | None = None
    defense: DefenseConfig | None = None
    #: A grid of variants of this config for ``tinylarge sweep`` (docs/explore.md);
    #: ``tinylarge run`` runs the config as it is.
    sweep: SweepConfig | None = None

    @field_validator("name")
    @classmethod
    def _a_directory_name(cls, v: str) -> str:
        if not _RUN_NAME.fullmatch(v):
            raise ValueError(
                f"{v[:40]!r} cannot name a run directory: 1 to 100 letters, digits, '.', '_', "
                "'+' or '-', not starting with '.'"
            )
        return v

    @model_validator(mode="after")
    def _partition_fits_the_subset(self) -> ExperimentConfig:
        """With ``task.subset`` the training set has at most that many samples: a partition
        that needs more (a sample per device, ``min_size`` or ``shards_per_client`` each)
        can never be made, so it is refused here rather than when the run starts."""
        subset = self.task.subset
        if subset is None:
            return self
        devices = self.topology.num_devices
        options = self.task.partition.options
        for key, per_device in (
            ("devices", 1),
            ("min_size", options.get("min_size")),
            ("shards_per_client", options.get("shards_per_client")),
        ):
            if isinstance(per_device, (int, float)) and per_device * devices > subset:
                what = "a sample" if key == "devices" else f"{key} {per_device}"
                raise ValueError(
                    f"task.partition: {devices:,} devices with {what} each need more than the "
                    f"task.subset of {subset:,} training samples"
                )
        return self

    @model_validator(mode="after")
    def _privacy_fits_the_fleet(self) -> ExperimentConfig:
        """delta must be below 1/n for n users (else "protect all but a few" is no protection);
        Poisson sampling has no minimum number of clients."""
        n = self.topology.num_devices
        dp = self.privacy.dp
        if dp is not None and dp.delta >= 1 / n:
            raise ValueError(
                f"privacy.dp.delta {dp.delta:g} must be below 1/n = {1 / n:.3g} for n = {n:,} "
                "devices (user-level DP protects each device's data; 1e-5 is usual)"
            )
        sa = self.privacy.secagg
        if sa is not None:
            most = self.training.most_per_round(n)
            if sa.reconstruction_threshold > min(sa.num_shares, most):
                raise ValueError(
                    f"privacy.secagg.reconstruction_threshold {sa.reconstruction_threshold} "
                    f"exceeds num_shares {sa.num_shares} or the {most:,} clients a round "
                    f"takes; allowed: 2..{min(sa.num_shares, most)}"
                )
            try:  # what a full round really runs: an even num_shares below it loses one
                sa.params(most)
            except TinylargeError as exc:
                raise ValueError(
                    f"privacy.secagg with {most:,} clients a round: {exc} (below the round's "
                    "client count num_shares runs odd, as SecAgg+'s ring needs)"
                ) from None
            if sa.quantization_range * most > sa.modulus_range:
                raise ValueError(
                    f"privacy.secagg: {most:,} clients' quantized inputs (quantization_range "
                    f"{sa.quantization_range:,} each) can sum past modulus_range "
                    f"{sa.modulus_range:,}; raise modulus_range to at least "
                    f"2**{(sa.quantization_range * most - 1).bit_length()} or lower "
                    "quantization_range"
                )
        if self.training.sampling == "poisson" and self.training.selection != "uniform":
            raise ValueError(
                f"training.selection {self.training.selection}: Poisson sampling takes each "
                "device independently, there is no choice to make; use sampling: fixed"
            )
        if self.training.sampling == "poisson" and self.training.min_clients != 1:
            raise ValueError(
                "training.min_clients: Poisson sampling draws each device independently and "
                "cannot guarantee a minimum; leave min_clients at 1 or use sampling: fixed"
            )
        return self

    @model_validator(mode="after")
    def _attackers_have_an_attack(self) -> ExperimentConfig:
        from tinylarge.security.split_options import is_split_attack, is_split_defense

        bad = sum(g.num_malicious for g in self.topology.devices)
        server_attack = self.attack.name if self.attack is not None else None
        by_server = is_split_attack(server_attack)
        if bad and by_server:
            raise ValueError(
                f"topology: {bad} malicious devices, but attack {server_attack!r} is the "
                "server's (honest-but-curious); set topology.devices[].malicious to 0"
            )
        if bad and self.attack is None:
            raise ValueError(
                f"topology: {bad} malicious devices but no attack; add attack: {{name: ...}}"
            )
        if self.attack is not None and not bad and not by_server:
            raise ValueError(
                "attack: no device is malicious; set topology.devices[].malicious "
                "(a count, or a share such as 0.2)"
            )
        robust = self.defense is not None and not is_split_defense(self.defense.name)
        if robust and (self.privacy.dp or self.privacy.secagg):
            raise ValueError(
                "defense with privacy.dp or privacy.secagg: a robust rule must see each "
                "update in the clear (before noise, without masks); use one of them"
            )
        return self

    def with_overrides(self, **changes: Any) -> ExperimentConfig:
        """A validated copy with top-level sections replaced (dict or model)."""
        # only what was set: a scheme's refusals keep telling set fields from defaults
        data = self.model_dump(exclude_unset=True)
        for key, value in changes.items():
            data[key] = (
                value.model_dump(exclude_unset=True) if isinstance(value, BaseModel) else value
            )
        return parse_config(data)


def format_validation_error(exc: ValidationError, *, source: str = "config") -> str:
    """One line per problem: ``source: field.path: what is wrong``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see docs/config.md)"
        elif err["type"] == "missing":
            msg = "required field is missing"
        lines.append(f"{source}: {loc}: {msg}" if loc else f"{source}: {msg}")
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
