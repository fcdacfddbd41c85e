"""EarlyStopping: stop a fit when the monitored metric has stopped improving.

Early stopping as regularisation goes back to Morgan & Bourlard, *Generalization and Parameter
Estimation in Feedforward Nets* (NeurIPS 1989); the patience rule used here is Prechelt's
"stop after ``patience`` epochs without a new best" (*Early Stopping - But When?*, 1998), in the
exact form of Keras 3's ``keras.callbacks.EarlyStopping`` (same arguments, same defaults, same
stopping epoch for the same metric values).
"""

from __future__ import annotations

from typing import Any

import torch

from epochal.callbacks.base import EPOCHS_FROM, MonitorCallback, restored_epochs
from epochal.events import CancelFit

__all__ = ["EarlyStopping"]


class EarlyStopping(MonitorCallback):
    """Cancel the fit after ``patience`` epochs in which the monitored metric did not improve.

    The rule is Keras', checked at the end of every epoch after the first ``start_from_epoch``
    epochs (those are a warm-up and are ignored entirely):

    1. the waiting counter ``wait`` grows by one;
    2. if the value beats the best so far by more than ``min_delta`` (the first watched value
       always does, unless it is NaN), it becomes the best and the epoch never stops the fit;
       ``wait`` goes back to 0 only if the value also beats ``baseline`` (when one is given);
    3. otherwise the fit is cancelled once ``wait >= patience``, except at the first epoch.

    So ``patience=0`` and ``patience=1`` both stop at the first epoch that does not improve, and with
    a ``baseline`` that is never beaten the fit runs on while the metric keeps improving, and stops
    at the first epoch that does not improve once ``patience`` epochs have gone by.

    With ``restore_best_weights`` the weights of the best epoch are copied to host memory whenever
    a new best is found and put back into the model when the fit ends (whether it stopped early,
    finished, or was cancelled by another callback), so the trained model is the best one seen.
    As in Keras, when no watched epoch improved (every value NaN) the first watched epoch's weights
    stand in for the best ones, and ``best_epoch`` names that epoch.

    What epochal adds to Keras: the direction comes from the metric's ``higher_is_better`` (Keras
    guesses it from the name); ``threshold_mode="rel"`` gives torch's relative threshold; NaN is
    never an improvement, also at the first watched epoch (recent Keras, whose best starts as
    ``None``, would take a NaN first value as its best and never improve on it again); the state
    is saved in every checkpoint, so a resumed run stops at the same epoch and restores the same
    weights.

    The callback runs late (``order=95``) so that loggers and the run logger record the last epoch
    before the fit is cancelled; :class:`~epochal.callbacks.model_checkpoint.ModelCheckpoint`
    writes its checkpoint of that epoch at ``after_cancel_fit``.

    Arguments after ``monitor`` are keyword-only: Keras' positional order (with its ``verbose``)
    cannot be kept, and a silently shifted ``patience`` would be worse than a ``TypeError``.

    Args:
        monitor: the logged key, e.g. ``"valid/loss"``, ``"valid/accuracy"`` or ``"train/loss"``.
        min_delta: the smallest change that counts as an improvement (Keras' default 0).
        patience: epochs without improvement before stopping (Keras' default 0: stop at the first).
        mode: ``"auto"`` (the metric's declared direction), ``"min"`` or ``"max"``.
        baseline: a value the metric must beat for the waiting counter to be reset.
        restore_best_weights: put the best epoch's weights back into the model at the end.
        start_from_epoch: the number of warm-up epochs (epochs ``1 .. start_from_epoch``) that are
            not watched at all.
        threshold_mode: ``"abs"`` (Keras) or ``"rel"`` (torch): see
            :class:`~epochal.callbacks.base.MonitorCallback`.

    Attributes:
        wait: the waiting counter of the rule above.
        best: the best value so far, or None.
        best_epoch: the epoch of the best value (or of the weights standing in for it), or None.
        stopped_epoch: the epoch at whose end the fit was cancelled, or None.

    Epochs are numbered as the screen, ``metrics.jsonl`` and ``summary.json`` number them: from 1,
    the first epoch being epoch 1 (``learner.state.epoch_number``; Keras counts from 0 internally
    and prints from 1).

    Examples:
        >>> stopper = EarlyStopping("valid/accuracy", patience=3, restore_best_weights=True)
        >>> Learner(model, data, metrics=["accuracy"], callbacks=[stopper]).fit(50)
        >>> stopper.best_epoch, stopper.stopped_epoch
    """

    order = 95

    def __init__(self, monitor: str = "valid/loss", *, min_delta: float = 0.0, patience: int = 0,
                 mode: str = "auto", baseline: float | None = None, restore_best_weights: bool = False,
                 start_from_epoch: int = 0, threshold_mode: str = "abs"):
        super().__init__(monitor=monitor, mode=mode, min_delta=min_delta, baseline=baseline,
                         threshold_mode=threshold_mode)
        for arg, value in (("patience", patience), ("start_from_epoch", start_from_epoch)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"EarlyStopping: {arg} must be an int >= 0 (epochs), got {value!r}")
        self.patience = patience
        self.start_from_epoch = start_from_epoch
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

    def _keep_weights(self, epoch: int) -> None:
        self.best_epoch = epoch
        if self.restore_best_weights:
            self.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in self.learner.model.state_dict().items()}

    def after_epoch(self) -> None:
        value = self.current()  # also in the warm-up, so a wrong key fails at the first epoch
        epoch = self.learner.state.epoch_number
        if epoch <= self.start_from_epoch:
            return
        self.wait += 1
        if self.beats(value, self.best):
            self.best = value
            self._keep_weights(epoch)
            if self.baseline is None or self.beats(value, self.baseline):
                self.wait = 0
            return  # an improving epoch never stops the fit, even below the baseline
        if self.restore_best_weights and self.best_weights is None:
            self._keep_weights(epoch)  # nothing improved yet: the first watched weights are the best
        if self.wait >= self.patience and epoch > 1:
            self.stopped_epoch = epoch
            against = "the best or the baseline" if self.baseline is not None else "the best"
            raise CancelFit(f"EarlyStopping: {self.monitor} did not improve on {against} for {self.wait} "
                            f"epochs (best {self.best} at epoch {self.best_epoch})")

    def after_fit(self) -> None:
        if self.restore_best_weights and self.best_weights is not None:
            self.learner.model.load_state_dict(self.best_weights)

    def run_summary(self) -> dict[str, Any]:
        if not (self.restore_best_weights and self.best_weights is not None):
            return {}
        step = next((r.get("step") for r in self.learner.history if r.get("epoch") == self.best_epoch), None)
        return {"final_weights": {"source": "best", "epoch": self.best_epoch, "step": step,
                                  "restored_by": "EarlyStopping(restore_best_weights=True)"}}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(wait=self.wait, best_epoch=self.best_epoch, stopped_epoch=self.stopped_epoch,
                     best_weights=self.best_weights, **{EPOCHS_FROM: 1})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.wait = int(state.get("wait", 0))
        self.best_epoch = restored_epochs(state, state.get("best_epoch"))
        self.stopped_epoch = restored_epochs(state, state.get("stopped_epoch"))
        weights = state.get("best_weights")
        self.best_weights = {k: v.to("cpu") for k, v in weights.items()} if weights is not None else None
