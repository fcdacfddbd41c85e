"""TerminateOnNaN: stop the fit cleanly when a training loss is NaN or infinite.

Checking ``loss.item()`` after every batch (as Keras' ``TerminateOnNaN`` does) makes the host wait
for the device at every step. Here every training loss only ORs a flag that stays on the device;
the flag is read once per logging interval (``after_log``), when the learner reads its running
loss back anyway, so the check costs no extra synchronisation in the hot loop. In a data-parallel
job the flags of every rank are added at that point, so a NaN on any rank stops every rank at the
same step.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from epochal.callbacks.base import Callback
from epochal.events import CancelFit

__all__ = ["TerminateOnNaN"]


class TerminateOnNaN(Callback):
    """Cancel the fit at the first logging point after a non-finite training loss.

    The fit ends through :class:`~epochal.events.CancelFit`, so ``after_cancel_fit`` and
    ``after_fit`` run: the run is marked "stopped", loggers close their files and
    :class:`~epochal.callbacks.early_stopping.EarlyStopping` can still restore its best weights.
    The weights in memory at that point have usually gone NaN; checkpoints on disk stay good
    because :class:`~epochal.callbacks.model_checkpoint.ModelCheckpoint` checks that every weight
    is finite before it writes, and never overwrites a checkpoint with non-finite weights.

    The check happens every ``learner.log_every`` optimizer steps and at the end of every training
    epoch, so up to ``log_every`` steps may run after the first bad loss; lower ``log_every`` to
    stop sooner.

    Attributes:
        stopped_step: the optimizer step at which the non-finite loss was detected, or None.
        bad_batches: training batches with a non-finite loss in the interval that triggered the stop.

    Examples:
        >>> Learner(model, data, callbacks=[TerminateOnNaN(), ModelCheckpoint()], run_dir="runs/a").fit(10)
    """

    order = 95

    def __init__(self) -> None:
        self._bad: torch.Tensor | None = None
        self.stopped_step: int | None = None
        self.bad_batches = 0

    def before_fit(self) -> None:
        self._bad = torch.zeros((), dtype=torch.int64, device=self.learner.device)
        self.stopped_step = None
        self.bad_batches = 0

    def after_loss(self) -> None:
        if self.learner.training and self._bad is not None:
            self._bad.add_(torch.isfinite(self.learner.loss.detach()).logical_not().any())

    def after_log(self) -> None:
        if self._bad is None:
            return
        # one read per logging interval, right after the learner's own read; in a job, of every rank's flags
        bad = int(self.learner.strategy.sum(self._bad.clone()))
        if bad:
            self.bad_batches = bad
            self.stopped_step = self.learner.state.step
            message = (f"TerminateOnNaN: {bad} training batch(es) had a non-finite loss before step "
                       f"{self.stopped_step} (epoch {self.learner.state.epoch_number}); stopping the fit")
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            raise CancelFit(message)

    def after_fit(self) -> None:
        self._bad = None

    def state_dict(self) -> dict[str, Any]:
        return {"stopped_step": self.stopped_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stopped_step = state.get("stopped_step")

    @property
    def name(self) -> str:
        return "terminate_on_nan"
