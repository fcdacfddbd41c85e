"""Losses: knowledge distillation (Hinton et al. 2015).

Example:
    >>> from epochal.losses import DistillationLoss
    >>> loss = DistillationLoss(temperature=4.0, alpha=0.9)(student_logits, teacher_logits, targets)
"""

from epochal.losses.distillation import DistillationLoss, distillation_loss, soft_target_loss

__all__ = ["DistillationLoss", "distillation_loss", "soft_target_loss"]
