"""Options of split learning (``sl``) and SplitFed (``fsl``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from tinylarge.schemes.options.base import SchemeOptions, register_options

Cut = Annotated[int, Field(ge=1, le=10_000)]


class SplitOptions(SchemeOptions):
    """Options every split scheme takes."""

    #: Cut index for every device (int), per device profile (mapping), or None: planned.
    cut: Cut | dict[str, Cut] | None = None
    #: What the planner minimises per device: round latency or round energy.
    objective: Literal["latency", "energy"] = "latency"
    #: Smashed-data compression (gradients travel at fp32).
    compression: Literal["fp32", "fp16", "int8"] = "fp32"
    #: Test samples the leakage (distance correlation) is measured on.
    leakage_samples: Annotated[int, Field(ge=2, le=4096)] = 256


@register_options("sl")
class SLOptions(SplitOptions):
    #: ``label-sharing`` (labels go to the server) or ``u-shaped`` (labels stay on the device).
    variant: Literal["label-sharing", "u-shaped"] = "label-sharing"


@register_options("fsl")
class FSLOptions(SplitOptions):
    #: ``v1``: a server-side copy per client, averaged; ``v2``: one server-side model in turn.
    variant: Literal["v1", "v2"] = "v1"
