"""Knowledge distillation: a large teacher's softened outputs train a tiny student.

Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural Network",
NIPS 2014 Deep Learning Workshop, https://arxiv.org/abs/1503.02531. The
student minimises

    alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))  +  (1 - alpha) * CE(z_s, y)

where ``z_t`` and ``z_s`` are the teacher's and the student's logits and ``T``
the temperature. The ``T^2`` factor keeps the soft term's gradients on the
scale of the hard term's as ``T`` changes (Hinton et al., section 2). This is
the "LargeML -> TinyML" direction of the survey (Vu et al., arXiv 2505.15854,
https://arxiv.org/abs/2505.15854): the server's large model makes a model
small enough for a microcontroller.

The soft term alone is :func:`tinylarge.sim.training.kd_loss` (FedGKT, FML,
FedDF and FFM weigh it their own way); the combined loss is
:func:`tinylarge.sim.training.supervised_loss` with ``ce_weight = 1 - alpha``
and ``kd_weight = alpha``, which is what the one training loop trains with.
The teacher is frozen: its logits on the training set are computed once
(:func:`tinylarge.compress.train.predict_logits`) and reused every epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tinylarge.errors import TinylargeError
from tinylarge.sim.training import kd_loss, supervised_loss

__all__ = ["KDConfig", "distillation_loss", "kd_loss"]


@dataclass(frozen=True, kw_only=True)
class KDConfig:
    """Distillation hyper-parameters.

    Attributes:
        temperature: softmax temperature ``T`` (> 0); larger exposes more of
            the teacher's "dark knowledge" about similar classes.
        alpha: weight of the soft (teacher) term in [0, 1]; ``1 - alpha`` goes
            to cross-entropy on the hard labels.
    """

    temperature: float = 2.0
    alpha: float = 0.5

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise TinylargeError(f"distillation temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise TinylargeError(f"distillation alpha must be in [0, 1], got {self.alpha}")

    @property
    def ce_weight(self) -> float:
        """Weight of cross-entropy on the labels: ``1 - alpha``."""
        return 1.0 - self.alpha

    @property
    def kd_weight(self) -> float:
        """Weight of the soft term: ``alpha``."""
        return self.alpha


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """Hinton's loss, batch mean: ``alpha T^2 KL(p_t^T || p_s^T) + (1 - alpha) CE(z_s, y)``.

    A term whose weight is 0 is left out (``alpha = 1``: the soft term alone).

    >>> z = torch.tensor([[2.0, 0.0]])
    >>> float(distillation_loss(z, z, torch.tensor([0]), temperature=2.0, alpha=1.0))
    0.0
    """
    kd = KDConfig(temperature=temperature, alpha=alpha)
    return supervised_loss(
        student_logits,
        labels,
        teacher_logits,
        ce_weight=kd.ce_weight,
        kd_weight=kd.kd_weight,
        temperature=kd.temperature,
    )
