"""Options of the inference modes: ``cascade``, ``early-exit``, ``split-inference``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from tinylarge.config import ExperimentConfig
from tinylarge.hardware.catalogue import get_device
from tinylarge.inference.paths import TIERS, Tier
from tinylarge.models.zoo import MODELS, check_options
from tinylarge.network.presets import PRESETS
from tinylarge.schemes.options.base import SchemeOptions, register_options, set_fields


class ServingOptions(SchemeOptions):
    """Options every inference mode shares."""

    #: Share of the training set held out (stratified) to calibrate and choose thresholds.
    val_fraction: Annotated[float, Field(gt=0, lt=0.5)] = 0.1
    #: ``split``: the test set is dealt among the serving devices; ``replicate``: each
    #: device serves all of it (compare device groups and links on the same samples).
    assignment: Literal["split", "replicate"] = "split"

    def refuse(self, cfg: ExperimentConfig) -> list[str]:
        name = cfg.scheme.name
        out = []
        if cfg.engine.deadline_s is not None:
            out.append(
                f"engine.deadline_s: scheme {name!r} serves requests rather than collecting "
                "results by a deadline (each request's latency is reported: latency_mean_s, "
                "latency_p95_s); remove it"
            )
        out += [
            f"training.{field}: scheme {name!r} serves on every device its model fits, it "
            "does not sample devices; remove it"
            for field in set_fields(cfg.training, "fraction", "min_clients")
        ]
        return out


class ThresholdOptions(ServingOptions):
    """How requests choose their exit."""

    #: What the validation threshold must achieve: ``accuracy`` (``target_value`` times
    #: the last exit's accuracy, offloading least), ``offload`` (spend a budget:
    #: ``target_value`` of the samples leave the device) or ``energy`` (the best accuracy
    #: within ``target_value`` device joules per inference).
    target: Literal["accuracy", "offload", "energy"] = "accuracy"
    target_value: Annotated[float, Field(gt=0, le=1e6)] = 0.99
    #: Cap on the share of requests leaving the device, whatever the target.
    max_offload_fraction: Annotated[float, Field(ge=0, le=1)] = 1.0
    #: A fixed confidence threshold instead of the validation choice (confidences are in
    #: [0, 1]: a threshold above 1 offloads every request).
    threshold: Annotated[float, Field(ge=0, le=2)] | None = None
    #: Confidence score: ``max-softmax`` or ``entropy`` (1 - normalised entropy).
    confidence: Literal["max-softmax", "entropy"] = "max-softmax"
    #: Temperature-scale every exit on the validation split.
    calibrate: bool = True
    #: Let every device adapt its threshold online to hold the validation offload fraction.
    adapt: bool = False
    #: Step size of the online threshold update (confidence units per request).
    adapt_rate: Annotated[float, Field(gt=0, le=1)] = 0.01


#: Default large model: a wide MLP works for every input shape.
DEFAULT_LARGE_OPTIONS: dict[str, Any] = {"hidden": [256, 256]}


@register_options("cascade")
class CascadeOptions(ThresholdOptions):
    #: Zoo model at the server; ``large_options`` are its builder options.
    large_model: str = "mlp"
    large_options: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_LARGE_OPTIONS))

    @model_validator(mode="before")
    @classmethod
    def _large_defaults(cls, data: Any) -> Any:
        """The wide-MLP options are the default only for the default MLP."""
        if isinstance(data, dict) and data.get("large_model", "mlp") != "mlp":
            return {"large_options": {}, **data}
        return data

    @field_validator("large_model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        MODELS[v]
        return v

    @field_validator("large_options")
    @classmethod
    def _large_options_in_range(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if "large_model" in info.data:
            check_options(info.data["large_model"], v)
        return v


@register_options("early-exit")
class EarlyExitOptions(ThresholdOptions):
    #: ``mlp``, ``cnn`` or ``auto`` (cnn for images of at least 4x4, else mlp).
    backbone: Literal["auto", "mlp", "cnn"] = "auto"
    #: Width of each stage (default mlp 64/256/512, cnn 8/32/64): one exit per stage.
    widths: list[Annotated[int, Field(ge=1, le=8192)]] | None = Field(None, max_length=16)
    #: Tier of each stage, device -> edge -> cloud.
    placement: list[Tier] = Field(default_factory=lambda: list(TIERS), max_length=16)
    #: Joint-loss weight of each exit (default all 1).
    exit_weights: list[Annotated[float, Field(ge=0, le=1000)]] | None = Field(None, max_length=16)
    #: Catalogue id of the cloud tier.
    cloud: str = "a100"
    #: Link preset between the edge server and the cloud.
    backhaul: str = "ethernet"

    @field_validator("cloud")
    @classmethod
    def _known_cloud(cls, v: str) -> str:
        get_device(v)
        return v

    @field_validator("backhaul")
    @classmethod
    def _known_backhaul(cls, v: str) -> str:
        PRESETS[v]
        return v


@register_options("split-inference")
class SplitInferenceOptions(ServingOptions):
    #: What the partition minimises: end-to-end ``latency`` or device ``energy``.
    objective: Literal["latency", "energy"] = "latency"
