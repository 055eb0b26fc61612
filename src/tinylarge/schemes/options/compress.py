"""Options of the ``kd`` scheme: distil a large teacher, compress, deploy int8 to devices."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from tinylarge.compress.quantize import DEFAULT_PERCENTILE, CalibrationMethod
from tinylarge.config import ExperimentConfig
from tinylarge.models.zoo import MODELS, check_options
from tinylarge.schemes.options.base import SchemeOptions, register_options, set_fields

Epochs = Annotated[int, Field(ge=1, le=1000)]

#: ``training`` fields kd cannot honour: it trains on the server only, with its own options.
SERVER_ONLY_TRAINING = (
    "local_epochs",
    "batch_size",
    "lr",
    "optimizer",
    "momentum",
    "weight_decay",
)


@register_options("kd")
class KDOptions(SchemeOptions):
    #: Teacher zoo model, or "auto" (cnn-large for images/spectrograms, a wide mlp otherwise).
    teacher: str = "auto"
    teacher_options: dict[str, Any] = Field(default_factory=dict)
    teacher_epochs: Epochs = 5
    #: Share of the training set the server holds (stratified, from the seed).
    server_fraction: Annotated[float, Field(gt=0, le=1)] = 0.5
    #: Distillation epochs per round (one round = one release to the devices).
    distill_epochs: Epochs = 2
    #: Server-side optimisation (devices do not train in kd).
    optimizer: Literal["sgd", "momentum", "adam"] = "adam"
    lr: Annotated[float, Field(gt=0, le=100)] = 0.002
    batch_size: Annotated[int, Field(ge=1, le=65536)] = 64
    #: Learning-rate schedule of every server-side training call (cosine: SGDR restarts per round).
    schedule: Literal["constant", "cosine"] = "cosine"
    temperature: Annotated[float, Field(gt=0, le=1000)] = 2.0
    alpha: Annotated[float, Field(ge=0, le=1)] = 0.5
    quantization: Literal["ptq", "qat"] = "ptq"
    qat_epochs: Epochs = 1
    calibration_samples: Annotated[int, Field(ge=1, le=100_000)] = 256
    #: Activation ranges: 99.99th percentile of |x| (default) or min/max (compress.quantize).
    calibration_method: CalibrationMethod = "percentile"
    calibration_percentile: Annotated[float, Field(gt=50, le=100)] = DEFAULT_PERCENTILE
    prune: Literal["none", "magnitude", "channels"] = "none"
    prune_amount: Annotated[float, Field(ge=0, lt=1)] = 0.5
    prune_finetune_epochs: Annotated[int, Field(ge=0, le=1000)] = 1

    @field_validator("teacher")
    @classmethod
    def _known_teacher(cls, v: str) -> str:
        if v != "auto" and v not in MODELS:
            raise ValueError(f"unknown teacher {v!r}; known: auto, {', '.join(MODELS.names())}")
        return v

    @field_validator("teacher_options")
    @classmethod
    def _teacher_options_in_range(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if info.data.get("teacher", "auto") != "auto":
            check_options(info.data["teacher"], v)
        return v

    def refuse(self, cfg: ExperimentConfig) -> list[str]:
        return [
            f"training.{name}: scheme 'kd' does not train on devices, so it has no use for "
            "it; the server's training takes scheme.options (teacher_epochs, distill_epochs, "
            "optimizer, lr, batch_size, schedule); remove it"
            for name in set_fields(cfg.training, *SERVER_ONLY_TRAINING)
        ]
