"""Averaging rules: how a running average of weights takes in one more snapshot.

Two rules, kept apart from the averaged copy and from BatchNorm recalibration as in
``torch.optim.swa_utils``:

* :class:`EqualMean`: the equal-weight running mean of stochastic weight averaging (Izmailov et
  al., *Averaging Weights Leads to Wider Optima and Better Generalization*, UAI 2018),
  ``avg <- avg + (w - avg) / (n + 1)`` after ``n`` snapshots, the first snapshot copied: after
  ``K`` updates ``avg`` is the arithmetic mean of the ``K`` snapshots. The formula is the one of
  ``torch.optim.swa_utils.get_swa_avg_fn``, so on the same trajectory the result is bit-identical
  to ``AveragedModel`` on the CPU.
* :class:`ExponentialMean`: the exponential moving average of Polyak-Juditsky averaging with
  exponential weights, ``avg <- decay * avg + (1 - decay) * w`` (``torch._foreach_lerp_``), with
  the optional warm-up of TensorFlow's ``ExponentialMovingAverage(num_updates=...)``:
  ``decay_n = min(decay, (1 + n) / (10 + n))`` so early averages are not dominated by the random
  initialisation.

Both work on lists of tensors with ``torch._foreach_*`` kernels, and the weight of an update is a
Python number computed from the update count, which the caller keeps on the host: an update
launches kernels and never waits for the device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from epochal.utils import check_number

__all__ = ["AveragingRule", "EqualMean", "ExponentialMean"]


class AveragingRule:
    """Base class: ``update(averaged, current, n)`` folds ``current`` into ``averaged`` in place.

    Attributes:
        copies_first: whether the first update (``n == 0``) copies the snapshot instead of
            averaging it with the averaged copy's initial values.
    """

    copies_first: bool = True

    @torch.no_grad()
    def update(self, averaged: Sequence[torch.Tensor], current: Sequence[torch.Tensor], n: int) -> None:
        """Fold ``current`` into ``averaged`` (same shapes, floating point), ``n`` snapshots averaged so far."""
        averaged, current = list(averaged), list(current)
        if not averaged:
            return
        if n == 0 and self.copies_first:
            torch._foreach_copy_(averaged, current)
            return
        self._fold(averaged, current, n)

    def _fold(self, averaged: list[torch.Tensor], current: list[torch.Tensor], n: int) -> None:
        raise NotImplementedError

    def to_config(self) -> dict:
        """Plain data describing the rule (recorded in checkpoints and summaries)."""
        raise NotImplementedError


class EqualMean(AveragingRule):
    """The equal-weight running mean of SWA: after ``K`` updates, the mean of the ``K`` snapshots.

    Examples:
        >>> rule = EqualMean()
        >>> avg = [torch.zeros(2)]
        >>> for n, w in enumerate([torch.tensor([1., 2.]), torch.tensor([3., 6.])]):
        ...     rule.update(avg, [w], n)
        >>> avg[0]
        tensor([2., 4.])
    """

    def _fold(self, averaged: list[torch.Tensor], current: list[torch.Tensor], n: int) -> None:
        deltas = torch._foreach_sub(current, averaged)
        torch._foreach_div_(deltas, n + 1)
        torch._foreach_add_(averaged, deltas)

    def to_config(self) -> dict:
        return {"rule": "mean"}

    def __repr__(self) -> str:
        return "EqualMean()"


class ExponentialMean(AveragingRule):
    """Exponential moving average with an optional warm-up of the decay.

    Args:
        decay: the weight kept by the average at each update, in ``[0, 1)``.
        warmup: use ``min(decay, (1 + n) / (10 + n))`` at the ``n``-th update (0-based), so the
            first updates follow the weights closely.
        copy_first: the first update copies the weights (as ``torch.optim.swa_utils`` does);
            False averages them with the averaged copy's starting values (the model at the start).

    Examples:
        >>> rule = ExponentialMean(0.9)
        >>> [round(rule.decay_at(n), 4) for n in (0, 100)]
        [0.9, 0.9]
        >>> [round(ExponentialMean(0.999, warmup=True).decay_at(n), 4) for n in (0, 90)]
        [0.1, 0.91]
    """

    def __init__(self, decay: float = 0.999, warmup: bool = False, copy_first: bool = False):
        self.decay = check_number(decay, "decay", 0.0, 1.0)
        if self.decay >= 1.0:
            raise ValueError(f"decay must be < 1 (1 would never move the average), got {decay}")
        self.warmup = bool(warmup)
        self.copies_first = bool(copy_first)

    def decay_at(self, n: int) -> float:
        """The decay used at the ``n``-th update (0-based)."""
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    def _fold(self, averaged: list[torch.Tensor], current: list[torch.Tensor], n: int) -> None:
        torch._foreach_lerp_(averaged, current, 1.0 - self.decay_at(n))

    def to_config(self) -> dict:
        return {"rule": "ema", "decay": self.decay, "warmup": self.warmup, "copy_first": self.copies_first}

    def __repr__(self) -> str:
        return f"ExponentialMean(decay={self.decay}, warmup={self.warmup})"
