"""The loss registry: a recipe's ``loss: {name: NAME, ...}`` builds ``LOSSES[NAME]``.

An entry is a loss constructor plus what the recipe layer needs to know about its arguments:
which hold per-class weights (so a recipe may give them as a list, or as ``balanced`` to have them
computed from the training label counts). New losses (focal, distillation, soft-target BCE) plug
in with :func:`register_loss`; their other keyword arguments are checked against the
constructor's signature when a recipe is loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from epochal.losses.class_weights import (
    BALANCED,
    BalancedRule,
    balanced_class_weights,
    balanced_pos_weight,
    class_weight_tensor,
)
from epochal.losses.regression import L1Loss, MSELoss, SmoothL1Loss

__all__ = ["DEFAULT_LOSSES", "LOSSES", "TARGETS", "LossEntry", "register_loss"]

#: The kinds of labels a loss compares predictions with.
TARGETS = ("class_indices", "multi_hot", "values", "inputs")
_TARGET_WORDS = {
    "class_indices": "one class per sample",
    "multi_hot": "multi-label targets (any number of classes per sample)",
    "values": "regression values",
    "inputs": "the inputs themselves (a model that reconstructs its input)",
}
#: The loss a recipe without ``loss.name`` trains with, by the data's kind of labels.
DEFAULT_LOSSES = {"class_indices": "cross_entropy", "multi_hot": "bce_with_logits", "values": "mse", "inputs": "mse"}
_SUGGESTED = {
    "class_indices": "cross_entropy",
    "multi_hot": "bce_with_logits",
    "values": "mse, l1 or smooth_l1",
    "inputs": "mse, l1 or smooth_l1",
}
#: Kinds of labels a loss registered for another kind also takes: a regression loss compares
#: any tensor of the prediction's shape, so it also compares a reconstruction with its input.
_ALSO_TAKE = {"values": ("inputs",)}

#: ``reduction`` values that give the scalar the training loop backpropagates.
_SCALAR_REDUCTIONS = ("mean", "sum")
#: Arguments torch deprecated in favour of ``reduction``.
_DEPRECATED = ("reduce", "size_average")


@dataclass(frozen=True)
class LossEntry:
    """A registered loss.

    Args:
        factory: builds the loss module from keyword arguments.
        class_weights: constructor arguments that take one weight per class, each mapped to the
            rule that computes ``balanced`` from the training label counts (None: a list only).
        targets: the labels it compares predictions with: ``class_indices`` (one class per
            sample), ``multi_hot`` (multi-label) or ``values`` (regression, also the ``inputs`` of a
            model that reconstructs them); None: any.

    Examples:
        >>> entry = LossEntry(nn.CrossEntropyLoss, {"weight": balanced_class_weights})
        >>> entry.build({"weight": "balanced"}, counts=[30, 10], n_samples=40).weight
        tensor([0.6667, 2.0000])
    """

    factory: Callable[..., nn.Module]
    class_weights: Mapping[str, BalancedRule | None] = field(default_factory=dict)
    targets: str | None = None

    def __post_init__(self) -> None:
        if self.targets is not None and self.targets not in TARGETS:
            raise ValueError(f"targets={self.targets!r} is not one of {TARGETS} or None")

    def __call__(self, **kwargs: Any) -> nn.Module:
        """The loss from plain constructor arguments (weights already tensors)."""
        return self.factory(**kwargs)

    def check(self, kwargs: Mapping[str, Any], where: str = "loss") -> None:
        """Raise ValueError for a value that no data could train with (run when a recipe loads).

        Args:
            kwargs: the recipe's keyword arguments.
            where: the recipe section for messages (``loss.reduction``); "" names keys alone.
        """
        for key in _DEPRECATED:
            if key in kwargs:
                raise ValueError(f"{_key(where, key)} is deprecated by torch; use reduction: mean or sum")
        if kwargs.get("reduction", "mean") not in _SCALAR_REDUCTIONS:
            raise ValueError(
                f"{_key(where, 'reduction')} must be one of {list(_SCALAR_REDUCTIONS)} (training needs one "
                f"number per batch), got {kwargs['reduction']!r}"
            )
        for arg, rule in self.class_weights.items():
            if kwargs.get(arg) is not None:
                self._check_weights(kwargs[arg], _key(where, arg), rule)

    def _check_weights(self, value: Any, name: str, rule: BalancedRule | None) -> None:
        if value == BALANCED:
            if rule is None:
                others = [a for a, r in self.class_weights.items() if r is not None]
                hint = f"; 'balanced' is offered by {others}" if others else ""
                raise ValueError(f"{name}: 'balanced' is not defined for this argument{hint}")
            return
        numbers = isinstance(value, Sequence) and not isinstance(value, str)
        if not numbers or not value or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in value
        ):
            allowed = "a list of weights >= 0, one per class" + (", or 'balanced'" if rule is not None else "")
            raise ValueError(f"{name} must be {allowed}; got {value!r}")

    def build(
        self,
        kwargs: Mapping[str, Any],
        classes: Sequence[str] | None = None,
        num_classes: int | None = None,
        counts: Sequence[int] | torch.Tensor | None = None,
        n_samples: int | None = None,
        targets: str | None = None,
        where: str = "loss",
    ) -> nn.Module:
        """The loss from recipe arguments, class weights turned into tensors for this data.

        Args:
            kwargs: the recipe's keyword arguments.
            classes: class names (their number is the length class weights must have).
            num_classes: the number of classes when there are no names.
            counts: training samples per class (multi-label: samples carrying each label).
            n_samples: training samples.
            targets: the data's kind of labels (see ``targets`` above); a mismatch is an error.
            where: the recipe section, for error messages.
        """
        kwargs = dict(kwargs)
        taken = (self.targets, *_ALSO_TAKE.get(self.targets, ()))
        if targets is not None and self.targets is not None and targets not in taken:
            raise ValueError(
                f"{where} compares predictions with {_TARGET_WORDS[self.targets]}, but this data has "
                f"{_TARGET_WORDS[targets]}; choose a loss for them ({_SUGGESTED[targets]})"
            )
        for arg, rule in self.class_weights.items():
            if kwargs.get(arg) is not None:
                kwargs[arg] = class_weight_tensor(
                    kwargs[arg], f"{where}.{arg}", classes, num_classes, counts, n_samples, rule
                )
        return self.factory(**kwargs)


def _key(where: str, key: str) -> str:
    return f"{where}.{key}" if where else repr(key)


#: Loss name -> :class:`LossEntry`; the recipe's other ``loss`` keys are constructor arguments.
LOSSES: dict[str, LossEntry] = {
    "cross_entropy": LossEntry(nn.CrossEntropyLoss, {"weight": balanced_class_weights}, "class_indices"),
    # weight rescales each label's loss; pos_weight (n_neg / n_pos when balanced) each label's positives
    "bce_with_logits": LossEntry(
        nn.BCEWithLogitsLoss, {"weight": None, "pos_weight": balanced_pos_weight}, "multi_hot"
    ),
    "mse": LossEntry(MSELoss, targets="values"),
    "l1": LossEntry(L1Loss, targets="values"),
    "smooth_l1": LossEntry(SmoothL1Loss, targets="values"),
}


def register_loss(
    name: str,
    factory: Callable[..., nn.Module],
    class_weights: Mapping[str, BalancedRule | None] | None = None,
    targets: str | None = None,
) -> None:
    """Make ``loss: {name: NAME, ...}`` build ``factory(**kwargs)``.

    Args:
        name: the recipe name.
        factory: the loss constructor (its signature is what recipes are checked against).
        class_weights: its per-class weight arguments and their ``balanced`` rule (see
            :class:`LossEntry`); e.g. a focal loss's ``alpha`` with ``balanced_class_weights``.
        targets: the labels it takes (``class_indices``, ``multi_hot``, ``values``; None: any).

    Examples:
        >>> register_loss("focal", FocalLoss, {"alpha": balanced_class_weights}, targets="class_indices")
    """
    LOSSES[name] = LossEntry(factory, dict(class_weights or {}), targets)
