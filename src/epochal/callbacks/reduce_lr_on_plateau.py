"""ReduceLROnPlateau: divide the learning rate when the monitored metric stops improving.

The rule (reduce by ``factor`` after ``patience`` epochs without improvement, then wait out a
``cooldown``) is the one of Keras 3's ``keras.callbacks.ReduceLROnPlateau``, whose arguments,
defaults and reduction epochs this callback reproduces; ``threshold_mode="rel"`` adds the
relative threshold of ``torch.optim.lr_scheduler.ReduceLROnPlateau``. Dividing the rate on a
plateau was popularised for image classification by He et al., *Deep Residual Learning for Image
Recognition* (CVPR 2016), who divided it by 10 "when the error plateaus".

The phase schedule rewrites every group's ``lr`` before every optimizer step as
``base_lr(step) * group["lr_scale"] * group["lr_factor"]``, so this callback never fights the
schedule: it multiplies the per-group ``"lr_factor"`` and the schedule carries the reduction on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from epochal.callbacks.base import EPOCHS_FROM, MonitorCallback, restored_epochs

__all__ = ["ReduceLROnPlateau"]


class ReduceLROnPlateau(MonitorCallback):
    """Multiply every parameter group's learning rate by ``factor`` when the metric plateaus.

    The rule is Keras', checked at the end of every epoch in this order:

    1. during a cooldown, the cooldown counter goes down by one and ``wait`` is set to 0;
    2. a value that beats the best so far by more than ``min_delta`` becomes the best and sets
       ``wait`` to 0;
    3. otherwise, unless still in the cooldown (its counter above 0 after step 1), ``wait`` grows
       by one, and once ``wait >= patience`` every group whose rate is above its ``min_lr`` is
       multiplied by ``factor`` (floored at ``min_lr``); if some group was reduced, the cooldown
       counter is set to ``cooldown`` and ``wait`` to 0.

    Consequences worth knowing (all Keras'): ``patience=0`` and ``patience=1`` both reduce at every
    epoch that does not improve; ``cooldown=c`` leaves ``c - 1`` epochs uncounted after a reduction,
    so ``cooldown=1`` changes nothing (torch's ``cooldown=c`` leaves ``c`` epochs uncounted and its
    ``patience=p`` reduces after ``p + 1`` bad epochs: Keras' ``patience=p, cooldown=c`` is torch's
    ``patience=max(p, 1) - 1, cooldown=max(c, 1) - 1`` away from ``min_lr``); when every group is at its
    ``min_lr``, nothing is reduced, ``wait`` keeps growing and no cooldown starts. A rate kept as a
    tensor (capturable or fused optimizers) is compared with ``min_lr`` rounded to the tensor's
    dtype, as Keras compares its float32 rate with ``float32(min_lr)``, so a rate that was set to
    ``min_lr`` is not "reduced" again.

    The reduction sets each group's ``"lr"`` at once (visible before the next step) and multiplies
    its ``"lr_factor"``, which the phase schedule keeps applying; discriminative rates keep their
    ratios. The factors live in the optimizer's parameter groups and are therefore saved with the
    optimizer state; the counters are saved through ``state_dict``, so a resumed run reduces at the
    same epochs. A new fit (not a resumed one) starts again from ``lr_factor = 1``.

    Arguments after ``patience`` are keyword-only: Keras' fourth positional argument is its
    ``verbose``, which epochal does not have.

    Args:
        monitor: the logged key, e.g. ``"valid/loss"``.
        factor: the multiplier, in (0, 1) (Keras' default 0.1).
        patience: epochs without improvement before reducing (Keras' default 10).
        cooldown: the cooldown after a reduction, in Keras' meaning above (default 0).
        min_lr: the lowest learning rate, one value or one per parameter group (default 0).
        min_delta: the smallest change that counts as an improvement (Keras' default 1e-4).
        mode: ``"auto"`` (the metric's declared direction), ``"min"`` or ``"max"``.
        baseline: a value the metric must beat before anything counts as an improvement.
        threshold_mode: ``"abs"`` (Keras) or ``"rel"`` (torch's relative threshold, with
            ``min_delta`` as torch's ``threshold``): see :class:`~epochal.callbacks.base.MonitorCallback`.

    Attributes:
        wait, cooldown_counter: the counters of the rule above.
        reductions: the epochs at the end of which some group's rate was reduced, numbered from 1
            as on the screen and in ``metrics.jsonl``.

    Examples:
        >>> plateau = ReduceLROnPlateau("valid/loss", factor=0.5, patience=2, min_lr=1e-5)
        >>> Learner(model, data, optimizer="sgd", lr=0.1, callbacks=[plateau]).fit(30)
    """

    order = 20

    def __init__(self, monitor: str = "valid/loss", factor: float = 0.1, patience: int = 10, *,
                 cooldown: int = 0, min_lr: float | Sequence[float] = 0.0, min_delta: float = 1e-4,
                 mode: str = "auto", baseline: float | None = None, threshold_mode: str = "abs"):
        super().__init__(monitor=monitor, mode=mode, min_delta=min_delta, baseline=baseline,
                         threshold_mode=threshold_mode)
        if not 0.0 < factor < 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be in (0, 1), got {factor}")
        for arg, value in (("patience", patience), ("cooldown", cooldown)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
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
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self.is_improvement(value):
            self.best = value
            self.wait = 0
        elif not self.in_cooldown():  # read after the decrement: the last cooldown epoch counts
            self.wait += 1
            if self.wait >= self.patience and self._reduce_groups():
                self.cooldown_counter = self.cooldown
                self.wait = 0

    def reduce(self) -> list[float]:
        """Multiply every group's rate by ``factor`` now (respecting ``min_lr``); return the new rates."""
        self._reduce_groups()
        return [float(g["lr"]) for g in self.learner.optimizer.param_groups]

    def _reduce_groups(self) -> bool:
        """Reduce every group above its floor; record the epoch and return True if one was."""
        groups = self.learner.optimizer.param_groups
        changed = False
        for group, floor in zip(groups, self._min_lrs(len(groups))):
            stored = group["lr"]
            if isinstance(stored, torch.Tensor):  # capturable/fused optimizers keep lr as a tensor
                floor = float(torch.tensor(floor, dtype=stored.dtype))  # as stored, e.g. float32(1e-3)
            lr = float(stored)
            if lr <= floor:
                continue  # already at or under its floor
            new_lr = max(lr * self.factor, floor)
            group["lr_factor"] = group.get("lr_factor", 1.0) * new_lr / lr
            if isinstance(stored, torch.Tensor):
                stored.fill_(new_lr)
            else:
                group["lr"] = new_lr
            changed = True
        self.group_factors = [float(g.get("lr_factor", 1.0)) for g in groups]
        if changed:
            self.reductions.append(self.learner.state.epoch_number)
        return changed

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(wait=self.wait, cooldown_counter=self.cooldown_counter, reductions=list(self.reductions),
                     group_factors=self.group_factors, **{EPOCHS_FROM: 1})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.wait = int(state.get("wait", 0))
        self.cooldown_counter = int(state.get("cooldown_counter", 0))
        self.reductions = restored_epochs(state, state.get("reductions", []))
        factors = state.get("group_factors")
        self.group_factors = list(factors) if factors is not None else None

    @property
    def name(self) -> str:
        return "reduce_lr_on_plateau"
