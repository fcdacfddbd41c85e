"""Knowledge distillation: Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network" (2015).

A student learns from a teacher's *soft targets*, the teacher's class probabilities at a raised
temperature ``T``, as well as from the labels:

    loss = alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * hard_loss(s, y)

with ``s`` and ``t`` the student's and teacher's logits. Softening by ``T`` shows the student how
the teacher ranks the wrong classes (the "dark knowledge"); the gradients of the soft term scale
as ``1 / T^2``, so the ``T^2`` factor keeps its weight against the hard term the same whichever
temperature is chosen (section 2 of the paper). ``alpha`` weighs the soft term: ``alpha = 1`` is
pure distillation, ``alpha = 0`` plain training on the labels. The KL divergence is averaged over
the batch (``batchmean``), the mean the hard cross-entropy takes too.

This module holds the loss only (torch alone); the
:class:`~epochal.callbacks.distillation.Distillation` callback runs the teacher inside the loop.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from epochal.utils import check_number

__all__ = ["DistillationLoss", "distillation_loss", "soft_target_loss"]


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(t / T) || softmax(s / T))``, averaged over the batch, in float32 at least.

    Raises:
        ValueError: when the two logits' shapes differ (a teacher of other classes).
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"distillation: student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ in shape; the teacher must predict the student's classes"
        )
    dtype = torch.promote_types(torch.promote_types(student_logits.dtype, teacher_logits.dtype), torch.float32)
    log_student = F.log_softmax(student_logits.to(dtype) / temperature, dim=-1)
    log_teacher = F.log_softmax(teacher_logits.to(dtype) / temperature, dim=-1)
    kl = F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    target: torch.Tensor,
    temperature: float = 4.0,
    alpha: float = 0.9,
    hard_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Hinton et al.'s loss: ``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * hard_loss(s, y)``.

    Args:
        student_logits: ``(N, K)`` logits.
        teacher_logits: as for ``student_logits``.
        target: what ``hard_loss`` takes (class indices, or soft targets after mixing).
        temperature: ``T`` (> 0); 1 leaves the probabilities as they are.
        alpha: the weight of the soft term, in [0, 1].
        hard_loss: the loss on the labels (default: cross-entropy).
    """
    return DistillationLoss(temperature, alpha, hard_loss)(student_logits, teacher_logits, target)


class DistillationLoss(nn.Module):
    """The distillation loss of a student against a teacher's logits and the labels.

    Args:
        temperature: ``T`` (> 0) of both softmaxes.
        alpha: the weight of the soft term in [0, 1]; the hard term gets ``1 - alpha``.
        hard_loss: the loss on the labels (default: ``nn.CrossEntropyLoss()``); a recipe's
            ``loss`` (label smoothing included) goes here.

    Examples:
        >>> loss_fn = DistillationLoss(temperature=4.0, alpha=0.9)
        >>> loss = loss_fn(student(x), teacher(x).detach(), y)
    """

    def __init__(
        self,
        temperature: float = 4.0,
        alpha: float = 0.9,
        hard_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ):
        super().__init__()
        self.temperature = check_number(temperature, "distillation temperature", low=0.0, low_inclusive=False)
        self.alpha = check_number(alpha, "distillation alpha", low=0.0, high=1.0)
        self.hard_loss = hard_loss if hard_loss is not None else nn.CrossEntropyLoss()

    def soft(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """The soft term ``T^2 * KL(softmax(t / T) || softmax(s / T))``."""
        return soft_target_loss(student_logits, teacher_logits, self.temperature)

    def combine(self, soft: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
        """``alpha * soft + (1 - alpha) * hard``."""
        return self.alpha * soft + (1.0 - self.alpha) * hard

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.combine(self.soft(student_logits, teacher_logits), self.hard_loss(student_logits, target))

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, alpha={self.alpha}"
