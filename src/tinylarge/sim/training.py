"""Training: one loop, one optimizer factory and the losses the schemes compose.

Everything that trains a model in tinylarge runs :func:`run_steps`: a client's
local update (:func:`fit`), the server's teacher and its distilled student,
FedGKT's and FedDF's server models, split learning's parts, a device's
trainable part in transfer learning, mutual learning's two models and LoRA
adapters. What differs is what the caller plugs in, never a copy of the loop:

- the loss of one mini-batch (cross-entropy, plus Hinton's distillation term
  to a teacher's logits, FedProx's proximal term, a joint loss over exits...);
- the optimizers (one per part in split learning, one per model in mutual
  learning), all made by :func:`make_optimizer` from one :class:`TrainSettings`;
- a hook after every step (magnitude pruning re-applies its masks there).

Determinism: the caller seeds torch and a ``torch.Generator`` that shuffles
(:func:`seeded`), and runs one intra-op thread on devices, so every backend
gives the same weights for the same task.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import torch
from torch import nn

from tinylarge.models.weights import Weights, get_weights, set_weights
from tinylarge.models.zoo import ModelSpec
from tinylarge.registry import Registry

if TYPE_CHECKING:
    from tinylarge.security.dpsgd import DpSgdSpec, PrivateTraining

OptimizerName = Literal["sgd", "momentum", "adam"]
Schedule = Literal["constant", "cosine"]


@dataclass(frozen=True)
class TrainSettings:
    """How to train: the optimizer, its hyper-parameters, batching and the learning-rate schedule.

    Attributes:
        epochs: passes over the data.
        batch_size: samples per optimizer step.
        lr: learning rate (of every parameter group without its own).
        optimizer: ``"sgd"``, ``"momentum"`` (SGD with ``momentum``) or ``"adam"``.
        momentum: momentum of ``"momentum"``.
        weight_decay: L2 penalty.
        nesterov: Nesterov momentum (``"momentum"`` only).
        amsgrad: the AMSGrad variant of Adam.
        schedule: ``"constant"``, or ``"cosine"`` decay to 0 over all steps of one call
            (Loshchilov and Hutter, SGDR, https://arxiv.org/abs/1608.03983).
    """

    epochs: int = 1
    batch_size: int = 32
    lr: float = 0.05
    optimizer: OptimizerName = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    nesterov: bool = False
    amsgrad: bool = False
    schedule: Schedule = "constant"

    def with_(self, **changes: Any) -> TrainSettings:
        """A copy with some fields changed."""
        return replace(self, **changes)


Params = nn.Module | Iterable[nn.Parameter] | Iterable[dict[str, Any]]


def make_optimizer(params: Params, s: TrainSettings) -> torch.optim.Optimizer:
    """The optimizer of ``s`` over a module's trainable parameters, a parameter list or groups."""
    if isinstance(params, nn.Module):
        chosen: Any = [p for p in params.parameters() if p.requires_grad]
    else:
        chosen = list(params)
    if s.optimizer == "adam":
        return torch.optim.Adam(chosen, lr=s.lr, weight_decay=s.weight_decay, amsgrad=s.amsgrad)
    momentum = s.momentum if s.optimizer == "momentum" else 0.0
    return torch.optim.SGD(
        chosen,
        lr=s.lr,
        momentum=momentum,
        weight_decay=s.weight_decay,
        nesterov=s.nesterov and momentum > 0,
    )


def seeded(seed: int, *, threads: int = 1) -> torch.Generator:
    """Make a task deterministic: ``threads`` intra-op threads, torch seeded; a shuffling generator.

    Device tasks use one thread; server work uses ``engine.threads`` (the same
    on every backend, since the server's work always runs in the driver).
    """
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if torch.cuda.is_available():
        torch.manual_seed(seed)
    else:  # the CPU generator alone: torch.manual_seed also queues lazy seeding of every
        # accelerator backend, formatting a stack trace each time (~3 ms a call)
        torch.default_generator.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


class EpochBatches(Protocol):
    """Where a loop's mini-batches come from: each iteration is one fresh epoch of index
    tensors, and ``len`` is its number of steps (the same every epoch)."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[torch.Tensor]: ...


@dataclass(frozen=True)
class Shuffled:
    """Shuffled mini-batches of ``batch_size`` over ``n`` samples (the last one smaller): a new
    permutation from ``gen`` every epoch."""

    n: int
    batch_size: int
    gen: torch.Generator

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size) if self.n else 0

    def __iter__(self) -> Iterator[torch.Tensor]:
        order = torch.randperm(self.n, generator=self.gen)
        for i in range(0, self.n, self.batch_size):
            yield order[i : i + self.batch_size]


@dataclass(frozen=True)
class TrainStats:
    """What a call of :func:`run_steps` did: its steps, the examples they took (with repeats),
    the mean loss and the last epoch's mean loss (over steps with at least one example)."""

    steps: int
    loss: float
    last_epoch_loss: float
    examples: int = 0


#: The loss of one mini-batch of indices: a tensor to back-propagate, or that tensor and the
#: value to report (mutual learning reports the private model's loss of a joint step).
StepLoss = Callable[[torch.Tensor], "torch.Tensor | tuple[torch.Tensor, torch.Tensor]"]


def run_steps(
    loss_of: StepLoss,
    optimizers: torch.optim.Optimizer | Sequence[torch.optim.Optimizer],
    *,
    n: int,
    settings: TrainSettings,
    gen: torch.Generator,
    epochs: int | None = None,
    after_step: Callable[[], None] | None = None,
    batches: EpochBatches | None = None,
) -> TrainStats:
    """The training loop: ``epochs`` (default ``settings.epochs``) shuffled passes over ``n``
    samples in mini-batches of ``settings.batch_size``; each step zeroes every optimizer's
    gradients, back-propagates ``loss_of(batch indices)``, steps every optimizer and calls
    ``after_step``. With the cosine schedule each parameter group's rate decays from its own
    initial value to 0 over the call's steps.

    ``batches`` replaces the shuffled passes (DP-SGD's Poisson-sampled batches, see
    :func:`fit`). A batch may then be empty: it is still a step (DP-SGD's noise is added
    whatever the batch), and its loss, the mean of nothing, is left out of the means."""
    opts = [optimizers] if isinstance(optimizers, torch.optim.Optimizer) else list(optimizers)
    passes = settings.epochs if epochs is None else epochs
    epoch_batches = batches if batches is not None else Shuffled(n, settings.batch_size, gen)
    per_epoch = len(epoch_batches)
    total_steps = passes * per_epoch
    cosine = settings.schedule == "cosine"
    # a group's schedule starts from its rate when first scheduled (``initial_lr``, as
    # torch's schedulers keep it), also when the caller keeps the optimizer across calls
    base = (
        [[g.setdefault("initial_lr", g["lr"]) for g in o.param_groups] for o in opts]
        if cosine
        else []
    )
    total = epoch_total = 0.0
    steps = examples = counted = epoch_counted = 0
    for idx in (i for _ in range(passes) for i in epoch_batches):
        if steps % per_epoch == 0:
            epoch_total, epoch_counted = 0.0, 0
        if cosine:
            factor = 0.5 * (1.0 + math.cos(math.pi * steps / total_steps))
            for opt, lrs in zip(opts, base, strict=True):
                for group, lr in zip(opt.param_groups, lrs, strict=True):
                    group["lr"] = lr * factor
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        out = loss_of(idx)
        loss, report = out if isinstance(out, tuple) else (out, out)
        loss.backward()  # type: ignore[no-untyped-call]
        for opt in opts:
            opt.step()
        if after_step is not None:
            after_step()
        steps += 1
        examples += len(idx)
        if len(idx):
            value = float(report.detach())
            total += value
            epoch_total += value
            counted += 1
            epoch_counted += 1
    return TrainStats(steps, total / max(counted, 1), epoch_total / max(epoch_counted, 1), examples)


# -- losses ------------------------------------------------------------------------------------
def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Hinton's soft term: ``T^2 KL(softmax(z_t / T) || softmax(z_s / T))``, batch mean.

    Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural Network",
    https://arxiv.org/abs/1503.02531. The teacher side is detached; the ``T^2``
    factor keeps the soft term's gradients on the scale of cross-entropy's.
    """
    t = temperature
    log_p = nn.functional.log_softmax(student_logits / t, dim=1)
    q = nn.functional.softmax(teacher_logits.detach() / t, dim=1)
    return nn.functional.kl_div(log_p, q, reduction="batchmean") * (t * t)


def supervised_loss(
    out: torch.Tensor,
    labels: torch.Tensor | None,
    teacher: torch.Tensor | None,
    *,
    ce_weight: float = 1.0,
    kd_weight: float = 0.0,
    temperature: float = 1.0,
) -> torch.Tensor:
    """``ce_weight * CE(out, labels) + kd_weight * kd_loss(out, teacher)``; a term whose
    weight is 0 or whose target is missing is left out (not multiplied by 0)."""
    terms: list[torch.Tensor] = []
    if labels is not None and ce_weight > 0:
        ce = nn.functional.cross_entropy(out, labels)
        terms.append(ce if ce_weight == 1.0 else ce_weight * ce)
    if teacher is not None and kd_weight > 0:
        soft = kd_loss(out, teacher, temperature)
        terms.append(soft if kd_weight == 1.0 else kd_weight * soft)
    if not terms:
        raise ValueError(
            "a training loss needs labels (ce_weight > 0) or a teacher (kd_weight > 0)"
        )
    return terms[0] if len(terms) == 1 else terms[0] + terms[1]


def train_supervised(
    model: nn.Module,
    xs: torch.Tensor,
    ys: torch.Tensor | None,
    *,
    settings: TrainSettings,
    gen: torch.Generator,
    teacher: torch.Tensor | None = None,
    ce_weight: float = 1.0,
    kd_weight: float = 0.0,
    temperature: float = 1.0,
    optimizer: torch.optim.Optimizer | None = None,
    epochs: int | None = None,
    after_step: Callable[[], None] | None = None,
) -> TrainStats:
    """Train ``model`` in place on ``xs`` with cross-entropy to ``ys`` and/or distillation to
    the ``teacher`` logits of the same rows (see :func:`supervised_loss`). ``optimizer``
    (kept across calls by the caller) defaults to a fresh one of ``settings``."""
    model.train()
    opt = optimizer if optimizer is not None else make_optimizer(model, settings)

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        return supervised_loss(
            model(xs[idx]),
            None if ys is None else ys[idx],
            None if teacher is None else teacher[idx],
            ce_weight=ce_weight,
            kd_weight=kd_weight,
            temperature=temperature,
        )

    return run_steps(
        loss_of, opt, n=len(xs), settings=settings, gen=gen, epochs=epochs, after_step=after_step
    )


# -- prediction -------------------------------------------------------------------------------
def tensor(a: np.ndarray) -> torch.Tensor:
    """A contiguous numpy array as a tensor sharing its memory."""
    return torch.from_numpy(np.ascontiguousarray(a))


@torch.no_grad()
def predict_logits(model: nn.Module, x: np.ndarray, *, batch_size: int = 1024) -> np.ndarray:
    """Eval-mode outputs of ``model`` on ``x`` as float32 numpy (``(0, 0)`` for no rows)."""
    model.eval()
    outs = [model(tensor(x[i : i + batch_size])).numpy() for i in range(0, len(x), batch_size)]
    if not outs:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(outs).astype(np.float32, copy=False)


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    """Share of rows of ``logits`` whose argmax is the label (0 for no rows)."""
    return float((np.argmax(logits, axis=1) == y).mean()) if len(y) else 0.0


def mean_cross_entropy(logits: np.ndarray, y: np.ndarray) -> float:
    """Mean cross-entropy of ``logits`` against the labels ``y``."""
    return float(nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y)))


def build(spec: ModelSpec, weights: Sequence[np.ndarray] | None = None) -> nn.Module:
    """``spec``'s model, with ``weights`` loaded if given."""
    model = spec.build()
    if weights is not None:
        set_weights(model, weights)
    return model


def spec_key(spec: ModelSpec) -> tuple[Any, ...]:
    """What identifies ``spec``'s architecture (its options' dict made hashable)."""
    known = _SPEC_KEYS.get(id(spec))
    if known is not None and known[0] is spec:
        return known[1]
    key = (spec.name, spec.input_shape, spec.num_classes, repr(sorted(spec.options.items())))
    if len(_SPEC_KEYS) < 1024:  # a run has a handful of specs; each is kept alive here
        _SPEC_KEYS[id(spec)] = (spec, key)
    return key


_SPEC_KEYS: dict[int, tuple[ModelSpec, tuple[Any, ...]]] = {}


#: One model per architecture per process, reused by :func:`reused_model`: with its state
#: tensors in state-dict order.
_MODELS: dict[tuple[Any, ...], tuple[nn.Module, list[torch.Tensor]]] = {}


@torch.no_grad()
def reused_model(spec: ModelSpec, weights: Sequence[np.ndarray]) -> nn.Module:
    """``spec``'s model with ``weights`` loaded, built once per process and architecture and
    reloaded on every call (building a model and initialising weights that are overwritten
    at once cost more than training a tiny client). Every parameter and buffer is
    overwritten, so nothing of a previous call survives; the caller must not keep it."""
    key = spec_key(spec)
    cached = _MODELS.get(key)
    if cached is None:
        model = spec.build()
        cached = _MODELS[key] = (model, list(model.state_dict().values()))
    model, state = cached
    if len(state) != len(weights):
        raise ValueError(f"model has {len(state)} tensors, got {len(weights)}")
    for t, w in zip(state, weights, strict=True):
        a = np.asarray(w)
        if a.shape != t.shape:  # copy_ would broadcast where load_state_dict refuses
            raise ValueError(f"weights of shape {a.shape} for a tensor of {tuple(t.shape)}")
        t.copy_(torch.from_numpy(a if a.flags.writeable else a.copy()))
    for p in model.parameters():
        p.grad = None
    return model


def init_weights(spec: Any, *, seed: int) -> Weights:
    """Fresh weights of anything with a ``build()`` (zoo or early-exit spec), from ``seed``."""
    torch.manual_seed(seed)
    return get_weights(spec.build())


@torch.no_grad()
def evaluate(
    spec: ModelSpec, weights: Weights, x: np.ndarray, y: np.ndarray, *, batch_size: int = 1024
) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of ``spec``'s model with ``weights`` on ``(x, y)``."""
    torch.set_num_threads(1)
    model = build(spec, weights)
    model.eval()
    correct, loss = 0, 0.0
    for i in range(0, len(y), batch_size):
        xb, yb = tensor(x[i : i + batch_size]), tensor(y[i : i + batch_size])
        out = model(xb)
        loss += float(nn.functional.cross_entropy(out, yb, reduction="sum"))
        correct += int((out.argmax(1) == yb).sum())
    n = max(len(y), 1)
    return correct / n, loss / n


# -- a client's local update (FedAvg and its family) -------------------------------------------
#: A client objective: (model, inputs, labels, starting params, options) -> loss tensor.
LossFn = Callable[
    [nn.Module, torch.Tensor, torch.Tensor, list[torch.Tensor], dict[str, float]], torch.Tensor
]
TRAINERS: Registry[LossFn] = Registry("trainer")


@TRAINERS.register("erm")
def erm_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    start: list[torch.Tensor],
    options: dict[str, float],
) -> torch.Tensor:
    """Plain empirical risk: cross-entropy on the local batch (FedAvg)."""
    return nn.functional.cross_entropy(model(x), y)


