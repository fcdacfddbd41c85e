"""ProgressBar: live epoch and batch bars in a terminal, one line per epoch elsewhere.

The bars are drawn by ``rich`` from a background thread a few times a second; a batch only adds
one to a counter that the drawing thread reads, and the loss and learning rate shown are those the
learner already read at its logging points (``after_log``), so the bar never makes the host wait
for the device.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from epochal.callbacks.base import Callback

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["ProgressBar", "format_epoch_line"]

_POSITION_KEYS = ("epoch", "step", "phase")


def _length(loader: Any) -> int | None:
    """Batches per pass, or None for a loader that does not know (an indeterminate bar)."""
    try:
        return len(loader)
    except TypeError:
        return None


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def format_epoch_line(record: dict[str, Any], n_epochs: int | None = None, seconds: float | None = None,
                      samples_per_s: float | None = None) -> str:
    """One concise line for an epoch record: ``epoch 2/3  lr 0.1  train/loss 0.69 ... 1.2s 5e3 samples/s``."""
    epoch = record.get("epoch", 0) + 1
    parts = [f"epoch {epoch}/{n_epochs}" if n_epochs else f"epoch {epoch}", f"step {record.get('step', 0)}"]
    parts += [f"{key} {_number(value)}" for key, value in record.items() if key not in _POSITION_KEYS]
    if seconds is not None:
        parts.append(f"{seconds:.1f}s")
    if samples_per_s is not None and math.isfinite(samples_per_s):
        parts.append(f"{samples_per_s:,.0f} samples/s")
    return "  ".join(parts)


class ProgressBar(Callback):
    """Show training progress: bars in a terminal, one line per epoch otherwise.

    In a terminal (``console.is_terminal``) there is an epoch bar and a batch bar with the
    throughput in samples per second and the running loss and learning rate (refreshed at every
    logging point); after each epoch its metrics are printed above the bars. When the output is
    not a terminal (a log file, CI, a notebook cell captured to text) no bars are drawn: one
    concise line is printed per epoch, or nothing with ``quiet=True``.

    Args:
        quiet: print nothing when the output is not a terminal.
        console: the ``rich.console.Console`` to draw on (default: one on standard output).
        refresh_per_second: redraws per second of the bars.

    Example:
        >>> Learner(model, data, callbacks=[ProgressBar()]).fit(3)
        epoch 1/3  step 12  lr 0.1  train/loss 0.6931  valid/loss 0.6812  0.4s  5,120 samples/s
    """

    order = 88  # before EarlyStopping (95), which may cancel the fit at the end of an epoch
    rank_zero_only = True  # in a data-parallel job, rank 0 alone writes and prints

    def __init__(self, quiet: bool = False, console: Console | None = None, refresh_per_second: float = 4.0):
        if refresh_per_second <= 0:
            raise ValueError(f"ProgressBar: refresh_per_second must be > 0, got {refresh_per_second}")
        self.quiet = quiet
        self.console = console
        self.refresh_per_second = refresh_per_second
        self.lines: list[str] = []
        self._progress = None
        self._count = 0

    # ------------------------------------------------------------------ fit level
    def before_fit(self) -> None:
        from rich.console import Console

        if self.console is None:
            self.console = Console()
        self.after_fit()  # a previous fit that died with an error left its bars running
        learner = self.learner
        self.n_epochs = max(1, math.ceil(learner.state.total_steps / max(1, learner.steps_per_epoch())))
        self.lines = []
        self._metrics_text = ""
        self._progress = self._start_bars() if self.console.is_terminal else None

    def _start_bars(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        callback = self
        self._batch_task = None

        class _CountedProgress(Progress):
            def get_renderables(self):  # runs on the drawing thread: copy the batch counter in
                if callback._batch_task is not None:
                    self.update(callback._batch_task, completed=callback._count)
                yield from super().get_renderables()

        progress = _CountedProgress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"), console=self.console, refresh_per_second=self.refresh_per_second,
        )
        self._epoch_task = progress.add_task("epoch", total=self.n_epochs, completed=self.learner.state.epoch, info="")
        self._batch_task = progress.add_task("train", total=None, info="")
        progress.start()
        return progress

    def after_fit(self) -> None:
        if self._progress is not None:
            self._progress.update(self._batch_task, completed=self._count)
            self._progress.stop()
            self._progress = None

    # ------------------------------------------------------------------ epoch level
    def before_epoch(self) -> None:
        self._epoch_start = time.perf_counter()
        self._train_seconds = None

    def before_train(self) -> None:
        learner = self.learner
        self._count = learner.state.batch
        self._train_start, self._train_samples = time.perf_counter(), learner.state.samples
        self._train_seconds = None
        if self._progress is not None:
            total = len(learner.train_loader(learner.phases[learner.state.phase]))
            self._progress.update(self._batch_task, description="train", total=total, completed=self._count)

    def after_batch(self) -> None:
        self._count += 1

    def after_log(self) -> None:
        learner = self.learner
        running = learner.running
        parts = [f"{self._samples_per_s():,.0f} samples/s"]
        parts += [f"{key} {_number(value)}" for key, value in running.items()]
        self._metrics_text = "  ".join(parts)
        if self._progress is not None:
            self._progress.update(self._batch_task, info=self._metrics_text)

    def _samples_per_s(self) -> float:
        elapsed = time.perf_counter() - self._train_start
        samples = self.learner.state.samples - self._train_samples
        return samples / elapsed if elapsed > 0 else float("nan")

    def after_train(self) -> None:
        self._train_seconds = time.perf_counter() - self._train_start
        self._throughput = self._samples_per_s()

    def before_validate(self) -> None:
        if self._progress is None:
            return
        self._count = 0
        total = _length(self.learner.data.valid)
        self._progress.update(self._batch_task, description="valid", total=total, completed=0)

    def after_epoch(self) -> None:
        history = self.learner.history
        if not history or history[-1]["epoch"] != self.learner.state.epoch:
            return
        throughput = self._throughput if self._train_seconds else None
        line = format_epoch_line(history[-1], self.n_epochs, time.perf_counter() - self._epoch_start, throughput)
        self.lines.append(line)
        if self._progress is not None:
            self._progress.update(self._epoch_task, completed=self.learner.state.epoch + 1,
                                  total=max(self.n_epochs, self.learner.state.epoch + 1))
            self._progress.console.print(line, markup=False, highlight=False, soft_wrap=True)
        elif self.quiet:
            return
        elif self.console.record:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:  # plain text, no bars: rich's rendering (about 1 ms a line) buys nothing here
            self.console.file.write(line + "\n")
            self.console.file.flush()
