"""Callback and MonitorCallback: the two base classes of every callback.

A callback implements any of the events in :data:`epochal.events.EVENTS` as methods taking no
arguments; it reads and changes the training through ``self.learner``. Callbacks run in
ascending ``order`` (ties keep insertion order). State that must survive a crash goes in
``state_dict``/``load_state_dict`` and is saved in every checkpoint.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from epochal.events import EVENTS
from epochal.utils import did_you_mean

if TYPE_CHECKING:
    from epochal.learner import Learner

__all__ = ["EPOCHS_FROM", "Callback", "MonitorCallback", "check_events", "restored_epochs"]

_EVENT_LIKE = re.compile(r"^(before|after)_[a-z_]+$")


#: Saved in the state of callbacks that record epochs: they number them from 1, as
#: ``learner.state.epoch_number`` does. States without it come from checkpoints that counted from 0.
EPOCHS_FROM = "epochs_from"


def restored_epochs(state: dict[str, Any], value: Any) -> Any:
    """Epoch number(s) of a loaded callback state in today's numbering (from 1); None stays None."""
    shift = 0 if state.get(EPOCHS_FROM) == 1 else 1
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [int(v) + shift for v in value]
    return int(value) + shift


def check_events(callback: Callback) -> None:
    """Reject methods that look like events but are not (a typo would silently never run)."""
    for attr in dir(type(callback)):
        if _EVENT_LIKE.match(attr) and attr not in EVENTS:
            raise AttributeError(
                f"{type(callback).__name__}.{attr} is not an event{did_you_mean(attr, EVENTS)} "
                f"(events: {', '.join(EVENTS)})"
            )


class Callback:
    """Base class of callbacks.

    Attributes:
        order: callbacks run in ascending order at every event (default 0; loggers run late).
        rank_zero_only: in a data-parallel job, only rank 0 runs this callback (for callbacks that
            write files or print; their state in checkpoints is rank 0's). Callbacks that decide
            (stop, change the rate, save) run on every rank; they see rank 0's epoch record.
        learner: set when the callback is attached to a Learner.

    Examples:
        >>> class PrintEpoch(Callback):
        ...     def after_epoch(self):
        ...         print(self.learner.state.epoch, self.learner.epoch_metrics)
    """

    order: int = 0
    rank_zero_only: bool = False
    learner: Learner

    @property
    def name(self) -> str:
        """Snake-case class name, the key of this callback's state in checkpoints."""
        return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", type(self).__name__).lower()

    def state_dict(self) -> dict[str, Any]:
        """Plain data (numbers, strings, lists, dicts, tensors) needed to resume exactly."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""

    def run_summary(self) -> dict[str, Any]:
        """Keys this callback adds to the run's ``summary.json`` (plain data; mappings merge one level deep).

        A callback that decides which weights the run ends with returns them under
        ``final_weights`` (``{"source": "best", "epoch": 3, "step": 120}``, or an averaged
        ``{"source": "swa", "checkpoint": "checkpoints/swa.pt"}``): see
        :class:`~epochal.callbacks.run_logger.RunLogger`.
        """
        return {}

    def in_run_dir(self, name: str, argument: str) -> Path:
        """``learner.run_dir / name``, for callbacks that write there unless given their own path.

        Raises:
            ValueError: when the learner has no run folder, naming ``argument`` (the callback's own
                path option) as the alternative.
        """
        if self.learner.run_dir is None:
            cls = type(self).__name__
            raise ValueError(f"{cls}: the learner has no run_dir; pass run_dir to the Learner or {argument} to {cls}")
        return self.learner.run_dir / name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(order={self.order})"


class MonitorCallback(Callback):
    """Shared logic of callbacks that watch one logged metric (early stopping, checkpoints, plateau).

    Args:
        monitor: the logged key, e.g. ``"valid/loss"`` or ``"valid/accuracy"``; a bare metric name
            such as ``"accuracy"`` means its validation value.
        mode: ``"auto"`` reads the direction the metric declares (``higher_is_better``);
            ``"min"`` or ``"max"`` force it.
        min_delta: how much better a value must be to count as an improvement: an absolute amount
            with ``threshold_mode="abs"`` (Keras' ``min_delta``), a fraction of the best value with
            ``"rel"`` (torch's ``threshold``).
        baseline: a value the metric must beat before anything counts as an improvement.
        threshold_mode: ``"abs"`` (Keras; the default): ``value`` improves on ``best`` when it is
            lower than ``best - min_delta`` (``"min"``) or higher than ``best + min_delta``
            (``"max"``). ``"rel"`` (torch's ``ReduceLROnPlateau(threshold_mode="rel")``): lower than
            ``best * (1 - min_delta)`` or higher than ``best * (1 + min_delta)``. As in torch, the
            relative rule is meant for metrics that stay positive.

    Comparisons are strict, and NaN is never an improvement. A key that the learner does not log
    raises at the first validation, naming the keys it does.
    """

    def __init__(self, monitor: str = "valid/loss", mode: str = "auto", min_delta: float = 0.0,
                 baseline: float | None = None, threshold_mode: str = "abs"):
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"{type(self).__name__}: mode must be 'auto', 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("abs", "rel"):
            raise ValueError(f"{type(self).__name__}: threshold_mode must be 'abs' or 'rel', got {threshold_mode!r}")
        if min_delta < 0:
            raise ValueError(f"{type(self).__name__}: min_delta must be >= 0, got {min_delta}")
        self.monitor = monitor if "/" in monitor else f"valid/{monitor}"
        self.mode = mode
        self.min_delta = min_delta
        self.baseline = baseline
        self.threshold_mode = threshold_mode
        self.best: float | None = None
        self.higher_is_better: bool | None = None

    def current(self) -> float:
        """The monitored value of the epoch that just ended; resolves the direction on first use."""
        metrics = self.learner.epoch_metrics
        if self.monitor not in metrics:
            raise KeyError(
                f"{type(self).__name__} monitors {self.monitor!r}, which is not logged"
                f"{did_you_mean(self.monitor, metrics)}; available keys: {sorted(metrics)}"
            )
        if self.higher_is_better is None:
            if self.mode == "auto":
                self.higher_is_better = self.learner.metric_directions.get(self.monitor, False)
            else:
                self.higher_is_better = self.mode == "max"
        return metrics[self.monitor]

    def beats(self, value: float, reference: float | None) -> bool:
        """Whether ``value`` improves on ``reference`` by more than ``min_delta`` (absolute or relative,
        see ``threshold_mode``) in the metric's direction; NaN never does, a ``None`` reference
        always is beaten."""
        if math.isnan(value):
            return False
        if reference is None:
            return True
        if self.threshold_mode == "rel":
            if self.higher_is_better:
                return value > reference * (1.0 + self.min_delta)
            return value < reference * (1.0 - self.min_delta)
        if self.higher_is_better:
            return value > reference + self.min_delta
        return value < reference - self.min_delta

    def is_improvement(self, value: float) -> bool:
        """Whether ``value`` beats the best so far (or, before any best, the baseline)."""
        return self.beats(value, self.best if self.best is not None else self.baseline)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "higher_is_better": self.higher_is_better}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")
        self.higher_is_better = state.get("higher_is_better")