@TRAINERS.register("prox")
def prox_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    start: list[torch.Tensor],
    options: dict[str, float],
) -> torch.Tensor:
    """FedProx local objective: cross-entropy plus ``mu/2 * ||w - w_global||^2``.

    Li et al., "Federated Optimization in Heterogeneous Networks", MLSys 2020,
    https://arxiv.org/abs/1812.06127
    """
    mu = options["mu"]
    prox = sum(((p - s) ** 2).sum() for p, s in zip(model.parameters(), start, strict=True))
    return nn.functional.cross_entropy(model(x), y) + 0.5 * mu * prox


@dataclass(frozen=True)
class FitTask:
    """One client's local training job in one round."""

    client: int
    round: int
    seed: int
    spec: ModelSpec
    weights: Weights
    indices: np.ndarray
    settings: TrainSettings
    trainer: str = "erm"
    trainer_options: dict[str, float] = field(default_factory=dict)
    #: Train with sample-level DP-SGD (``privacy.dpsgd``): see :func:`fit`.
    dpsgd: DpSgdSpec | None = None
    #: A malicious client's data attack, ``(name, options)`` of
    #: :data:`tinylarge.security.attacks.DATA_ATTACKS`: its data is poisoned before training.
    poison: tuple[str, dict[str, Any]] | None = None


