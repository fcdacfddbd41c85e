"""Per-class loss weights for imbalanced labels.

Two rules, both computed from the label counts of the *training* split:

* **inverse class frequency** (``balanced_class_weights``) for softmax cross-entropy: class ``c``
  weighs ``w_c = n / (k * n_c)`` (``n`` samples, ``k`` classes, ``n_c`` samples of class ``c``),
  the heuristic of King & Zeng, "Logistic Regression in Rare Events Data" (2001) that
  scikit-learn's ``compute_class_weight("balanced")`` computes. Every class then contributes the
  same total weight, ``n / k``, to the loss.
* **positive weight** (``balanced_pos_weight``) for multi-label sigmoid cross-entropy: label ``c``'s
  positive term weighs ``n_neg_c / n_pos_c``, so a rare label's few positives count as much as its
  many negatives (the ``pos_weight`` of :class:`torch.nn.BCEWithLogitsLoss`; its docs use the same
  ratio). Labels are not exclusive in multi-label data, so a per-class frequency rule such as the
  first one has no "balanced" meaning there.

:func:`class_weight_tensor` turns a recipe value (a list with one weight per class, or
``"balanced"``) into the tensor a loss constructor takes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = ["BALANCED", "BalancedRule", "balanced_class_weights", "balanced_pos_weight", "class_weight_tensor"]

#: The recipe value that asks for weights computed from the training label counts.
BALANCED = "balanced"

#: ``rule(counts, n_samples, classes) -> weights``: how ``balanced`` is computed for one loss argument.
BalancedRule = Callable[[torch.Tensor, int, Sequence[str] | None], torch.Tensor]


def _names(classes: Sequence[str] | None, indices: torch.Tensor) -> list:
    return [classes[i] if classes is not None else i for i in indices.tolist()]


def balanced_class_weights(
    counts: Sequence[int] | torch.Tensor, n_samples: int | None = None, classes: Sequence[str] | None = None
) -> torch.Tensor:
    """Inverse-frequency weights ``n / (k * n_c)`` of single-label class counts.

    Args:
        counts: training samples per class, in class-index order.
        n_samples: total training samples (default: the sum of ``counts``).
        classes: class names, for the error message.

    Raises:
        ValueError: when a class has no training sample (its weight would be infinite).

    Examples:
        >>> balanced_class_weights([30, 10])
        tensor([0.6667, 2.0000])
    """
    counts = torch.as_tensor(counts, dtype=torch.float64)
    empty = (counts <= 0).nonzero().flatten()
    if len(empty):
        raise ValueError(
            f"classes {_names(classes, empty)} have no training sample, so 'balanced' class weights "
            "are undefined; give the weights as a list or remove those classes"
        )
    n = float(counts.sum()) if n_samples is None else float(n_samples)
    return (n / (len(counts) * counts)).float()


def balanced_pos_weight(
    positives: Sequence[int] | torch.Tensor, n_samples: int, classes: Sequence[str] | None = None
) -> torch.Tensor:
    """Multi-label positive weights ``n_neg_c / n_pos_c`` from the samples carrying each label.

    Args:
        positives: training samples carrying each label, in label-index order.
        n_samples: training samples.
        classes: label names, for the error message.

    Raises:
        ValueError: when a label is never or always present (its weight would be infinite or 0).

    Examples:
        >>> balanced_pos_weight([10, 50], n_samples=100)
        tensor([9., 1.])
    """
    positives = torch.as_tensor(positives, dtype=torch.float64)
    never = (positives <= 0).nonzero().flatten()
    always = (positives >= n_samples).nonzero().flatten()
    if len(never) or len(always):
        raise ValueError(
            f"labels {_names(classes, never)} are in no training sample and {_names(classes, always)} in "
            "every one, so their 'balanced' positive weight n_neg / n_pos is undefined; give pos_weight as a list"
        )
    return ((n_samples - positives) / positives).float()


def class_weight_tensor(
    value: Any,
    where: str,
    classes: Sequence[str] | None = None,
    num_classes: int | None = None,
    counts: Sequence[int] | torch.Tensor | None = None,
    n_samples: int | None = None,
    balanced: BalancedRule | None = None,
) -> torch.Tensor:
    """The weight tensor of a recipe value: one number per class, or ``"balanced"``.

    Args:
        value: a list of non-negative numbers in class-index order, or ``"balanced"``.
        where: the recipe key, for error messages (``loss.weight``).
        classes: class names of the data (their number is the required length).
        num_classes: the number of classes when there are no names.
        counts: training samples per class (needed for ``balanced``).
        n_samples: training samples (needed for ``balanced``).
        balanced: the rule for ``balanced``; None when this argument has none.

    Raises:
        ValueError: naming ``where`` for a wrong length, a negative weight or missing counts.
    """
    k = len(classes) if classes is not None else num_classes
    if value == BALANCED:
        if balanced is None:
            raise ValueError(f"{where}: 'balanced' is not defined for this argument; give one weight per class")
        if counts is None or n_samples is None:
            raise ValueError(f"{where}: 'balanced' needs the training label counts, which this data does not give")
        weights = balanced(torch.as_tensor(counts), int(n_samples), classes)
    else:
        weights = torch.as_tensor([float(v) for v in value], dtype=torch.float32)
        if (weights < 0).any():
            raise ValueError(f"{where}: class weights must be >= 0, got {list(value)}")
    if k is not None and len(weights) != k:
        shown = f" {list(classes)}" if classes is not None else ""
        raise ValueError(
            f"{where} has {len(weights)} values but the data has {k} classes{shown}; "
            "give one weight per class in that order, or 'balanced'"
        )
    return weights
