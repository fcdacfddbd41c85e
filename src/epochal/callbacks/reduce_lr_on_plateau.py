"""ReduceLROnPlateau: divide the learning rate when the monitored metric stops improving.

The rule (reduce by ``factor`` after ``patience`` epochs without improvement, then wait
``cooldown`` epochs) is the one of Keras and ``torch.optim.lr_scheduler.ReduceLROnPlateau``; it
was popularised for image classification by He et al., *Deep Residual Learning for Image
Recognition* (CVPR 2016), who divided the rate by 10 "when the error plateaus".

The phase schedule rewrites every group's ``lr`` before every optimizer step as
``base_lr(step) * group["lr_scale"] * group["lr_factor"]``, so this callback never fights the
schedule: it multiplies the per-group ``"lr_factor"`` and the schedule carries the reduction on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from epochal.callbacks.base import MonitorCallback

__all__ = ["ReduceLROnPlateau"]


class ReduceLROnPlateau(MonitorCallback):
    """Multiply every parameter group's learning rate by ``factor`` when the metric plateaus.

    At the end of every epoch: an epoch that beats the best value by more than ``min_delta`` resets
    the waiting counter; otherwise the counter grows, and when it reaches ``patience`` every group's
    ``"lr_factor"`` is multiplied by ``factor`` (and its ``"lr"`` set at once, so the change is
    visible before the next step). The ``cooldown`` epochs that follow a reduction are not counted
    (as in torch; Keras' ``cooldown=1`` has no effect).
    No group is pushed below ``min_lr``: a group already at or under it is left alone, and one
    that would cross it is set to exactly ``min_lr``.

    The factors live in the optimizer's parameter groups and are therefore saved with the
    optimizer state; the counters are saved through ``state_dict``. A new fit (not a resumed one)
    starts again from ``lr_factor = 1``.

    Args:
        monitor: the logged key, e.g. ``"valid/loss"``.
        factor: the multiplier, in (0, 1).
        patience: epochs without improvement before reducing (0 reduces after every epoch that
            does not improve).
        cooldown: epochs to wait after a reduction before counting again.
        min_lr: the lowest learning rate, one value or one per parameter group.
        min_delta: the smallest change that counts as an improvement.
        mode: ``"auto"`` (the metric's declared direction), ``"min"`` or ``"max"``.
        baseline: a value the metric must beat before anything counts as an improvement.

    Attributes:
        reductions: the (0-based) epochs at the end of which some group's rate was reduced.

    Example:
        >>> plateau = ReduceLROnPlateau("valid/loss", factor=0.5, patience=2, min_lr=1e-5)
        >>> Learner(model, data, optimizer="sgd", lr=0.1, callbacks=[plateau]).fit(30)
    """

    order = 20

    def __init__(self, monitor: str = "valid/loss", factor: float = 0.1, patience: int = 5,
                 cooldown: int = 0, min_lr: float | Sequence[float] = 0.0, min_delta: float = 0.0,
                 mode: str = "auto", baseline: float | None = None):
        super().__init__(monitor=monitor, mode=mode, min_delta=min_delta, baseline=baseline)
        if not 0.0 < factor < 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be in (0, 1), got {factor}")
        for arg, value in (("patience", patience), ("cooldown", cooldown)):
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"ReduceLROnPlateau: {arg} must be an int >= 0 (epochs), got {value!r}")
        min_lrs = list(min_lr) if isinstance(min_lr, Sequence) else [min_lr]
        if any(m < 0 for m in min_lrs):
            raise ValueError(f"ReduceLROnPlateau: min_lr must be >= 0, got {min_lr}")
        self.factor, self.patience, self.cooldown, self.min_lr = factor, patience, cooldown, min_lr
        self._reset()

    def _reset(self) -> None:
        self.best = None
        self.higher_is_better = None
        self.wait = 0
        self.cooldown_counter = 0
        self.reductions: list[int] = []
        self.group_factors: list[float] | None = None

    def _min_lrs(self, n_groups: int) -> list[float]:
        if not isinstance(self.min_lr, Sequence):
            return [float(self.min_lr)] * n_groups
        if len(self.min_lr) != n_groups:
            raise ValueError(f"ReduceLROnPlateau: min_lr has {len(self.min_lr)} values but the optimizer "
                             f"has {n_groups} parameter groups; give one value or one per group")
        return [float(m) for m in self.min_lr]

    def before_fit(self) -> None:
        if self.learner.state.step == 0:  # a new fit: start again from the schedule's rates
            self._reset()
            for group in self.learner.optimizer.param_groups:
                group["lr_factor"] = 1.0
        self._sync_new_optimizer()

    def before_phase(self) -> None:
        self._sync_new_optimizer()

    def _sync_new_optimizer(self) -> None:
        """Carry reductions over to an optimizer built by a new phase (its groups have no factor)."""
        groups = self.learner.optimizer.param_groups
        if self.group_factors is None or all("lr_factor" in g for g in groups):
            return
        factors = self.group_factors
        if len(factors) != len(groups):  # another grouping: carry the strongest reduction to every group
            factors = [min(factors)] * len(groups)
        for group, factor in zip(groups, factors):
            group.setdefault("lr_factor", factor)

    def in_cooldown(self) -> bool:
        """Whether the callback is waiting out a cooldown after a reduction."""
        return self.cooldown_counter > 0

    def after_epoch(self) -> None:
        value = self.current()
        if self.is_improvement(value):
            self.best = value
            self.wait = 0
        else:
            self.wait += 1
        if self.in_cooldown():  # epochs right after a reduction are not counted
            self.cooldown_counter -= 1
            self.wait = 0
        if self.wait and self.wait >= self.patience:
            self.reduce()
            self.cooldown_counter = self.cooldown
            self.wait = 0

    def reduce(self) -> list[float]:
        """Multiply every group's rate by ``factor`` now (respecting ``min_lr``); return the new rates."""
        groups = self.learner.optimizer.param_groups
        changed = False
        for group, floor in zip(groups, self._min_lrs(len(groups))):
            lr = float(group["lr"])
            new_lr = max(lr * self.factor, floor)
            if lr <= 0 or new_lr >= lr:
                continue  # already at or under its floor
            group["lr_factor"] = group.get("lr_factor", 1.0) * new_lr / lr
            if isinstance(group["lr"], torch.Tensor):  # capturable/fused optimizers keep lr as a tensor
                group["lr"].fill_(new_lr)
            else:
                group["lr"] = new_lr
            changed = True
        self.group_factors = [float(g.get("lr_factor", 1.0)) for g in groups]
        if changed:
            self.reductions.append(self.learner.state.epoch)
        return [float(g["lr"]) for g in groups]

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(wait=self.wait, cooldown_counter=self.cooldown_counter, reductions=list(self.reductions),
                     group_factors=self.group_factors)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.wait = int(state.get("wait", 0))
        self.cooldown_counter = int(state.get("cooldown_counter", 0))
        self.reductions = list(state.get("reductions", []))
        factors = state.get("group_factors")
        self.group_factors = list(factors) if factors is not None else None

    @property
    def name(self) -> str:
        return "reduce_lr_on_plateau"
