"""ProgressBar: live epoch and batch bars in a terminal, one line per epoch elsewhere.

The bars are drawn by ``rich`` from a background thread a few times a second; a batch only adds
one to a counter that the drawing thread reads, and the loss and learning rate shown are those the
learner already read at its logging points (``after_log``), so the bar never makes the host wait
for the device.

Both bars show an estimate of the time left: the batch bar for the current pass (rich's estimate
from its recent speed), the run bar for the whole fit, from the average time per optimizer step
since the fit started (validation included), which a slow first batch or a long validation does
not throw off. Off a terminal, each epoch's line ends with the run's estimate.
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


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def format_epoch_line(record: dict[str, Any], n_epochs: int | None = None, seconds: float | None = None,
                      samples_per_s: float | None = None, eta_s: float | None = None) -> str:
    """One concise line for an epoch record: ``epoch 2/3  lr 0.1  train/loss 0.69 ... 1.2s 5e3 samples/s``.

    ``record["epoch"]`` is the epoch's number as history records keep it (from 1); ``eta_s``, the
    estimated seconds left in the fit, ends the line as ``eta 0:01:23``.
    """
    epoch = record.get("epoch", 1)
    parts = [f"epoch {epoch}/{n_epochs}" if n_epochs else f"epoch {epoch}", f"step {record.get('step', 0)}"]
    parts += [f"{key} {_number(value)}" for key, value in record.items() if key not in _POSITION_KEYS]
    if seconds is not None:
        parts.append(f"{seconds:.1f}s")
    if samples_per_s is not None and math.isfinite(samples_per_s):
        parts.append(f"{samples_per_s:,.0f} samples/s")
    if eta_s is not None and math.isfinite(eta_s):
        parts.append(f"eta {_clock(eta_s)}")
    return "  ".join(parts)


class ProgressBar(Callback):
    """Show training progress: bars in a terminal, one line per epoch otherwise.

    In a terminal (``console.is_terminal``) there is a run bar (the epoch, optimizer steps done of
    the fit's total and the time left in the fit) and a batch bar (batches of the current pass,
    its time left, the throughput in samples per second and the running loss and learning rate,
    refreshed at every logging point); after each epoch its metrics are printed above the bars. When the output is
    not a terminal (a log file, CI, a notebook cell captured to text) no bars are drawn: one
    concise line is printed per epoch, or nothing with ``quiet=True``.

    Args:
        quiet: print nothing when the output is not a terminal.
        console: the ``rich.console.Console`` to draw on (default: one on standard output).
        refresh_per_second: redraws per second of the bars.

    Examples:
        >>> Learner(model, data, callbacks=[ProgressBar()]).fit(3)
        epoch 1/3  step 12  lr 0.1  train/loss 0.6931  valid/loss 0.6812  0.4s  5,120 samples/s  eta 0:00:01
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
        self._fit_start, self._start_step = time.perf_counter(), learner.state.step
        self.lines = []
        self._metrics_text = ""
        self._progress = self._start_bars() if self.console.is_terminal else None

    def eta_seconds(self) -> float | None:
        """Seconds left in the fit at the average pace since it started (None before the first step)."""
        state = self.learner.state
        done = state.step - self._start_step
        if done <= 0:
            return None
        return (time.perf_counter() - self._fit_start) / done * max(0, state.total_steps - state.step)

    def _start_bars(self):
        from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
        from rich.text import Text

        callback = self
        self._batch_task = None

        class _Count(ProgressColumn):
            def render(self, task) -> Text:
                total = "?" if task.total is None else f"{int(task.total):,}"
                return Text(f"{int(task.completed):,}/{total} {task.fields['unit']}")

        class _Eta(ProgressColumn):  # the run bar's from the fit's average pace, the batch bar's from rich's
            def render(self, task) -> Text:
                seconds = task.fields["eta"] if task.fields["whole_fit"] else task.time_remaining
                return Text("eta -:--:--" if seconds is None else f"eta {_clock(seconds)}")

        class _CountedProgress(Progress):
            def get_renderables(self):  # runs on the drawing thread: copy the counters in
                if callback._batch_task is not None:
                    self.update(callback._batch_task, completed=callback._count)
                    self.update(callback._run_task, completed=callback.learner.state.step, eta=callback.eta_seconds())
                yield from super().get_renderables()

        progress = _CountedProgress(
            TextColumn("{task.description}"), BarColumn(), _Count(), TimeElapsedColumn(), _Eta(),
            TextColumn("{task.fields[info]}"), console=self.console, refresh_per_second=self.refresh_per_second,
        )
        state = self.learner.state
        self._run_task = progress.add_task(self._run_label(), total=state.total_steps, completed=state.step,
                                           info="", unit="steps", eta=None, whole_fit=True)
        self._batch_task = progress.add_task("train", total=None, info="", unit="batches", eta=None, whole_fit=False)
        progress.start()
        return progress

    def _run_label(self) -> str:
        return f"epoch {self.learner.state.epoch_number}/{self.n_epochs}"

    def after_fit(self) -> None:
        if self._progress is not None:
            self._progress.update(self._batch_task, completed=self._count)
            self._progress.stop()
            self._progress = None

    # ------------------------------------------------------------------ epoch level
    def before_epoch(self) -> None:
        self._epoch_start = time.perf_counter()
        self._train_seconds = None
        if self._progress is not None:
            self._progress.update(self._run_task, description=self._run_label())

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
        if not history or history[-1]["epoch"] != self.learner.state.epoch_number:
            return
        throughput = self._throughput if self._train_seconds else None
        state = self.learner.state
        eta = self.eta_seconds() if state.step < state.total_steps else None
        line = format_epoch_line(history[-1], self.n_epochs, time.perf_counter() - self._epoch_start, throughput, eta)
        self.lines.append(line)
        if self._progress is not None:
            self._progress.console.print(line, markup=False, highlight=False, soft_wrap=True)
        elif self.quiet:
            return
        elif self.console.record:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:  # plain text, no bars: rich's rendering (about 1 ms a line) buys nothing here
            self.console.file.write(line + "\n")
            self.console.file.flush()
