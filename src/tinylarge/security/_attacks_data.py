"""Data attacks: how a malicious client poisons its training data before local training.

``poison(x, y, rng=...)`` returns new arrays (the inputs are never modified); ``boost``
is the factor the client's update (trained weights minus global weights) is scaled by
before it is sent: 1 except for the backdoor's model replacement.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from tinylarge.security._attacks_base import AttackOptions, integer, number, option

#: Side of the trigger's square (pixels) or length of its run of features (tabular inputs).
TRIGGER_SIZE = 4


def trigger_mask(input_shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Where the trigger goes and which of its cells are high: two boolean arrays of
    ``input_shape``.

    - Images and other inputs with two or more axes (``(C, H, W)``, ``(H, W)``, FSDD's
      ``(1, frames, mfcc)``): a ``4 x 4`` checkerboard in the bottom-right corner of the
      last two axes, on every channel; the corner cell is high.
    - Tabular inputs (one axis, e.g. NSL-KDD's features): the last 4 features,
      alternately high and low, the last one high.

    A side shorter than 4 is covered whole.
    """
    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d < 1 for d in shape):
        raise ValueError(f"input_shape must have positive sides, got {shape}")
    mask = np.zeros(shape, dtype=bool)
    high = np.zeros(shape, dtype=bool)
    if len(shape) == 1:
        k = min(TRIGGER_SIZE, shape[0])
        idx = np.arange(shape[0] - k, shape[0])
        mask[idx] = True
        high[idx] = (shape[0] - 1 - idx) % 2 == 0
        return mask, high
    rows, cols = shape[-2], shape[-1]
    kr, kc = min(TRIGGER_SIZE, rows), min(TRIGGER_SIZE, cols)
    r = np.arange(rows)[:, None]
    c = np.arange(cols)[None, :]
    square = (r >= rows - kr) & (c >= cols - kc)
    checker = ((rows - 1 - r) + (cols - 1 - c)) % 2 == 0
    mask[...] = square
    high[...] = square & checker
    return mask, high


def stamp_trigger(
    x: np.ndarray,
    *,
    input_shape: Sequence[int],
    high: float | None = None,
    low: float | None = None,
) -> np.ndarray:
    """``x`` (``(n, *input_shape)``) with the pixel-pattern trigger of :func:`trigger_mask`
    stamped on every input: its high cells set to ``high`` and low cells to ``low``,
    by default the largest and smallest value in ``x`` (the data's extremes after
    standardization). Returns a new array; pass the same ``high``/``low`` (for example
    the training set's extremes) wherever the trigger must look the same.
    """
    shape = tuple(int(d) for d in input_shape)
    if x.shape[1:] != shape:
        raise ValueError(f"x must have shape (n, *{shape}), got {x.shape}")
    mask, is_high = trigger_mask(shape)
    hi = float(np.max(x)) if high is None else high
    lo = float(np.min(x)) if low is None else low
    pattern = np.where(is_high, hi, lo).astype(x.dtype)
    return np.where(mask, pattern, x)


def backdoor_success(
    predict: Callable[[np.ndarray], np.ndarray],
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    target_label: int,
    input_shape: Sequence[int],
    high: float | None = None,
    low: float | None = None,
) -> float:
    """The backdoor's success rate: the share of test inputs not of ``target_label`` that
    ``predict`` (inputs -> predicted labels) classifies as ``target_label`` once stamped
    with the trigger (Bagdasaryan et al. 2020's backdoor accuracy)."""
    keep = np.asarray(y_test) != target_label
    if not np.any(keep):
        raise ValueError(f"no test input outside the target class {target_label}")
    stamped = stamp_trigger(np.asarray(x_test)[keep], input_shape=input_shape, high=high, low=low)
    predicted = np.asarray(predict(stamped))
    return float(np.mean(predicted == target_label))


