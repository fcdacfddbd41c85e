"""ProgressBar: one line per epoch off a terminal, bars in one, nothing when quiet."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from epochal.callbacks.base import Callback
from epochal.callbacks.early_stopping import EarlyStopping
from epochal.callbacks.progress_bar import ProgressBar, format_epoch_line


def test_one_concise_line_per_epoch_when_not_a_terminal(make_learner, capsys):
    learner = make_learner(None, [ProgressBar()])
    history = learner.fit(3)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    for number, (line, record) in enumerate(zip(lines, history), 1):
        assert line.startswith(f"epoch {number}/3  step {4 * number}  lr 0.1  ")
        assert f"valid/loss {record['valid/loss']:.4g}" in line
        assert f"train/loss {record['train/loss']:.4g}" in line
        assert re.search(r"  \d+\.\ds  [\d,]+ samples/s$", line)
        assert "\x1b[" not in line  # no terminal escape codes in logs


def test_a_recording_console_records_the_lines(make_learner):
    console = Console(file=io.StringIO(), record=True)
    make_learner(None, [ProgressBar(console=console)]).fit(2)
    text = console.export_text()
    assert text.count("\n") == 2 and text.startswith("epoch 1/2  step 4")


def test_quiet_prints_nothing_but_keeps_the_lines(make_learner, capsys):
    bar = ProgressBar(quiet=True)
    make_learner(None, [bar]).fit(2)
    assert capsys.readouterr().out == ""
    assert len(bar.lines) == 2 and bar.lines[1].startswith("epoch 2/2  step 8")


def test_bars_in_a_terminal_count_batches_and_show_running_values(make_learner):
    out = io.StringIO()
    bar = ProgressBar(console=Console(file=out, force_terminal=True, width=160), refresh_per_second=50)
    seen = {}

    class Check(Callback):
        order = 99

        def after_train(self):
            seen.setdefault("batches", []).append(bar._count)

        def after_log(self):
            seen["text"] = bar._metrics_text

    make_learner(None, [bar, Check()], log_every=2).fit(2)
    assert seen["batches"] == [4, 4]
    assert re.fullmatch(r"[\d,]+ samples/s  loss \d\.\d+  lr 0\.1", seen["text"])
    text = out.getvalue()
    assert "epoch 1/2  step 4" in text and "epoch 2/2  step 8" in text
    assert "train" in text and "valid" in text and "2/2" in text  # the bars were drawn
    assert bar._progress is None  # stopped at the end of the fit


def test_the_epoch_cancelled_by_early_stopping_is_printed(make_learner, capsys):
    class Plateau(Callback):
        order = -1

        def after_validate(self):
            self.learner.epoch_metrics["valid/loss"] = 1.0

    make_learner(None, [Plateau(), EarlyStopping(patience=1), ProgressBar()]).fit(5)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["1/5", "2/5"]


def test_format_epoch_line():
    record = {"epoch": 0, "step": 10, "phase": 0, "lr": 0.001, "train/loss": 0.123456, "valid/accuracy": 0.9}
    line = format_epoch_line(record, n_epochs=5, seconds=2.25, samples_per_s=12345.6)
    assert line == "epoch 1/5  step 10  lr 0.001  train/loss 0.1235  valid/accuracy 0.9  2.2s  12,346 samples/s"
    assert format_epoch_line({"epoch": 4, "step": 3}) == "epoch 5  step 3"


def test_a_failed_fit_still_stops_the_bars(make_learner):
    bar = ProgressBar(console=Console(file=io.StringIO(), force_terminal=True, width=120))
    bad = EarlyStopping("valid/nope")
    learner = make_learner(None, [bar, bad])
    with pytest.raises(KeyError, match="valid/nope"):
        learner.fit(2)
    assert isinstance(learner.error, KeyError)
    assert bar._progress is None  # after_fit ran after the error and closed the live display
    learner.remove_callback(bad)
    learner.fit(1)
    assert bar._progress is None and learner.error is None
