"""Output-bias initialisation from class frequencies.

Lin et al., "Focal Loss for Dense Object Detection" (ICCV 2017) and Karpathy's "A Recipe for
Training Neural Networks" (2019): start the final bias at the class prior, so the untrained model
predicts the base rates instead of uniform probabilities. That removes the large, useless loss of
the first iterations ("hockey stick") on imbalanced data.

* softmax (single-label): ``bias_c = log(p_c)`` (log-priors; softmax of them is ``p``);
* sigmoid (multi-label): ``bias_c = log(p_c / (1 - p_c))`` (log-odds; sigmoid of them is ``p_c``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["class_priors_from_targets", "init_output_bias", "output_layer"]


def output_layer(model: nn.Module) -> nn.Linear:
    """The final linear layer: ``model.head.fc`` when present, else the last ``nn.Linear``."""
    head = getattr(model, "head", None)
    fc = getattr(head, "fc", None) if head is not None else None
    if isinstance(fc, nn.Linear):
        return fc
    if isinstance(head, nn.Linear):
        return head
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear output layer")
    return linears[-1]


def class_priors_from_targets(targets: torch.Tensor, num_classes: int, multilabel: bool = False) -> torch.Tensor:
    """Class frequencies from training targets.

    Args:
        targets: class indices of shape (N,) for single-label data, or a 0/1 matrix (N, C) for
            multi-label data.
        num_classes: number of classes C.
        multilabel: whether ``targets`` is a multi-hot matrix.

    Returns:
        A float tensor of C frequencies (summing to 1 for single-label data).
    """
    if multilabel:
        if targets.ndim != 2 or targets.shape[1] != num_classes:
            raise ValueError(f"multi-label targets must have shape (N, {num_classes}), got {tuple(targets.shape)}")
        return targets.float().mean(0)
    if targets.ndim != 1:
        raise ValueError(f"single-label targets must have shape (N,), got {tuple(targets.shape)}")
    if targets.numel() and (targets.min() < 0 or targets.max() >= num_classes):
        raise ValueError(f"targets must be class indices in [0, {num_classes})")
    counts = torch.bincount(targets.long(), minlength=num_classes).float()
    return counts / counts.sum().clamp_min(1)


@torch.no_grad()
def init_output_bias(
    model: nn.Module,
    class_priors: Sequence[float] | torch.Tensor,
    multilabel: bool = False,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Set the final layer's bias so the untrained model outputs ``class_priors``.

    The bias is divided by the head's ``scale`` (if any), so scaled heads such as airbench's still
    produce the priors. Frequencies of 0 or 1 are clipped to ``[eps, 1 - eps]``.

    Args:
        model: a model with a final ``nn.Linear`` that has a bias (see ``output_layer``).
        class_priors: per-class frequencies; for single-label data they must sum to 1.
        multilabel: sigmoid outputs (log-odds) instead of softmax (log-priors).
        eps: clipping of the frequencies.

    Returns:
        The bias that was set.

    Examples:
        >>> init_output_bias(model, [0.9, 0.1])            # softmax over two classes
        >>> init_output_bias(model, [0.02, 0.3], multilabel=True)
    """
    fc = output_layer(model)
    priors = torch.as_tensor(class_priors, dtype=torch.float64).flatten()
    if fc.bias is None:
        raise ValueError("the output layer has no bias (e.g. airbench's bias=False head); build it with a bias")
    if priors.numel() != fc.out_features:
        raise ValueError(f"class_priors has {priors.numel()} entries, the output layer {fc.out_features}")
    if torch.any(priors < 0) or torch.any(priors > 1):
        raise ValueError("class_priors must be frequencies in [0, 1]")
    if not multilabel and abs(priors.sum().item() - 1.0) > 1e-3:
        raise ValueError(f"single-label class_priors must sum to 1, got {priors.sum().item():.4f}")
    p = priors.clamp(eps, 1 - eps)
    bias = torch.log(p / (1 - p)) if multilabel else torch.log(p / p.sum())
    scale = float(getattr(getattr(model, "head", None), "scale", 1.0) or 1.0)
    fc.bias.copy_((bias / scale).to(fc.bias))
    return fc.bias.detach().clone()
