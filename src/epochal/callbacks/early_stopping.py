"""EarlyStopping: stop a fit when the monitored metric has stopped improving.

Early stopping as regularisation goes back to Morgan & Bourlard, *Generalization and Parameter
Estimation in Feedforward Nets* (NeurIPS 1989); the patience rule used here is Prechelt's
"stop after ``patience`` epochs without a new best" (*Early Stopping - But When?*, 1998).
"""

from __future__ import annotations

from typing import Any

import torch

from epochal.callbacks.base import MonitorCallback
from epochal.events import CancelFit

__all__ = ["EarlyStopping"]


class EarlyStopping(MonitorCallback):
    """Cancel the fit after ``patience`` epochs in which the monitored metric did not improve.

    The check runs at the end of every epoch. An epoch improves when it beats the best value so far
    by more than ``min_delta`` (in the metric's own direction); with a ``baseline``, the waiting
    counter is only reset by epochs that also beat the baseline. With ``restore_best_weights`` the
    weights of the best epoch are copied to host memory whenever a new best is found and put back
    into the model when the fit ends (whether it stopped early, finished, or was cancelled by
    another callback), so the trained model is the best one seen.

    The callback runs late (``order=95``) so that loggers and the run logger record the last epoch
    before the fit is cancelled; :class:`~epochal.callbacks.model_checkpoint.ModelCheckpoint`
    writes its checkpoint of that epoch at ``after_cancel_fit``.

    Its state (wait counter, best value and epoch, and the best weights when restoring) is saved
    in every checkpoint, so a resumed run stops at the same epoch and restores the same weights.

    Args:
        monitor: the logged key, e.g. ``"valid/loss"``, ``"valid/accuracy"`` or ``"train/loss"``.
        patience: epochs without improvement before stopping (0 stops at the first one).
        min_delta: the smallest change that counts as an improvement.
        mode: ``"auto"`` (the metric's declared direction), ``"min"`` or ``"max"``.
        baseline: a value the metric must beat before the waiting counter is reset.
        restore_best_weights: put the best epoch's weights back into the model at the end.

    Attributes:
        wait: epochs since the last improvement.
        best_epoch: the (0-based) epoch of the best value, or None.
        stopped_epoch: the epoch at which the fit was cancelled, or None.

    Example:
        >>> stopper = EarlyStopping("valid/accuracy", patience=3, restore_best_weights=True)
        >>> Learner(model, data, metrics=["accuracy"], callbacks=[stopper]).fit(50)
        >>> stopper.best_epoch, stopper.stopped_epoch
    """

    order = 95

    def __init__(self, monitor: str = "valid/loss", patience: int = 3, min_delta: float = 0.0,
                 mode: str = "auto", baseline: float | None = None, restore_best_weights: bool = False):
        super().__init__(monitor=monitor, mode=mode, min_delta=min_delta, baseline=baseline)
        if not isinstance(patience, int) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an int >= 0 (epochs), got {patience!r}")
        self.patience = patience
        self.restore_best_weights = restore_best_weights
        self._reset()

    def _reset(self) -> None:
        self.best = None
        self.higher_is_better = None
        self.wait = 0
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self.best_weights: dict[str, torch.Tensor] | None = None

    def before_fit(self) -> None:
        if self.learner.state.step == 0:  # a new fit, not a resumed one: forget the previous fit
            self._reset()

    def after_epoch(self) -> None:
        value = self.current()
        epoch = self.learner.state.epoch
        if self.beats(value, self.best):
            self.best, self.best_epoch = value, epoch
            if self.restore_best_weights:
                self.best_weights = {k: v.detach().to("cpu", copy=True)
                                     for k, v in self.learner.model.state_dict().items()}
            if self.baseline is None or self.beats(value, self.baseline):
                self.wait = 0
                return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            raise CancelFit(f"EarlyStopping: {self.monitor} did not improve for {self.wait} epochs "
                            f"(best {self.best} at epoch {self.best_epoch})")

    def after_fit(self) -> None:
        if self.restore_best_weights and self.best_weights is not None:
            self.learner.model.load_state_dict(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(wait=self.wait, best_epoch=self.best_epoch, stopped_epoch=self.stopped_epoch,
                     best_weights=self.best_weights)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.wait = int(state.get("wait", 0))
        self.best_epoch = state.get("best_epoch")
        self.stopped_epoch = state.get("stopped_epoch")
        weights = state.get("best_weights")
        self.best_weights = {k: v.to("cpu") for k, v in weights.items()} if weights is not None else None
