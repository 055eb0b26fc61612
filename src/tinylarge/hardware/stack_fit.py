"""Fit of the inference-stack cost model to the published MLPerf Tiny latencies.

The model (docs/devices.md): one int8 inference of a model on a Cortex-M device takes

    cycles = sum_op W_op * cpm[stack, op] * k[core]  +  n_ops * ovh[stack] * k[core]
    latency = cycles / clock_hz

``W_op`` is the work of an operator class (MACs of convolutions, depthwise convolutions,
fully-connected layers; output elements of pooling, element-wise and other layers), counted
by tinylarge's own profiler from the reference ``.tflite`` files; ``n_ops`` the operators
executed. ``cpm[stack, op]`` are a stack's cycles per unit of work on a Cortex-M4F,
``ovh[stack]`` its cycles per operator, ``k[core]`` the core class's cycle factor (1 for
the M4F). Pooling, element-wise and other layers carry under 0.3% of the work of every
reference model, so the data cannot tell them apart: they take the depthwise rate
(memory-bound loops).

In log space ``log cpm[stack, op] = mu[op] + phi[family, op] + delta[stack, op]``, where
the family is the stack's name before ``@`` (``x-cube-ai@9.0`` -> ``x-cube-ai``). The fit
minimises the squared log error over the rows plus a ridge penalty on ``phi``,
``delta`` and ``log k`` (:data:`RIDGE`): a stack or core with few rows is pulled toward
the mean, a stack a board never ran is predicted from its family, and the leave-one-board-
out error (:func:`leave_one_board_out`) measures how well it transfers.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from tinylarge.hardware.mlperf import BENCHMARK_FILES, CORES, PublishedRow, fit_rows
from tinylarge.models.profile import ModelProfile

#: Work classes of the model; pool / elementwise / other are billed at the depthwise rate.
TERMS = ("conv", "depthwise_conv", "linear")
#: Cycles per executed operator on the reference core (dispatch, kernel set-up), fixed
#: rather than fitted: with one fully-connected model among the four, the data cannot tell
#: a per-operator cost from the fully-connected rate. 1000 cycles, as the catalogue's
#: ``op_overhead_s`` has always assumed.
OVERHEAD_CYCLES = 1000.0
#: The core class whose cycle factor is 1.
REFERENCE_CORE = "m4f"
#: Ridge weights (on log parameters): family deviation, version deviation, core factor.
RIDGE = {"family": 0.01, "stack": 0.01, "core": 0.1}


@dataclass(frozen=True)
class Features:
    """Work of one reference model per term of the model."""

    conv: float
    depthwise_conv: float
    linear: float
    #: executed operators
    ops: int

    def vector(self) -> np.ndarray:
        return np.array([self.conv, self.depthwise_conv, self.linear])


def features_of(profile: ModelProfile) -> Features:
    """The model's work per term: MACs by class, MAC-free layers at the depthwise rate,
    and one overhead per executed layer."""
    from tinylarge.hardware.cost import layer_work

    work = dict.fromkeys(("conv", "depthwise_conv", "linear"), 0.0)
    for layer in profile.layers:
        op = layer.op if layer.op in work else "depthwise_conv"
        work[op] += layer_work(layer)
    return Features(work["conv"], work["depthwise_conv"], work["linear"], len(profile.layers))


def benchmark_features(
    data_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Features]:
    """Features of the four reference models, profiled from the published files."""
    from tinylarge.data.paths import find_file
    from tinylarge.hardware.calibration import model_file
    from tinylarge.models.files import profile_file

    out = {}
    for benchmark, name in BENCHMARK_FILES.items():
        path, _ = find_file(model_file(name), data_dir=data_dir)
        out[benchmark] = features_of(profile_file(path))
    return out


def family(stack: str) -> str:
    """``x-cube-ai@9.0`` -> ``x-cube-ai``."""
    return stack.split("@", 1)[0]


@dataclass(frozen=True)
class StackModel:
    """Fitted parameters: cycles per unit of work and per operator on a Cortex-M4F.

    Attributes:
        cycles: stack -> term -> cycles (per MAC or output element; per operator for
            ``overhead``) on the reference core.
        family_cycles: the same per stack family (the prior of an unseen version).
        core_factor: core class -> cycle multiplier (1 for the M4F).
    """

    cycles: Mapping[str, Mapping[str, float]]
    family_cycles: Mapping[str, Mapping[str, float]]
    core_factor: Mapping[str, float]

    def stack_cycles(self, stack: str) -> Mapping[str, float]:
        """A stack's cycles per term; a stack the fit never saw takes its family's."""
        if stack in self.cycles:
            return self.cycles[stack]
        return self.family_cycles[family(stack)]

    def predict_s(self, stack: str, core: str, clock_hz: float, feats: Features) -> float:
        """Seconds of one inference."""
        c = self.stack_cycles(stack)
        cycles = math.fsum(float(getattr(feats, t)) * c[t] for t in TERMS)
        cycles += feats.ops * OVERHEAD_CYCLES
        return cycles * self.core_factor[core] / clock_hz


def fit(rows: Sequence[PublishedRow], feats: Mapping[str, Features]) -> StackModel:
    """Least squares in log space with the ridge prior (module docstring)."""
    stacks = sorted({r.stack for r in rows})
    families = sorted({family(s) for s in stacks})
    cores = [c for c in CORES if c != REFERENCE_CORE and any(r.core == c for r in rows)]
    n_t = len(TERMS)
    i_mu = 0
    i_fam = {f: n_t + n_t * j for j, f in enumerate(families)}
    base = n_t + n_t * len(families)
    i_stack = {s: base + n_t * j for j, s in enumerate(stacks)}
    i_core = {c: base + n_t * len(stacks) + j for j, c in enumerate(cores)}
    size = base + n_t * len(stacks) + len(cores)

    work = np.array([feats[r.benchmark].vector() for r in rows])
    fixed = np.array([feats[r.benchmark].ops * OVERHEAD_CYCLES for r in rows])
    log_target = np.log([r.latency_s * r.clock_hz for r in rows])
    fam_idx = np.array([i_fam[family(r.stack)] for r in rows])
    stack_idx = np.array([i_stack[r.stack] for r in rows])
    core_idx = np.array([i_core.get(r.core, -1) for r in rows])
    ridge = np.zeros(size)
    for f in families:
        ridge[i_fam[f] : i_fam[f] + n_t] = RIDGE["family"]
    for s in stacks:
        ridge[i_stack[s] : i_stack[s] + n_t] = RIDGE["stack"]
    for c in cores:
        ridge[i_core[c]] = RIDGE["core"]
    ridge = np.sqrt(ridge)

    def log_cycles(p: np.ndarray) -> np.ndarray:
        per_term = p[i_mu : i_mu + n_t] + np.stack(
            [p[fam_idx + t] + p[stack_idx + t] for t in range(n_t)], axis=1
        )
        core = np.where(core_idx >= 0, p[np.maximum(core_idx, 0)], 0.0)
        out: np.ndarray = np.log(np.sum(work * np.exp(per_term), axis=1) + fixed) + core
        return out

    def residuals(p: np.ndarray) -> np.ndarray:
        return np.concatenate([log_cycles(p) - log_target, ridge * p])

    start = np.zeros(size)
    start[i_mu : i_mu + n_t] = [0.7, 1.6, 1.0]  # about 2, 5 and 3 cycles per MAC
    solution = least_squares(residuals, start, method="lm").x

    def cycles_of(offset: np.ndarray) -> dict[str, float]:
        return {t: float(math.exp(solution[i_mu + k] + offset[k])) for k, t in enumerate(TERMS)}

    fam_cycles = {f: cycles_of(solution[i_fam[f] : i_fam[f] + n_t]) for f in families}
    stack_cycles = {
        s: cycles_of(
            solution[i_fam[family(s)] : i_fam[family(s)] + n_t]
            + solution[i_stack[s] : i_stack[s] + n_t]
        )
        for s in stacks
    }
    core_factor = {REFERENCE_CORE: 1.0}
    core_factor.update({c: float(math.exp(solution[i_core[c]])) for c in cores})
    return StackModel(stack_cycles, fam_cycles, core_factor)


@dataclass(frozen=True)
class Prediction:
    """A published row and the model's latency for it."""

    row: PublishedRow
    predicted_s: float
    #: boards other than this row's that published the row's stack (in the fit that
    #: predicted it)
    other_boards: int

    @property
    def error(self) -> float:
        """(predicted - published) / published."""
        return self.predicted_s / self.row.latency_s - 1.0


