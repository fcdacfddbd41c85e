"""The global batch and learning-rate scaling, stated explicitly (nothing is scaled silently).

Under data parallelism each rank's loader serves ``per_rank`` samples per batch, and one optimizer
step averages the gradients of ``per_rank x world_size x grad_accum`` samples: the **global batch**.
A rate tuned for one batch size is often moved to another by a rule of thumb, which epochal
applies only when asked (``optimizer.lr_scaling`` in a recipe, ``Learner(lr_scaling=...)``):

- ``linear``: ``lr x global / reference``, Goyal et al., *Accurate, Large Minibatch SGD:
  Training ImageNet in 1 Hour* (2017), for SGD up to about 8k samples with a warm-up;
- ``sqrt``: ``lr x sqrt(global / reference)``, Krizhevsky, *One weird trick for parallelizing
  convolutional neural networks* (2014), also common for adaptive optimizers;
- ``none``: the rates as written.

The factor multiplies every rate of the schedule (see :class:`~epochal.schedules.PhaseSchedule`),
and the run summary records the rule, the reference, the factor and the global batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["LR_SCALING_RULES", "GlobalBatch", "LRScaling"]

#: The rules of :class:`LRScaling`.
LR_SCALING_RULES: tuple[str, ...] = ("none", "linear", "sqrt")


@dataclass(frozen=True)
class GlobalBatch:
    """The samples behind one optimizer step: ``per_rank x world_size x grad_accum``.

    Attributes:
        per_rank: samples per batch of one rank's training loader (None: the loader does not say).
        world_size: processes training together.
        grad_accum: batches whose gradients are summed before each step.

    Examples:
        >>> GlobalBatch(64, 4, 2).describe()
        'global batch 512 = 64 per rank x 4 ranks x 2 accumulation steps'
    """

    per_rank: int | None
    world_size: int = 1
    grad_accum: int = 1

    @property
    def size(self) -> int | None:
        """The global batch, or None when the per-rank batch is unknown."""
        return None if self.per_rank is None else self.per_rank * self.world_size * self.grad_accum

    def describe(self) -> str:
        """One line for logs and the run summary."""
        ranks = f"{self.world_size} rank{'s' if self.world_size != 1 else ''}"
        steps = f"{self.grad_accum} accumulation step{'s' if self.grad_accum != 1 else ''}"
        if self.per_rank is None:
            return f"global batch unknown (the training loader does not say its batch size) x {ranks} x {steps}"
        return f"global batch {self.size} = {self.per_rank} per rank x {ranks} x {steps}"

    def to_dict(self) -> dict[str, Any]:
        return {"per_rank": self.per_rank, "world_size": self.world_size, "grad_accum": self.grad_accum,
                "global": self.size, "formula": self.describe()}


@dataclass(frozen=True)
class LRScaling:
    """Scale every learning rate with the global batch: ``none``, ``linear`` or ``sqrt`` of ``global / reference``.

    Args:
        rule: ``"none"``, ``"linear"`` or ``"sqrt"`` (module docstring).
        reference_batch_size: the global batch the written rates were tuned for.

    Examples:
        >>> LRScaling("linear", reference_batch_size=256).factor(1024)
        4.0
    """

    rule: str = "none"
    reference_batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.rule not in LR_SCALING_RULES:
            raise ValueError(f"lr_scaling must be one of {list(LR_SCALING_RULES)}, got {self.rule!r}")
        if self.rule != "none" and (self.reference_batch_size is None or self.reference_batch_size < 1):
            raise ValueError(f"lr_scaling {self.rule!r} needs reference_batch_size, the (global) batch size the "
                             f"learning rates were tuned for, >= 1; got {self.reference_batch_size!r}")

    def factor(self, global_batch: int | None) -> float:
        """The multiplier of every rate for a global batch of ``global_batch`` samples."""
        if self.rule == "none":
            return 1.0
        if global_batch is None:
            raise ValueError(f"lr_scaling {self.rule!r} needs the global batch, but the training loader does not "
                             "say its batch size; give the loader a batch_size attribute or use lr_scaling 'none'")
        ratio = global_batch / self.reference_batch_size
        return ratio if self.rule == "linear" else math.sqrt(ratio)

    def describe(self, global_batch: int | None, lr: float | None = None) -> str:
        """One line: the rule, the ratio and, given the base rate, the rate it becomes."""
        if self.rule == "none":
            return "lr scaling none (the rates as written)"
        factor = self.factor(global_batch)
        ratio = f"global batch {global_batch} / reference {self.reference_batch_size}"
        text = f"lr scaling {self.rule}: {ratio} -> x{factor:.4g}"
        return text if lr is None else f"{text} (lr {lr:.4g} -> {lr * factor:.4g})"

    def to_dict(self, global_batch: int | None) -> dict[str, Any]:
        return {"rule": self.rule, "reference_batch_size": self.reference_batch_size,
                "factor": self.factor(global_batch)}
