"""CSVLogger: exact contents, a stable header, one row per epoch across a crash and resume."""

from __future__ import annotations

import csv

import pytest

from epochal.callbacks.base import Callback
from epochal.callbacks.csv_logger import CSVLogger
from epochal.callbacks.model_checkpoint import ModelCheckpoint


def read(path, delimiter=","):
    with open(path, newline="") as handle:
        return list(csv.reader(handle, delimiter=delimiter))


def test_one_row_per_epoch_with_every_history_value(make_learner, tmp_path):
    learner = make_learner(tmp_path, [CSVLogger()])
    history = learner.fit(3)
    rows = read(tmp_path / "metrics.csv")
    assert rows[0] == ["epoch", "step", "phase", "lr", "valid/loss", "valid/accuracy", "train/loss"]
    assert len(rows) == 4
    for row, record in zip(rows[1:], history):
        assert [int(row[0]), int(row[1]), int(row[2])] == [record["epoch"], record["step"], record["phase"]]
        assert [float(v) for v in row[3:]] == [record[k] for k in rows[0][3:]]  # every digit kept


def test_resume_rewrites_from_the_checkpoint_without_duplicates(crash_at, make_learner, tmp_path):
    with pytest.raises(RuntimeError, match="simulated crash"):
        # the crash comes after the CSV row of epoch 2 and before its checkpoint
        make_learner(tmp_path, [CSVLogger(), ModelCheckpoint(), crash_at(2, order=90)]).fit(5)
    assert len(read(tmp_path / "metrics.csv")) == 1 + 3  # epoch 2 was logged but not checkpointed
    learner = make_learner(tmp_path, [CSVLogger(), ModelCheckpoint()])
    history = learner.fit(5, resume=tmp_path)
    rows = read(tmp_path / "metrics.csv")
    assert [r[0] for r in rows] == ["epoch", "1", "2", "3", "4", "5"]  # numbered as on the screen
    assert [float(r[4]) for r in rows[1:]] == [r["valid/loss"] for r in history]


def test_a_key_that_appears_later_extends_the_header(make_learner, tmp_path):
    class Extra(Callback):
        order = -1

        def after_validate(self):
            if self.learner.state.epoch >= 1:
                self.learner.epoch_metrics["valid/extra"] = 10.0 + self.learner.state.epoch

    make_learner(tmp_path, [Extra(), CSVLogger()]).fit(3)
    rows = read(tmp_path / "metrics.csv")
    assert rows[0][-1] == "valid/extra" and len(rows) == 4
    assert [r[-1] for r in rows[1:]] == ["", "11.0", "12.0"]
    assert all(len(r) == len(rows[0]) for r in rows)


def test_append_keeps_earlier_rows_and_default_overwrites(make_learner, tmp_path):
    path = tmp_path / "log.tsv"
    learner = make_learner(None, [CSVLogger(path, separator="\t")])
    learner.fit(2)
    learner.fit(1)
    assert [r[0] for r in read(path, "\t")] == ["epoch", "1"]
    appending = make_learner(None, [CSVLogger(path, separator="\t", append=True)])
    appending.fit(2)
    assert [r[0] for r in read(path, "\t")] == ["epoch", "1", "1", "2"]


def test_a_fresh_fit_pays_for_no_fsync_and_a_rewrite_stays_atomic(make_learner, tmp_path, monkeypatch):
    import os

    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd) or real(fd))
    stale = tmp_path / "metrics.csv"
    stale.write_text("old,rows\n1,2\n")
    learner = make_learner(None, [CSVLogger(stale)])  # no run folder: only the CSV is written
    learner.fit(2)
    assert calls == [] and [r[0] for r in read(stale)] == ["epoch", "1", "2"]  # the stale file was replaced
    learner.fit(1)
    assert calls == []
    appending = make_learner(None, [CSVLogger(stale, append=True)])
    appending.fit(1)  # rows already on disk are rewritten through a temporary file and fsync
    assert len(calls) >= 1 and [r[0] for r in read(stale)] == ["epoch", "1", "1"]


def test_no_folder_and_bad_separator_raise(make_learner):
    with pytest.raises(ValueError, match="run_dir.*path"):
        make_learner(None, [CSVLogger()]).fit(1)
    with pytest.raises(ValueError, match="separator"):
        CSVLogger(separator="::")
