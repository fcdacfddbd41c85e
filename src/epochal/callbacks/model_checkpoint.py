"""ModelCheckpoint: save the training state (latest and best) so a run can resume or be evaluated.

Every file is a full, resumable checkpoint written atomically by ``Learner.save_checkpoint``: the
bytes go to a temporary file that is renamed over the target, so a crash during a save never
damages the previous checkpoint; the temporary files of killed writers are removed when a fit
starts, and a full disk raises :class:`~epochal.utils.DiskFullError` with the previous file kept.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch

from epochal.callbacks.base import EPOCHS_FROM, MonitorCallback, restored_epochs
from epochal.state import atomic_write_bytes
from epochal.utils import remove_stale_temps, temp_file_beside

__all__ = ["ModelCheckpoint", "weights_are_finite"]


def _link_or_copy(source: Path, target: Path) -> None:
    """Make ``target`` hold the bytes of ``source`` atomically: a hard link when possible, else a copy.

    A hard link costs nothing and is safe here because checkpoints are only ever replaced by a
    rename (a new file), never rewritten in place.
    """
    fd, tmp = temp_file_beside(target)  # a name of this writer: a kill leaves nothing a later run cannot clean
    os.close(fd)
    try:
        tmp.unlink()
        os.link(source, tmp)
        os.replace(tmp, target)
    except OSError:
        tmp.unlink(missing_ok=True)
        data = source.read_bytes()
        atomic_write_bytes(target, lambda handle: handle.write(data))


def weights_are_finite(model: torch.nn.Module) -> bool:
    """Whether every floating-point parameter and buffer of ``model`` is finite (one device read)."""
    tensors = [t for t in model.state_dict().values() if t.is_floating_point() or t.is_complex()]
    if not tensors:
        return True
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


class ModelCheckpoint(MonitorCallback):
    """Write ``last.pt`` (the latest state, used for resume) and ``best.pt`` (the best epoch).

    ``last.pt`` is written at the end of every ``every_n_epochs``-th epoch and of the fit's last
    epoch, and, with ``every_n_steps``, also every that many optimizer steps in the middle of an
    epoch, so a crash loses at most that much work. ``best.pt`` is written at the end of every epoch
    whose monitored value beats the best so far (direction from the metric's ``higher_is_better``
    unless ``mode`` forces one). With ``keep_epochs`` a copy ``epoch_<n>.pt`` of every epoch-end
    checkpoint is kept as well (``epoch_0003.pt`` holds the state at the end of epoch 3, the third).

    Non-finite weights are never saved: before every write the weights are checked (one device
    read per save, negligible next to the save itself) and a save of NaN or infinite weights is
    skipped with a warning, so the files on disk always hold the last good state. This is what
    lets :class:`~epochal.callbacks.terminate_on_nan.TerminateOnNaN` stop a diverged run while
    keeping its last good checkpoint, whichever runs first and whatever the logging interval.

    The callback runs last at the end of an epoch (``order=100``), after every callback that
    updates its state there, so a checkpoint holds a consistent picture of the whole training
    state. When a callback cancels the fit at the end of an epoch (early stopping), that epoch is
    saved at ``after_cancel_fit``.

    In a data-parallel job the callback runs on every rank (a save gathers every rank's RNG
    states) and decides from rank 0's epoch record, so every rank saves at the same points; rank 0
    alone writes the files.

    Args:
        dirpath: the folder for the files (default: ``<run_dir>/checkpoints``).
        monitor: the logged key that decides ``best.pt``, e.g. ``"valid/accuracy"``.
        mode: ``"auto"`` (the metric's declared direction), ``"min"`` or ``"max"``.
        min_delta: the smallest change that counts as an improvement.
        baseline: a value the metric must beat before a best checkpoint is written.
        save_best: write ``best.pt``.
        save_last: write ``last.pt`` (``save_last=False`` gives best-only checkpointing).
        every_n_epochs: epochs between epoch-end writes of ``last.pt``.
        every_n_steps: optimizer steps between mid-epoch writes of ``last.pt`` (None: none).
        keep_epochs: also keep ``epoch_<n>.pt`` (epochs numbered from 1) for every epoch-end write.
        threshold_mode: ``"abs"`` (Keras) or ``"rel"`` (torch's relative ``min_delta``): see
            :class:`~epochal.callbacks.base.MonitorCallback`.

    Attributes:
        best_epoch: the epoch of the best checkpoint (numbered from 1, as on the screen), or None.
        skipped: ``(step, file name)`` of every save skipped because the weights were not finite.

    Examples:
        >>> checkpoint = ModelCheckpoint(monitor="valid/accuracy", every_n_steps=500)
        >>> Learner(model, data, metrics=["accuracy"], callbacks=[checkpoint], run_dir="runs/a").fit(10)
        >>> learner.load_checkpoint("runs/a/checkpoints/best.pt", weights_only=True)
    """

    order = 100

    def __init__(self, dirpath: str | Path | None = None, monitor: str = "valid/loss", mode: str = "auto",
                 min_delta: float = 0.0, baseline: float | None = None, save_best: bool = True,
                 save_last: bool = True, every_n_epochs: int = 1, every_n_steps: int | None = None,
                 keep_epochs: bool = False, threshold_mode: str = "abs"):
        super().__init__(monitor=monitor, mode=mode, min_delta=min_delta, baseline=baseline,
                         threshold_mode=threshold_mode)
        if not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise ValueError(f"ModelCheckpoint: every_n_epochs must be an int >= 1, got {every_n_epochs!r}")
        if every_n_steps is not None and (not isinstance(every_n_steps, int) or every_n_steps < 1):
            raise ValueError(f"ModelCheckpoint: every_n_steps must be None or an int >= 1, got {every_n_steps!r}")
        if not (save_best or save_last):
            raise ValueError("ModelCheckpoint: save_best and save_last are both False; nothing would be saved")
        self.dirpath = Path(dirpath) if dirpath is not None else None
        self.save_best, self.save_last = save_best, save_last
        self.every_n_epochs, self.every_n_steps, self.keep_epochs = every_n_epochs, every_n_steps, keep_epochs
        self._reset()

    def _reset(self) -> None:
        self.best = None
        self.higher_is_better = None
        self.best_epoch: int | None = None
        self.skipped: list[tuple[int, str]] = []
        self._saved_step = -1  # the step of the last write of last.pt
        self._done_epoch = -1  # the last epoch whose end was handled

    @property
    def folder(self) -> Path:
        """Where the checkpoints go."""
        return self.dirpath if self.dirpath is not None else self.in_run_dir("checkpoints", "dirpath")

    @property
    def last_path(self) -> Path:
        return self.folder / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.folder / "best.pt"

    def before_fit(self) -> None:
        if self.learner.state.step == 0:
            self._reset()
        if self.learner.is_main:  # in a job, rank 0 alone writes checkpoints
            self.folder.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(self.folder)  # half-written checkpoints of killed runs

    def _finite_or_warn(self, what: str) -> bool:
        # a save is a collective in a job: every rank follows rank 0's check, or one would wait forever
        if self.learner.strategy.agree(weights_are_finite(self.learner.model)):
            return True
        self.skipped.append((self.learner.state.step, what))
        warnings.warn(f"ModelCheckpoint: weights are not finite at step {self.learner.state.step}; {what} was "
                      "not written and keeps the last good state", RuntimeWarning, stacklevel=3)
        return False

    def after_batch(self) -> None:
        learner = self.learner
        if (not learner.training or self.every_n_steps is None or not self.save_last
                or learner.state.step % self.every_n_steps or learner.state.step == self._saved_step
                or learner.state.step >= learner.state.total_steps):
            return
        if learner.iteration == learner.n_batches - 1 and learner.state.epoch_number % self.every_n_epochs == 0:
            return  # the end of this epoch writes last.pt anyway
        if not self._finite_or_warn("last.pt"):
            return
        # the learner has advanced its counters before after_batch: this is the resume position
        learner.save_checkpoint(self.last_path)
        self._saved_step = learner.state.step

    def after_epoch(self) -> None:
        learner = self.learner
        epoch = learner.state.epoch_number
        if self._done_epoch == epoch or not learner.history or learner.history[-1]["epoch"] != epoch:
            return  # already handled, or the epoch was cancelled before it was recorded
        self._done_epoch = epoch
        previous = (self.best, self.best_epoch)
        improved = self.save_best and self.is_improvement(self.current())
        if improved:  # updated before saving, so the saved state of this callback is the new one
            self.best, self.best_epoch = learner.epoch_metrics[self.monitor], epoch
        final = learner.state.step >= learner.state.total_steps
        write_last = self.save_last and (epoch % self.every_n_epochs == 0 or final)
        if not (improved or write_last):
            return
        files = " and ".join(name for name, on in (("last.pt", write_last), ("best.pt", improved)) if on)
        if not self._finite_or_warn(files):
            self.best, self.best_epoch = previous
            return
        learner.save_checkpoint(self.last_path if write_last else self.best_path)
        if write_last:
            self._saved_step = learner.state.step
            if not learner.is_main:
                return
            if improved:
                _link_or_copy(self.last_path, self.best_path)
            if self.keep_epochs:
                _link_or_copy(self.last_path, self.folder / f"epoch_{epoch:04d}.pt")

    def after_cancel_fit(self) -> None:
        self.after_epoch()  # a callback cancelled the fit at the end of an epoch: save that epoch

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(best_epoch=self.best_epoch, done_epoch=self._done_epoch, **{EPOCHS_FROM: 1})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.best_epoch = restored_epochs(state, state.get("best_epoch"))
        self._done_epoch = restored_epochs(state, state.get("done_epoch", -1))
