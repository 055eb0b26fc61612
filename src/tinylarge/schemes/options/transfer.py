"""Options of the knowledge-transfer schemes: TL, FTL, FedGKT, FedDF, FML and FFM.

Several of them let device models differ per device profile or tier
(``client_models: {mcu: {name: mlp}, sbc: {name: cnn-tiny}}``): :class:`ModelChoice`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tinylarge.config import ExperimentConfig
from tinylarge.data import TEXT_DATASETS
from tinylarge.errors import TinylargeError
from tinylarge.hardware.catalogue import TIERS, get_device
from tinylarge.models.foundation_profile import LORA_TARGETS
from tinylarge.models.zoo import MODELS, check_options
from tinylarge.schemes.options.base import SchemeOptions, register_options

Epochs = Annotated[int, Field(ge=1, le=1000)]
Rate = Annotated[float, Field(gt=0, le=100)]
Temperature = Annotated[float, Field(gt=0, le=1000)]
BatchSize = Annotated[int, Field(ge=1, le=65536)]


class ModelChoice(BaseModel):
    """A zoo model by name with its builder options, each within its range."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in MODELS:
            raise ValueError(f"unknown model {v!r}; known: {', '.join(MODELS.names())}")
        return v

    @model_validator(mode="after")
    def _in_range(self) -> ModelChoice:
        check_options(self.name, self.options)
        return self


def check_model_map(value: dict[str, ModelChoice]) -> dict[str, ModelChoice]:
    """Keys of a per-device model map must be device profile ids or tiers."""
    for key in value:
        if key in TIERS:
            continue
        try:
            get_device(key)
        except TinylargeError:
            raise ValueError(
                f"{key!r} is neither a device tier ({', '.join(TIERS)}) nor a device profile "
                "(see `tinylarge devices`)"
            ) from None
    return value


PartMode = Literal["auto", "all", "head", "bias"]


@register_options("tl", "ftl")
class TLOptions(SchemeOptions):
    #: Share of the training set the server holds (and devices do not).
    server_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.1
    #: Pre-train on these classes only (a source task); None: all classes.
    server_classes: list[Annotated[int, Field(ge=0, le=100_000)]] | None = None
    #: Epochs of server pre-training over its data.
    pretrain_epochs: Epochs = 5
    #: Which part devices train: the largest that fits (auto), all, the head or the biases.
    part: PartMode = "auto"


@register_options("fedgkt")
class FedGKTOptions(SchemeOptions):
    #: Device model per profile id or tier (default: the config's model).
    client_models: dict[str, ModelChoice] = Field(default_factory=dict)
    #: Children of the device model that form the extractor: a cut point of models/cuts.py
    #: (None: the last cut before the model's second conv/linear layer).
    extractor_layers: Annotated[int, Field(ge=1, le=10_000)] | None = None
    #: The large server model over features (None: cnn-large for images, mlp for vectors).
    server_model: ModelChoice | None = None
    #: Server epochs over all uploaded features per round (FedML's runs: 20).
    server_epochs: Epochs = 20
    #: Server mini-batch size (the server is not memory-bound like the devices).
    server_batch_size: BatchSize = 64
    #: Server optimizer: Adam with AMSGrad, or SGD with Nesterov momentum 0.9 (as FedML's).
    server_optimizer: Literal["adam", "sgd"] = "adam"
    server_lr: Rate = 1e-3
    server_weight_decay: Annotated[float, Field(ge=0, le=1)] = 1e-4
    #: Weight of the distillation to the devices' logits in the server's loss: 0 as the
    #: reference implementation, 1 as the paper's equation.
    server_kd_weight: Annotated[float, Field(ge=0, le=1000)] = 0.0
    #: Weight of the distillation to the server's logits in the devices' loss.
    alpha: Annotated[float, Field(ge=0, le=1000)] = 1.0
    #: Distillation temperature, both directions (reference: 3).
    temperature: Temperature = 3.0
    #: Precision of the uploaded features.
    feature_dtype: Literal["float32", "float16"] = "float32"
    #: Also average the extractors of devices with one architecture every round, sent both
    #: ways (a FedAvg of the extractor; not in the original FedGKT, which exchanges no
    #: weights): keeps the features the server reads alike across devices under label skew.
    sync_extractor: bool = False

    _models = field_validator("client_models")(check_model_map)


@register_options("feddf")
class FedDFOptions(SchemeOptions):
    #: Device model per profile id or tier (default: the config's model).
    client_models: dict[str, ModelChoice] = Field(default_factory=dict)
    #: The large server model (None: cnn-large for images, a wide mlp otherwise).
    server_model: ModelChoice | None = None
    #: Share of the training set held by the server as the unlabeled public set.
    public_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.1
    #: Device epochs of distillation to the consensus on the public set per round.
    digest_epochs: Annotated[int, Field(ge=0, le=1000)] = 1
    #: Server epochs of ensemble distillation per round.
    server_epochs: Epochs = 10
    #: Server mini-batch size (the server is not memory-bound like the devices).
    server_batch_size: BatchSize = 64
    #: Server learning rate (None: ``training.lr``); FedDF distils with Adam at 1e-3.
    server_lr: Rate | None = 1e-3
    #: Server optimizer (None: ``training.optimizer``).
    server_optimizer: Literal["sgd", "momentum", "adam"] | None = "adam"
    temperature: Temperature = 3.0
    #: What the server returns: the large model's logits or the devices' ensemble.
    consensus: Literal["server", "ensemble"] = "server"

    _models = field_validator("client_models")(check_model_map)


@register_options("fml")
class FMLOptions(SchemeOptions):
    #: Private model per profile id or tier (default: the config's model).
    client_models: dict[str, ModelChoice] = Field(default_factory=dict)
    #: The shared (meme) model every device trains (default: the config's model).
    shared_model: ModelChoice | None = None
    #: Weight of cross-entropy in the private model's loss (the rest is KL to the shared).
    alpha: Annotated[float, Field(ge=0, le=1)] = 0.5
    #: Weight of cross-entropy in the shared model's loss (the rest is KL to the private).
    beta: Annotated[float, Field(ge=0, le=1)] = 0.5
    temperature: Temperature = 1.0

    _models = field_validator("client_models")(check_model_map)


@register_options("ffm")
class FFMOptions(SchemeOptions):
    """Options of the ``ffm`` scheme (``scheme.options``)."""

    lora_rank: int = Field(8, ge=0, le=384)
    lora_alpha: int = Field(16, ge=1, le=4096)
    lora_targets: list[str] = Field(default_factory=lambda: ["query", "value"])
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lora_lr: float = Field(2e-3, gt=0, le=10)
    head_lr: float = Field(1e-2, gt=0, le=10)
    max_length: int = Field(64, ge=4, le=512)
    public_fraction: float = Field(0.1, gt=0, lt=1)
    distill_epochs: int = Field(5, ge=0, le=1000)
    temperature: float = Field(2.0, gt=0, le=1000)
    frozen_baseline: bool = True

    @field_validator("lora_targets")
    @classmethod
    def _targets(cls, v: list[str]) -> list[str]:
        bad = sorted(set(v) - set(LORA_TARGETS))
        if bad or not v:
            raise ValueError(f"choose LoRA targets from {sorted(LORA_TARGETS)}, got {v}")
        return v

    def refuse(self, cfg: ExperimentConfig) -> list[str]:
        if cfg.task.dataset in TEXT_DATASETS:
            return []
        return [
            f"task.dataset: scheme 'ffm' fine-tunes a text foundation model and needs a text "
            f"dataset ({', '.join(TEXT_DATASETS.names())}), got {cfg.task.dataset!r}"
        ]
