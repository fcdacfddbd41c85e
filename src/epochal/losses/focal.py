"""Focal loss: cross-entropy that down-weights the examples the model already gets right.

Lin, Goyal, Girshick, He and Dollár, "Focal Loss for Dense Object Detection" (ICCV 2017), eq. 5:
``FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t)``, where ``p_t`` is the probability the model gives
the true class. ``gamma > 0`` shrinks the loss of well-classified examples (``p_t`` near 1), so
the many easy examples of the majority class stop dominating the gradient; ``gamma = 0`` is
cross-entropy. ``alpha_t`` weighs each class (the paper's ``alpha`` for the positive class and
``1 - alpha`` for the negatives); it combines with the prior-initialised output bias of the same
paper (``model.init_bias: priors``, :func:`epochal.models.init.init_output_bias`).

Two forms:

* :class:`FocalLoss` (registered as ``focal``): softmax over classes, one class index per sample
  (binary problems with a two-output head, and multi-class);
* :class:`SigmoidFocalLoss` (``sigmoid_focal``): one sigmoid per output with 0/1 targets (a
  one-output binary head, or multi-label data), the form the paper uses for detection.

Both average over samples (and, for the sigmoid form, outputs) with ``reduction="mean"``, as
``torchvision.ops.sigmoid_focal_loss`` does; with class weights that differs from
:class:`torch.nn.CrossEntropyLoss`'s weighted mean, which divides by the sum of the weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from epochal.losses.class_weights import balanced_class_weights
from epochal.losses.registry import register_loss

__all__ = ["FocalLoss", "SigmoidFocalLoss"]

_REDUCTIONS = ("mean", "sum", "none")


def _check(gamma: float, reduction: str) -> None:
    if isinstance(gamma, bool) or not isinstance(gamma, int | float) or gamma < 0:
        raise ValueError(f"gamma must be a number >= 0 (0 is cross-entropy), got {gamma!r}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    return loss.sum() if reduction == "sum" else loss


def _class_alpha(alpha: float | Sequence[float] | torch.Tensor | None) -> torch.Tensor | None:
    """Per-class weights: a sequence as given, a float ``a`` as the paper's ``[1 - a, a]``."""
    if alpha is None:
        return None
    if isinstance(alpha, int | float) and not isinstance(alpha, bool):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"a single alpha weighs class 1 (1 - alpha class 0); it must be in [0, 1], got {alpha}")
        return torch.tensor([1.0 - alpha, float(alpha)])
    weights = torch.as_tensor(alpha, dtype=torch.float32).flatten()
    if weights.numel() == 0 or bool((weights < 0).any()):
        raise ValueError(f"alpha must hold one weight >= 0 per class, got {alpha!r}")
    return weights


class FocalLoss(nn.Module):
    """Softmax focal loss of logits ``(N, C)`` and class indices ``(N,)``.

    Args:
        alpha: class weights ``alpha_t``: one per class, or a float ``a`` for two classes, meaning
            ``a`` for class 1 and ``1 - a`` for class 0 (the paper's convention); None weighs
            every class 1. Recipes give a list or ``balanced`` (``n / (k * n_c)``).
        gamma: the focusing parameter; 0 gives cross-entropy, the paper uses 2.
        reduction: ``mean`` over samples, ``sum``, or ``none`` (one value per sample).

    Examples:
        >>> loss = FocalLoss(alpha=[0.25, 0.75], gamma=2.0)
        >>> value = loss(torch.tensor([[2.0, -1.0], [0.0, 1.0]]), torch.tensor([0, 1]))
    """

    def __init__(
        self,
        alpha: float | Sequence[float] | torch.Tensor | None = None,
        gamma: float = 2.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        _check(gamma, reduction)
        self.gamma, self.reduction = float(gamma), reduction
        self.register_buffer("alpha", _class_alpha(alpha))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.ndim != 2 or target.shape != logits.shape[:1]:
            raise ValueError(
                f"FocalLoss takes logits (N, C) and class indices (N,), got {tuple(logits.shape)} and "
                f"{tuple(target.shape)}; for 0/1 targets use SigmoidFocalLoss"
            )
        log_p = F.log_softmax(logits.float(), dim=1)
        log_pt = log_p.gather(1, target.long().unsqueeze(1)).squeeze(1)
        loss = -((1.0 - log_pt.exp()).clamp_min(0.0) ** self.gamma) * log_pt
        if self.alpha is not None:
            if self.alpha.numel() != logits.shape[1]:
                raise ValueError(f"alpha has {self.alpha.numel()} weights but the logits {logits.shape[1]} classes")
            loss = loss * self.alpha[target.long()]
        return _reduce(loss, self.reduction)


class SigmoidFocalLoss(nn.Module):
    """Sigmoid focal loss of logits and 0/1 targets of the same shape (one sigmoid per output).

    Args:
        alpha: weight of the positive terms (``1 - alpha`` for the negatives); the paper uses
            0.25 with ``gamma=2``; None weighs both 1.
        gamma: the focusing parameter; 0 gives binary cross-entropy.
        reduction: ``mean`` over every element, ``sum``, or ``none``.

    Examples:
        >>> loss = SigmoidFocalLoss(alpha=0.25, gamma=2.0)
        >>> value = loss(torch.tensor([[3.0], [-1.0]]), torch.tensor([[1.0], [0.0]]))
    """

    def __init__(self, alpha: float | None = None, gamma: float = 2.0, reduction: str = "mean") -> None:
        super().__init__()
        _check(gamma, reduction)
        if alpha is not None and (isinstance(alpha, bool) or not 0.0 <= float(alpha) <= 1.0):
            raise ValueError(f"alpha weighs the positive terms; it must be in [0, 1] or None, got {alpha!r}")
        self.alpha = None if alpha is None else float(alpha)
        self.gamma, self.reduction = float(gamma), reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape != target.shape:
            raise ValueError(
                f"SigmoidFocalLoss takes logits and 0/1 targets of one shape, got {tuple(logits.shape)} "
                f"and {tuple(target.shape)}; for class indices use FocalLoss"
            )
        logits, target = logits.float(), target.float()
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        p = torch.sigmoid(logits)
        p_t = p * target + (1 - p) * (1 - target)
        loss = bce * (1 - p_t) ** self.gamma
        if self.alpha is not None:
            loss = loss * (self.alpha * target + (1 - self.alpha) * (1 - target))
        return _reduce(loss, self.reduction)


# alpha is the per-class weight argument, so recipes may give it as a list or as ``balanced``.
register_loss("focal", FocalLoss, {"alpha": balanced_class_weights}, targets="class_indices")
register_loss("sigmoid_focal", SigmoidFocalLoss, targets="multi_hot")