def predict_rows(
    model: StackModel, rows: Sequence[PublishedRow], feats: Mapping[str, Features]
) -> list[Prediction]:
    """The model's latency for each row (in-sample when the rows were fitted)."""
    boards: dict[str, set[str]] = {}
    for r in rows:
        boards.setdefault(r.stack, set()).add(r.device)
    return [
        Prediction(
            r,
            model.predict_s(r.stack, r.core, r.clock_hz, feats[r.benchmark]),
            len(boards[r.stack] - {r.device}),
        )
        for r in rows
    ]


def leave_one_board_out(
    rows: Sequence[PublishedRow], feats: Mapping[str, Features]
) -> list[Prediction]:
    """Every row predicted by a fit without its board (device id)."""
    out = []
    for board in sorted({r.device for r in rows}):
        train = [r for r in rows if r.device != board]
        model = fit(train, feats)
        seen: dict[str, set[str]] = {}
        for r in train:
            seen.setdefault(r.stack, set()).add(r.device)
        cores = set(model.core_factor)
        for r in rows:
            if r.device != board:
                continue
            if r.core not in cores or family(r.stack) not in model.family_cycles:
                continue  # the only board of its core class or stack family: nothing to transfer
            predicted = model.predict_s(r.stack, r.core, r.clock_hz, feats[r.benchmark])
            out.append(Prediction(r, predicted, len(seen.get(r.stack, set()))))
    return out


def median_abs(errors: Sequence[float]) -> float:
    """Median absolute relative error."""
    return statistics.median(abs(e) for e in errors) if errors else float("nan")


def fit_published(
    data_dir: str | os.PathLike[str] | None = None,
) -> tuple[StackModel, dict[str, Features]]:
    """The model fitted to every fit row (:func:`~tinylarge.hardware.mlperf.fit_rows`)."""
    feats = benchmark_features(data_dir)
    return fit(fit_rows(), feats), feats
