"""Losses: the registry recipes build from, class weights, regression losses for one-output heads,
and knowledge distillation (Hinton et al. 2015).

Examples:
    >>> from epochal.losses import LOSSES, DistillationLoss
    >>> loss = LOSSES["cross_entropy"].build({"weight": "balanced"}, counts=[90, 10], n_samples=100)
    >>> soft = DistillationLoss(temperature=4.0, alpha=0.9)(student_logits, teacher_logits, targets)
"""

from epochal.losses.class_weights import (
    BALANCED,
    balanced_class_weights,
    balanced_pos_weight,
    class_weight_tensor,
)
from epochal.losses.distillation import DistillationLoss, distillation_loss, soft_target_loss
from epochal.losses.focal import FocalLoss, SigmoidFocalLoss  # registers focal, sigmoid_focal
from epochal.losses.registry import DEFAULT_LOSSES, LOSSES, LossEntry, register_loss
from epochal.losses.regression import L1Loss, MSELoss, SmoothL1Loss

__all__ = [
    "BALANCED",
    "DEFAULT_LOSSES",
    "LOSSES",
    "DistillationLoss",
    "FocalLoss",
    "L1Loss",
    "LossEntry",
    "MSELoss",
    "SigmoidFocalLoss",
    "SmoothL1Loss",
    "balanced_class_weights",
    "balanced_pos_weight",
    "class_weight_tensor",
    "distillation_loss",
    "register_loss",
    "soft_target_loss",
]
