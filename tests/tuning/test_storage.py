"""Storages: URL forms, SQLite in WAL mode, the journal, and failing the trials of dead or silent workers."""

from __future__ import annotations

import fcntl
import os
import socket
import sqlite3
import subprocess
import sys
import time

import optuna
import pytest

from epochal.tuning.storage import (
    ERROR_ATTR,
    HEARTBEAT_ATTR,
    WORKER_ATTR,
    AskLock,
    Heartbeat,
    fail_dead_trials,
    open_storage,
    redact,
    resolve_storage,
)

# these tests ask for trials themselves, outside Study.optimize, as epochal's workers do
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")


def test_resolve_storage_forms(tmp_path):
    study = tmp_path / "s"
    assert resolve_storage(None, study) == f"sqlite:///{study.resolve() / 'study.db'}"
    assert resolve_storage("journal", study) == f"journal://{study.resolve() / 'journal.log'}"
    assert resolve_storage("journal:///shared/x.log", study) == "journal:///shared/x.log"
    assert resolve_storage("postgresql://u:p@h/db", study) == "postgresql://u:p@h/db"
    with pytest.raises(ValueError, match="not a URL"):
        resolve_storage("study.db", study)
    with pytest.raises(ValueError, match="give the journal file"):
        resolve_storage("journal:", study)


def test_redact_hides_only_the_password():
    assert redact("postgresql://me:secret@db.example:5432/optuna") == "postgresql://me:***@db.example:5432/optuna"
    assert redact("sqlite:////tmp/a.db") == "sqlite:////tmp/a.db"


def test_sqlite_storage_uses_write_ahead_logging(tmp_path):
    url = resolve_storage(None, tmp_path)
    optuna.create_study(study_name="s", storage=open_storage(url))
    mode = sqlite3.connect(tmp_path / "study.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_trial_of_a_process_that_no_longer_exists_is_failed(tmp_path, kind):
    url = resolve_storage(None if kind == "sqlite" else "journal", tmp_path)
    study = optuna.create_study(study_name="s", storage=open_storage(url))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead, alive = study.ask(), study.ask()
    dead.set_user_attr(WORKER_ATTR, {"host": socket.gethostname(), "pid": int(gone.stdout)})
    alive.set_user_attr(WORKER_ATTR, {"host": socket.gethostname(), "pid": os.getpid()})
    assert fail_dead_trials(study, grace_period=3600) == [dead.number]
    states = {t.number: t.state for t in study.trials}
    assert states == {dead.number: optuna.trial.TrialState.FAIL, alive.number: optuna.trial.TrialState.RUNNING}
    assert "no longer exists" in study.trials[dead.number].user_attrs[ERROR_ATTR]


def test_journal_trial_without_a_recent_heartbeat_is_failed(tmp_path):
    storage = open_storage(resolve_storage("journal", tmp_path))
    study = optuna.create_study(study_name="s", storage=storage)
    silent, beating = study.ask(), study.ask()
    other_machine = {"host": "elsewhere", "pid": 1}
    for trial in (silent, beating):
        trial.set_user_attr(WORKER_ATTR, other_machine)
    storage.set_trial_user_attr(silent._trial_id, HEARTBEAT_ATTR, time.time() - 100)
    Heartbeat(storage, beating._trial_id, interval=60).beat()
    assert fail_dead_trials(study, grace_period=50) == [silent.number]
    assert "no heartbeat" in study.trials[silent.number].user_attrs[ERROR_ATTR]


def test_database_storage_uses_optunas_heartbeat(tmp_path):
    storage = open_storage(resolve_storage(None, tmp_path), heartbeat_interval=60)
    study = optuna.create_study(study_name="s", storage=storage)
    silent, beating = study.ask(), study.ask()
    for trial in (silent, beating):
        trial.set_user_attr(WORKER_ATTR, {"host": "elsewhere", "pid": 1})
        Heartbeat(storage, trial._trial_id, interval=60).beat()
    with sqlite3.connect(tmp_path / "study.db") as db:  # the silent one last beat long ago
        db.execute("UPDATE trial_heartbeats SET heartbeat = '2000-01-01 00:00:00' WHERE trial_id = ?",
                   (silent._trial_id,))
    assert fail_dead_trials(study, grace_period=120) == [silent.number]
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.RUNNING]


def test_owner_given_fails_only_that_workers_trials(tmp_path):
    study = optuna.create_study(study_name="s", storage=open_storage(resolve_storage("journal", tmp_path)))
    mine, theirs = study.ask(), study.ask()
    mine.set_user_attr(WORKER_ATTR, {"host": "h", "pid": 11})
    theirs.set_user_attr(WORKER_ATTR, {"host": "h", "pid": 12})
    assert fail_dead_trials(study, 3600, owner={"host": "h", "pid": 11}) == [mine.number]
    assert "died" in study.trials[mine.number].user_attrs[ERROR_ATTR]


def test_ask_lock_is_exclusive(tmp_path):
    with AskLock(tmp_path):
        with open(tmp_path / ".ask.lock") as other, pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(tmp_path / ".ask.lock") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again