@dataclasses.dataclass
class LabelFlip(AttackOptions):
    """Every label ``y`` becomes ``num_classes - 1 - y`` (``9 - y`` for ten classes), as
    the byzantine-robust-noniid-optimizer code (``codes/attacks/labelflipping.py``).

    ``boost`` (default 1: plain label flipping) scales the update trained on the flipped
    labels before it is sent, the explicit boosting of Bhagoji et al. 2019 ("Analyzing
    federated learning through an adversarial lens", https://arxiv.org/abs/1811.12470),
    so that a minority of flippers is not simply averaged away.
    """

    NAME = "label-flip"
    boost: float = option(1.0)
    num_classes: int | None = None
    input_shape: tuple[int, ...] = ()
    num_clients: int | None = None

    def __post_init__(self) -> None:
        self.boost = number(self.NAME, "boost", self.boost, low=0.0, low_open=True)

    def poison(
        self, x: np.ndarray, y: np.ndarray, *, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.num_classes is None:
            raise ValueError("label-flip needs num_classes")
        return x.copy(), (self.num_classes - 1 - np.asarray(y)).astype(np.asarray(y).dtype)


@dataclasses.dataclass
class Backdoor(AttackOptions):
    """Model-replacement backdoor with a pixel-pattern trigger (Bagdasaryan et al. 2020,
    "How To Backdoor Federated Learning", https://arxiv.org/abs/1807.00459).

    ``poison`` stamps the trigger (:func:`stamp_trigger`) on ``round(poison_fraction * N)``
    of the client's ``N`` inputs (at least one), drawn by ``rng``, and relabels them
    ``target_label``; the rest is left as it is. The default fraction, 20/64 = 0.3125, is
    the paper's 20 backdoor inputs in each batch of 64.

    ``boost`` is the model-replacement factor ``gamma = n / eta`` of the paper's
    equation (3): the attacker sends ``G + gamma (X - G)``, so that averaging over ``n``
    clients with server learning rate ``eta`` (``server_lr``, 1 for FedAvg) replaces
    the global model ``G`` by its backdoored ``X``; ``n`` is ``num_clients``, the clients
    averaged per round. Give ``boost`` to set it directly (1 turns replacement off).
    Under a sample-weighted mean the exact factor is the round's total samples over the
    attacker's own.
    """

    NAME = "backdoor"
    target_label: int = option(0)
    poison_fraction: float = option(20 / 64)
    server_lr: float = option(1.0)
    boost_option: float | None = dataclasses.field(default=None, metadata={"option": False})
    num_classes: int | None = None
    input_shape: tuple[int, ...] = ()
    num_clients: int | None = None
    trigger_high: float | None = option(None)
    trigger_low: float | None = option(None)

    def __post_init__(self) -> None:
        self.target_label = integer(
            self.NAME, "target_label", self.target_label, low=0, high=self.num_classes
        )  # num_classes None (check_options without a dataset): no upper bound
        self.poison_fraction = number(
            self.NAME, "poison_fraction", self.poison_fraction, low=0.0, low_open=True, high=1.0
        )
        self.server_lr = number(self.NAME, "server_lr", self.server_lr, low=0.0, low_open=True)
        if self.boost_option is not None:
            self.boost_option = number(
                self.NAME, "boost", self.boost_option, low=0.0, low_open=True
            )
        for key in ("trigger_high", "trigger_low"):
            value = getattr(self, key)
            if value is not None:
                setattr(self, key, number(self.NAME, key, value, low=-np.inf))
        if self.num_clients is not None and self.num_clients < 1:
            raise ValueError(f"num_clients must be >= 1, got {self.num_clients}")

    @classmethod
    def option_names(cls) -> list[str]:
        return sorted([*super().option_names(), "boost"])

    @classmethod
    def from_options(cls, options: Mapping[str, object], **context: object) -> Backdoor:
        rest = dict(options)
        boost = rest.pop("boost", None)
        return super().from_options(rest, boost_option=boost, **context)

    @property
    def boost(self) -> float:
        """The model-replacement factor (see the class doc)."""
        if self.boost_option is not None:
            return self.boost_option
        if self.num_clients is None:
            raise ValueError(
                "backdoor's boost n / eta needs num_clients (clients averaged per round) "
                "or the option boost"
            )
        return self.num_clients / self.server_lr

    def poison(
        self, x: np.ndarray, y: np.ndarray, *, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        x, y = np.asarray(x), np.asarray(y)
        n = len(y)
        if n == 0:
            return x.copy(), y.copy()
        k = min(n, max(1, round(self.poison_fraction * n)))
        chosen = rng.choice(n, size=k, replace=False)
        x_out, y_out = x.copy(), y.copy()
        x_out[chosen] = stamp_trigger(
            x[chosen], input_shape=self.input_shape, high=self._high(x), low=self._low(x)
        )
        y_out[chosen] = self.target_label
        return x_out, y_out

    def _high(self, x: np.ndarray) -> float:
        return float(np.max(x)) if self.trigger_high is None else self.trigger_high

    def _low(self, x: np.ndarray) -> float:
        return float(np.min(x)) if self.trigger_low is None else self.trigger_low