@dataclass(frozen=True)
class FitResult:
    """What a client sends back: new weights, its sample count and mean training loss; and
    what its training did: optimizer steps, and examples processed (with repeats)."""

    client: int
    weights: Weights
    num_samples: int
    loss: float
    steps: int = 0
    examples: int = 0


class _PoissonBatches:
    """The epochs of a :class:`~tinylarge.security.dpsgd.PrivateTraining` as index batches."""

    def __init__(self, private: PrivateTraining) -> None:
        self._private = private

    def __len__(self) -> int:
        return len(self._private.data_loader)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self._private.batch_indices()


def fit(task: FitTask, x: np.ndarray, y: np.ndarray) -> FitResult:
    """Train a fresh copy of the model on ``x[task.indices]`` and return its weights.

    Deterministic for a given task: one intra-op thread and a generator seeded
    from ``task.seed`` for shuffling.

    With ``task.dpsgd`` the same loop runs DP-SGD (Abadi et al. 2016, with Opacus,
    :func:`tinylarge.security.dpsgd.make_private`): each step's batch is a Poisson sample of
    the client's ``N`` examples at rate ``q = batch_size / N``, an epoch is ``floor(1 / q)``
    steps, each example's gradient is clipped to ``max_grad_norm`` and Gaussian noise is
    added to their sum; the sampling and the noise are seeded from ``task.seed``, so every
    backend gives the same weights. The trainer's loss must be a mean over the batch's
    examples (``erm``'s is).
    """
    if task.dpsgd is None:  # Opacus wraps the model it trains: DP-SGD gets a fresh one
        model = reused_model(task.spec, task.weights)
    else:
        model = build(task.spec, task.weights)
    gen = seeded(task.seed)  # after the model is built: its initialisation draws nothing here
    model.train()
    start = [p.detach().clone() for p in model.parameters()]
    loss_fn = TRAINERS[task.trainer]
    x_local, y_local = x[task.indices], y[task.indices]
    if task.poison is not None:
        from tinylarge.security.attacks import make_data_attack

        name, options = task.poison
        attack = make_data_attack(
            name, options, num_classes=task.spec.num_classes, input_shape=task.spec.input_shape
        )
        x_local, y_local = attack.poison(x_local, y_local, rng=np.random.default_rng(task.seed))
    xs, ys = tensor(x_local), tensor(y_local)
    n = len(task.indices)
    optimizer = make_optimizer(model, task.settings)
    private: PrivateTraining | None = None
    if task.dpsgd is not None and n > 0:
        from torch.utils.data import TensorDataset

        from tinylarge.security.dpsgd import make_private, poisson_sample_rate

        private = make_private(
            model,
            optimizer,
            TensorDataset(xs, ys),
            task.dpsgd,
            seed=task.seed,
            batch_size=task.settings.batch_size,
            sample_rate=poisson_sample_rate(n, task.settings.batch_size),
        )
    with warnings.catch_warnings():
        # Opacus's hooks on the first layer, whose input needs no gradient: torch warns that
        # its full backward hook fires for the outputs only, which is all Opacus uses
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        stats = run_steps(
            lambda idx: loss_fn(model, xs[idx], ys[idx], start, task.trainer_options),
            optimizer if private is None else private.optimizer,
            n=n,
            settings=task.settings,
            gen=gen,
            batches=None if private is None else _PoissonBatches(private),
        )
    if private is not None:
        private.close()
    return FitResult(task.client, get_weights(model), n, stats.loss, stats.steps, stats.examples)
