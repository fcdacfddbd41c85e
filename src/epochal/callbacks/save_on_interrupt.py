"""SaveOnInterrupt: Ctrl-C or SIGTERM ends the fit at the next batch boundary with a checkpoint of it.

A pre-empted cluster job gets SIGTERM, a user at a terminal presses Ctrl-C; either way the work
done since the last checkpoint should not be lost. Lightning's trainer saves on SIGTERM for SLURM
requeueing and Keras' ``BackupAndRestore`` keeps a job resumable; this callback does the same for
any signal at the granularity of one optimizer step, so a resumed run continues exactly where the
signal arrived, also in the first epoch, before any epoch-end checkpoint exists.

The signal handler only records the signal: saving from inside a handler could interrupt a
checkpoint write half-way or run while the model is in the middle of a step. The callback acts at
the next point where the training state is whole: the end of a batch that ended an optimizer step
(with gradient accumulation, the end of the accumulation group), or the end of the epoch when the
signal arrives during validation (an epoch's validation is never cut short, so its record is
complete). There it writes ``last.pt`` through ``Learner.save_checkpoint`` and raises
:class:`Interrupted`, a ``KeyboardInterrupt``: the run summary says ``interrupted`` and
``epochal train --resume RUN`` continues bit for bit.

A second signal before the save starts stops at once (a hung data loader can always be left); a
second signal during the save is ignored until the file is complete, and checkpoint writes are
atomic anyway (a temporary file renamed over the old one), so neither can leave a damaged
checkpoint behind.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from epochal.callbacks.base import Callback

__all__ = ["Interrupted", "SaveOnInterrupt"]


class Interrupted(KeyboardInterrupt):
    """A fit stopped by a signal (Ctrl-C is SIGINT; schedulers send SIGTERM).

    Attributes:
        signum: the signal that stopped the fit.
        checkpoint: the checkpoint written at the stopping point, or None when none was (the
            second signal came first, the weights were not finite, or there was nowhere to write).
        position: ``{"epoch", "batch", "step", "total_steps"}`` where the fit stopped: the epoch
            being trained (numbered from 1), the batches of it done, optimizer steps taken.
        run_dir: the run folder, when the fit had one.
    """

    def __init__(self, signum: int, checkpoint: Path | None = None, position: dict[str, int] | None = None,
                 run_dir: Path | None = None):
        super().__init__(signal.Signals(signum).name)
        self.signum, self.checkpoint, self.position, self.run_dir = signum, checkpoint, position or {}, run_dir

    @property
    def exit_code(self) -> int:
        """The shell's exit status for a process ended by this signal: 128 + its number (130 for Ctrl-C)."""
        return 128 + int(self.signum)


class SaveOnInterrupt(Callback):
    """On SIGINT or SIGTERM, write a checkpoint at the next batch boundary and stop the fit.

    Handlers are installed at ``before_fit`` and the previous ones put back at ``after_fit``; a
    signal that was ignored when the fit started (``SIG_IGN``, as for background jobs) stays
    ignored. Outside the main thread (where Python cannot install handlers) the callback does
    nothing.

    Args:
        path: the checkpoint to write (default: the ``last.pt`` of an attached
            :class:`~epochal.callbacks.model_checkpoint.ModelCheckpoint`, else
            ``<run_dir>/checkpoints/last.pt``, the file ``fit(resume=run_dir)`` reads).
        signals: the signals to catch.

    Attributes:
        requested: the signal received and not yet acted on, or None.

    Examples:
        >>> learner = Learner(model, data, callbacks=[SaveOnInterrupt()], run_dir="runs/a")
        >>> try:
        ...     learner.fit(10)
        ... except Interrupted as stop:            # Ctrl-C: last.pt holds the exact position
        ...     learner.fit(10, resume="runs/a")   # later, in this or a new process
    """

    order = 110  # after ModelCheckpoint (100): every callback has updated its state for the batch

    def __init__(self, path: str | Path | None = None, signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM)):
        self.path = Path(path) if path is not None else None
        self.signals = tuple(signals)
        self.requested: int | None = None
        self._previous: dict[int, Any] = {}
        self._saving = False

    # ----------------------------------------------------------------- signal handling
    def before_fit(self) -> None:
        self.requested, self._saving = None, False
        self._restore()  # a previous fit that died left its handlers
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in self.signals:
            previous = signal.getsignal(signum)
            if previous is signal.SIG_IGN:
                continue
            signal.signal(signum, self._handle)
            self._previous[signum] = previous

    def _handle(self, signum: int, frame) -> None:
        if self._saving:  # let the checkpoint be completed; the fit stops right after it
            return
        if self.requested is not None:
            raise Interrupted(signum, run_dir=self.learner.run_dir)  # the second one: stop at once
        self.requested = signum
        # os.write is safe in a handler (print is not); the display catches up at its next refresh
        os.write(2, f"\n{signal.Signals(signum).name}: stopping at the next batch boundary and saving a "
                    "checkpoint there (send it again to stop at once, without one)\n".encode())

    def _restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}

    def after_fit(self) -> None:
        self._restore()

    # ----------------------------------------------------------------- stopping points
    def after_batch(self) -> None:
        learner = self.learner
        if self.requested is None or not learner.training:
            return  # during validation the epoch is finished first (after_epoch)
        step_done = (learner.iteration + 1) % learner.grad_accum == 0 or learner.iteration == learner.n_batches - 1
        if step_done:  # mid-accumulation gradients are not in a checkpoint: wait for the step
            self._stop()

    def after_epoch(self) -> None:
        if self.requested is not None:
            self._stop()

    def checkpoint_path(self) -> Path | None:
        """Where the checkpoint goes (see ``path``); None without a run folder or path."""
        from epochal.callbacks.model_checkpoint import ModelCheckpoint

        if self.path is not None:
            return self.path
        for callback in self.learner.callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.save_last:
                return callback.last_path
        return self.learner.run_dir / "checkpoints" / "last.pt" if self.learner.run_dir is not None else None

    def _stop(self) -> None:
        from epochal.callbacks.model_checkpoint import weights_are_finite

        learner, signum = self.learner, self.requested
        state = learner.state
        done = state.batch if learner.training else 0  # after validation the epoch is complete
        position = {"epoch": state.epoch_number, "batch": done, "step": state.step,
                    "total_steps": state.total_steps}
        path = self.checkpoint_path()
        if path is not None and not weights_are_finite(learner.model):
            path = None  # keep the last good checkpoint rather than save NaN weights over it
        if path is not None:
            self._saving = True
            try:
                learner.save_checkpoint(path)
            finally:
                self._saving = False
        raise Interrupted(signum, checkpoint=path, position=position, run_dir=learner.run_dir)
