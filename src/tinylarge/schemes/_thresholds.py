"""Confidence-thresholded inference modes (cascade, early exit): calibration and exit decisions.

Each round, on the validation split, every exit's temperature is fitted
(:func:`~tinylarge.inference.calibration.fit_temperature`) and a threshold is
chosen for the target (:func:`~tinylarge.inference.policy.choose_threshold`),
once per device group (profile, link, distance), because the energy of a path
depends on the device and its link. Serving then takes, per request, the first
exit whose calibrated confidence reaches the device's threshold, or, with
``adapt: true``, lets each device move its threshold online to hold the
offload fraction chosen on validation
(:func:`~tinylarge.inference.policy.adapt_online`).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from tinylarge.inference.calibration import confidence, fit_temperature
from tinylarge.inference.paths import ExitPath
from tinylarge.inference.policy import (
    ThresholdChoice,
    adapt_online,
    choose_threshold,
    exit_indices,
)
from tinylarge.schemes._serving import InferenceScheme
from tinylarge.schemes.options.inference import ThresholdOptions
from tinylarge.sim.context import Client

TO = TypeVar("TO", bound=ThresholdOptions)
#: A device group: (profile, link preset, distance in metres).
Group = tuple[str, str, float]


def device_group(client: Client) -> Group:
    return (client.profile.id, client.link_name, float(client.link.distance_m))


class ThresholdedScheme(InferenceScheme[TO]):
    """An inference mode with several exits and confidence thresholds."""

    #: Exits from this index on are answered away from the device.
    first_offload_exit: int = 1

    @abstractmethod
    def exit_logits(self, logits: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Per exit, the ``(n, K)`` logits of the given per-role logits."""

    @abstractmethod
    def client_paths(self, client: Client) -> tuple[ExitPath, ...]:
        """The exit paths on ``client``."""

    def mode_setup(self) -> None:
        self.temperatures: list[float] = []
        self.choices: dict[Group, ThresholdChoice] = {}
        self.thresholds: dict[int, float] = {}
        self.final_thresholds: dict[int, float] = {}

    def calibrate(self, val_logits: Mapping[str, np.ndarray], y_val: np.ndarray) -> None:
        opts = self.options
        per_exit = self.exit_logits(val_logits)
        self.temperatures = [
            fit_temperature(lg, y_val) if opts.calibrate else 1.0 for lg in per_exit
        ]
        conf = self.confidences(per_exit)
        correct = np.stack([lg.argmax(axis=1) == y_val for lg in per_exit], axis=1)
        self.choices = {}
        for c in self.pool:
            key = device_group(c)
            if key not in self.choices:
                self.choices[key] = choose_threshold(
                    conf=conf,
                    correct=correct,
                    first_offload_exit=self.first_offload_exit,
                    energy_per_exit_j=self.path_energy_j(c, self.client_paths(c)),
                    target=opts.target,
                    target_value=opts.target_value,
                    max_offload_fraction=opts.max_offload_fraction,
                )
            chosen = self.choices[key].threshold
            self.thresholds[c.id] = chosen if opts.threshold is None else opts.threshold

    def confidences(self, per_exit: Sequence[np.ndarray]) -> np.ndarray:
        """``(n, E)`` calibrated confidences of every exit."""
        return np.stack(
            [
                confidence(lg, temperature=t, kind=self.options.confidence)
                for lg, t in zip(per_exit, self.temperatures, strict=True)
            ],
            axis=1,
        )

    def decide(self, client: Client, conf: np.ndarray) -> np.ndarray:
        """Exit of each of ``client``'s requests, in order."""
        opts = self.options
        start = self.thresholds[client.id]
        if not opts.adapt:
            self.final_thresholds[client.id] = start
            return exit_indices(conf, start)
        choice = self.choices[device_group(client)]
        exits, final = adapt_online(
            conf,
            threshold=start,
            target_offload_fraction=choice.offload_fraction,
            rate=opts.adapt_rate,
            first_offload_exit=self.first_offload_exit,
        )
        self.final_thresholds[client.id] = final
        return exits

    def extras(self) -> dict[str, Any]:
        return {
            "temperatures": list(self.temperatures),
            "threshold_choice": {
                f"{p}/{link}@{d:g}m": ch.to_dict() for (p, link, d), ch in self.choices.items()
            },
            "thresholds": {str(c): t for c, t in sorted(self.thresholds.items())},
            "final_thresholds": {str(c): t for c, t in sorted(self.final_thresholds.items())},
        }

    def mode_state(self) -> dict[str, Any]:
        return {
            "temperatures": list(self.temperatures),
            "choices": {key: ch.to_dict() for key, ch in self.choices.items()},
            "thresholds": dict(self.thresholds),
            "final_thresholds": dict(self.final_thresholds),
        }

    def load_mode_state(self, state: dict[str, Any]) -> None:
        self.temperatures = [float(t) for t in state["temperatures"]]
        self.choices = {
            (str(p), str(link), float(d)): ThresholdChoice(**ch)
            for (p, link, d), ch in state["choices"].items()
        }
        self.thresholds = {int(c): float(t) for c, t in state["thresholds"].items()}
        self.final_thresholds = {int(c): float(t) for c, t in state["final_thresholds"].items()}
