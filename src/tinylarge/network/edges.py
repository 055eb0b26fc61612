"""Edge servers between the devices and the cloud: the topology's ``edges`` (docs/config.md).

A hierarchical scheme (HierFAVG, :mod:`tinylarge.schemes.hierfavg`) aggregates at
edge servers, each serving some device groups over their own links (a cell per
edge: devices of different edges never share bandwidth), and at the cloud
(``topology.server``), which each edge reaches over its ``backhaul`` link preset.
Groups are named by their ``name``, or ``"0"``, ``"1"``... by their position.

>>> check_edges([EdgeConfig(name="east", serves=["0"])], ["0"])
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

_NAME = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,63}")


class EdgeConfig(BaseModel):
    """One edge server: its catalogue profile, its backhaul to the cloud, the groups it serves."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: str
    #: Catalogue id of the edge server (``tinylarge devices``).
    profile: str = "jetson-agx-orin"
    #: Link preset between this edge and the cloud (``ethernet``: wired gigabit).
    backhaul: str = "ethernet"
    #: Device groups it serves: their ``name``, or their position (``"0"``, ``"1"``...).
    serves: Annotated[list[str], Field(min_length=1, max_length=1024)]

    @field_validator("serves", mode="before")
    @classmethod
    def _positions_as_text(cls, v: object) -> object:
        """``serves: [0, 1]`` names the first two groups, as ``["0", "1"]`` does."""
        if isinstance(v, list):
            return [str(x) if isinstance(x, int) and not isinstance(x, bool) else x for x in v]
        return v

    @field_validator("name")
    @classmethod
    def _a_node_name(cls, v: str) -> str:
        if not _NAME.fullmatch(v):
            raise ValueError(
                f"edge name {v[:40]!r}: 1 to 64 letters, digits, '.', '_', '+' or '-', "
                "not starting with '.'"
            )
        return v

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, v: str) -> str:
        from tinylarge.hardware.catalogue import get_device

        get_device(v)
        return v

    @field_validator("backhaul")
    @classmethod
    def _known_backhaul(cls, v: str) -> str:
        from tinylarge.network.presets import PRESETS

        PRESETS[v]
        return v


def check_edges(edges: list[EdgeConfig], groups: list[str]) -> None:
    """Edge names are unique, every name an edge serves is a device group's, and with edges
    every group is served by exactly one. ``groups`` holds each group's name (its position
    as text when it has none). Raises ValueError naming the first problem."""
    if len(set(groups)) != len(groups):
        dup = sorted({g for g in groups if groups.count(g) > 1})
        raise ValueError(f"device group names must be unique; repeated: {', '.join(dup)}")
    if not edges:
        return
    names = [e.name for e in edges]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"edges: names must be unique; repeated: {', '.join(dup)}")
    served: dict[str, str] = {}
    for e in edges:
        for g in e.serves:
            if g not in groups:
                raise ValueError(
                    f"edges.{e.name}.serves: no device group {g!r}; groups: {', '.join(groups)}"
                )
            if g in served:
                raise ValueError(
                    f"device group {g!r} is served by edges {served[g]!r} and {e.name!r}; "
                    "give each group one edge"
                )
            served[g] = e.name
    missing = [g for g in groups if g not in served]
    if missing:
        raise ValueError(
            f"device groups served by no edge: {', '.join(missing)}; add each to one edge's serves"
        )


def group_names(names: list[str | None]) -> list[str]:
    """Each device group's name for ``serves``: its ``name``, or its position as text."""
    return [str(i) if n is None else n for i, n in enumerate(names)]
