"""Losses: the registry recipes build from, class weights, and regression losses for one-output heads.

Example:
    >>> from epochal.losses import LOSSES
    >>> loss = LOSSES["cross_entropy"].build({"weight": "balanced"}, counts=[90, 10], n_samples=100)
"""

from epochal.losses.class_weights import (
    BALANCED,
    balanced_class_weights,
    balanced_pos_weight,
    class_weight_tensor,
)
from epochal.losses.focal import FocalLoss, SigmoidFocalLoss  # registers focal, sigmoid_focal
from epochal.losses.registry import LOSSES, LossEntry, register_loss
from epochal.losses.regression import L1Loss, MSELoss, SmoothL1Loss

__all__ = [
    "BALANCED",
    "LOSSES",
    "FocalLoss",
    "L1Loss",
    "LossEntry",
    "MSELoss",
    "SigmoidFocalLoss",
    "SmoothL1Loss",
    "balanced_class_weights",
    "balanced_pos_weight",
    "class_weight_tensor",
    "register_loss",
]
