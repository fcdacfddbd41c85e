"""Callbacks the search tests put into recipes; imported by name in worker processes too.

``ScriptedAccuracy`` makes each trial's outcome a function of its number, so that which trials a
threshold pruner stops does not depend on how two parallel workers happened to share the trials.
``BlockOnTrial`` holds one trial mid-fit and tells the test which process to kill.
"""

from __future__ import annotations

import os
import threading

from epochal.callbacks.base import Callback


def _number(learner) -> int:
    return int(learner.run_dir.name.removeprefix("trial_"))


class ScriptedAccuracy(Callback):
    """Sets ``valid/accuracy`` to ``high`` for even trial numbers and ``low`` for odd ones; raises in
    the trial numbered ``fail``."""

    order = -10

    def __init__(self, low: float = 0.1, high: float = 0.6, fail: int = -1):
        self.low, self.high, self.fail = low, high, fail

    def before_fit(self) -> None:
        if _number(self.learner) == self.fail:
            raise RuntimeError("scripted failure")

    def after_validate(self) -> None:
        value = self.high if _number(self.learner) % 2 == 0 else self.low
        self.learner.epoch_metrics["valid/accuracy"] = value + 0.01 * self.learner.state.epoch


class BlockOnTrial(Callback):
    """After the first epoch of trial ``trial``, writes this process's id into the FIFO ``fifo`` and
    waits for ever (the test kills the process)."""

    def __init__(self, trial: int = 1, fifo: str = ""):
        self.trial, self.fifo = trial, fifo

    def after_epoch(self) -> None:
        if _number(self.learner) == self.trial:
            with open(self.fifo, "w") as handle:
                handle.write(str(os.getpid()))
            threading.Event().wait()
