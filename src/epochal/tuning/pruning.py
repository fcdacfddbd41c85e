"""OptunaPruning: report each epoch's validation value to an Optuna trial and stop the fit it prunes.

Early stopping of unpromising trials is what makes a search affordable: Golovin et al.'s median
stopping rule (*Google Vizier*, KDD 2017), successive halving and Hyperband (Li et al., JMLR 2018)
all decide from the values a trial reports at each step, here one per epoch.

The rule: after every epoch, the monitored value goes to ``trial.report(value, epoch)``; when the
study's pruner then says ``trial.should_prune()``, the fit is cancelled with
:class:`~epochal.events.CancelFit` (so ``after_cancel_fit`` runs: checkpoints and the run summary of
the pruned trial are written as for any stopped run) and :attr:`OptunaPruning.pruned` is set; the
search then records the trial as PRUNED.

Under data-parallel training only one process may talk to the study: rank 0 reports and decides,
and the decision is broadcast to every rank as a tensor so that all of them stop at the same epoch
(a rank that stopped alone would hang the others in their next collective), through the learner's
strategy (:meth:`epochal.distributed.Strategy.agree`); for a single process that is a no-op.

Nothing is saved in checkpoints: a trial is one fit, never resumed.
"""

from __future__ import annotations

from epochal.callbacks.base import MonitorCallback
from epochal.events import CancelFit

__all__ = ["OptunaPruning"]


class OptunaPruning(MonitorCallback):
    """Report the monitored value to an Optuna trial after each epoch; cancel the fit when it is pruned.

    Runs after the run logger (so the pruned epoch is in ``metrics.jsonl``) and before
    :class:`~epochal.callbacks.early_stopping.EarlyStopping` (so every epoch is reported).

    Args:
        trial: the ``optuna.trial.Trial``; under DDP only rank 0 needs one (others may pass None).
        monitor: the logged key, e.g. ``"valid/accuracy"`` (a bare name means its validation value).

    Attributes:
        pruned: whether the trial was pruned.
        pruned_epoch: the (0-based) epoch after which it was, or None.
        reported: ``(epoch, value)`` pairs reported so far (rank 0).

    Examples:
        >>> pruning = OptunaPruning(trial, monitor="valid/accuracy")
        >>> Learner(model, data, metrics=["accuracy"], callbacks=[pruning]).fit(one_cycle(10, 0.1))
        >>> if pruning.pruned:
        ...     raise optuna.TrialPruned()
    """

    order = 92

    def __init__(self, trial, monitor: str = "valid/loss"):
        super().__init__(monitor=monitor)
        self.trial = trial
        self.pruned = False
        self.pruned_epoch: int | None = None
        self.reported: list[tuple[int, float]] = []

    def after_epoch(self) -> None:
        value = self.current()
        epoch = self.learner.state.epoch
        prune = False
        strategy = self.learner.strategy
        if strategy.is_main:
            if self.trial is None:
                raise ValueError("OptunaPruning: the deciding process (rank 0) needs the Optuna trial, got None")
            self.trial.report(float(value), epoch)
            self.reported.append((epoch, float(value)))
            prune = bool(self.trial.should_prune())
        if strategy.agree(prune):  # rank 0's decision on every rank
            self.pruned, self.pruned_epoch = True, epoch
            raise CancelFit(f"OptunaPruning: trial pruned after epoch {epoch + 1} ({self.monitor} {value:.6g})")
