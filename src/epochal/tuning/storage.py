"""Where a study lives, and how its trials survive dead workers.

Storages, by ``--storage``:

* none given: SQLite in the study folder (``<study>/study.db``), embedded, nothing to start. Several
  workers on one machine write to it at once, so it is opened in write-ahead-log mode (readers never
  wait for the writer) with a 120 s busy timeout (a writer waits for the other instead of failing
  with "database is locked"). SQLite's locks need a local disk: not for a shared file system.
* ``postgresql://user:password@host/db`` (or any SQLAlchemy URL Optuna's ``RDBStorage`` takes): a
  database server shared by workers on many machines.
* ``journal`` or ``journal:///path/to/study.log``: Optuna's append-only journal file, for a shared
  file system (NFS) where no database server is available; ``journal`` alone puts it in the study folder.

A worker killed mid-trial (SIGKILL, a lost machine) cannot report anything, so its trial would stay
RUNNING forever. Each running trial therefore beats a heartbeat (Optuna's own for database
storages; a ``epochal_heartbeat`` user attribute for the journal) and workers fail the trials
whose heartbeat is older than the grace period before they start one. A trial owned by a process of
this machine that no longer exists is failed at once, and the command that started a worker fails
the trials of that worker as soon as it dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import threading
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from epochal.tuning._optuna import require_optuna

__all__ = [
    "ERROR_ATTR",
    "HEARTBEAT_ATTR",
    "WORKER_ATTR",
    "AskLock",
    "Heartbeat",
    "fail_dead_trials",
    "fail_trial",
    "open_storage",
    "redact",
    "resolve_storage",
    "worker_identity",
]

#: Trial user attribute naming the process that runs the trial: ``{"host": ..., "pid": ...}``.
WORKER_ATTR = "epochal_worker"
#: Trial user attribute with the last heartbeat time (storages without Optuna's heartbeat).
HEARTBEAT_ATTR = "epochal_heartbeat"
#: Trial user attribute with the reason a trial failed.
ERROR_ATTR = "epochal_error"

_SQLITE_TIMEOUT_S = 120


def resolve_storage(storage: str | None, study_dir: str | Path) -> str:
    """The storage URL of ``--storage`` (None: SQLite in the study folder; ``journal``: a journal there)."""
    study_dir = Path(study_dir).resolve()
    if storage is None:
        return f"sqlite:///{study_dir / 'study.db'}"
    if storage == "journal":
        return f"journal://{study_dir / 'journal.log'}"
    if storage.startswith("journal:"):
        path = storage[len("journal:"):]
        path = path[2:] if path.startswith("//") else path
        if not path:
            raise ValueError(f"--storage {storage}: give the journal file, e.g. journal:///shared/study.log")
        return f"journal://{Path(path).resolve()}"
    if "://" not in storage:
        raise ValueError(
            f"--storage {storage!r} is not a URL: use sqlite:///path.db, postgresql://user:password@host/db, "
            "journal:///path/study.log or journal"
        )
    return storage


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for logs, JSON output and files)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def open_storage(url: str, heartbeat_interval: int = 60, grace_period: int | None = None):
    """An Optuna storage for a URL from :func:`resolve_storage`.

    Args:
        url: ``sqlite:///...``, another SQLAlchemy URL, or ``journal://<absolute path>``.
        heartbeat_interval: seconds between a running trial's heartbeats.
        grace_period: seconds without a heartbeat after which a running trial is failed
            (default: twice the interval).

    Raises:
        ImportError: when the database driver is missing, naming the extra that installs it.
    """
    optuna = require_optuna()
    if url.startswith("journal://"):
        path = Path(url[len("journal://"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite:///"):
        _sqlite_wal(Path(url[len("sqlite:///"):]))
        engine_kwargs = {"connect_args": {"timeout": _SQLITE_TIMEOUT_S}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period or 2 * heartbeat_interval,
            )
        except ImportError as exc:
            raise ImportError(
                f"the storage {redact(url)} needs its database driver; for PostgreSQL: "
                "pip install 'epochal[postgres]'"
            ) from exc


def _sqlite_wal(path: Path) -> None:
    """Switch the SQLite file to write-ahead logging (a property of the file, kept once set)."""
    import sqlite3

    if str(path) in ("", ":memory:"):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=_SQLITE_TIMEOUT_S)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()


def worker_identity() -> dict[str, Any]:
    """``{"host", "pid"}`` of this process, saved on every trial it runs."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _has_optuna_heartbeat(storage) -> bool:
    """Whether the storage keeps Optuna's own heartbeats (database storages, also behind Optuna's cache)."""
    interval = getattr(storage, "get_heartbeat_interval", None)
    return callable(interval) and interval() is not None


class Heartbeat:
    """A thread that beats a running trial's heartbeat every ``interval`` seconds until closed.

    Examples:
        >>> with Heartbeat(storage, trial._trial_id, interval=60):
        ...     train(...)
    """

    def __init__(self, storage, trial_id: int, interval: float):
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{trial_id}", daemon=True)

    def beat(self) -> None:
        """Record one heartbeat now."""
        if _has_optuna_heartbeat(self.storage):
            self.storage.record_heartbeat(self.trial_id)
        else:
            self.storage.set_trial_user_attr(self.trial_id, HEARTBEAT_ATTR, time.time())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):  # a missed beat is retried; the trial goes on
                self.beat()

    def __enter__(self) -> Heartbeat:
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


def fail_trial(study, trial_id: int, reason: str) -> bool:
    """Record ``reason`` on a running trial and mark it FAIL; False when it had already finished."""
    optuna = require_optuna()
    storage = study._storage  # the storage API takes trial ids
    try:
        storage.set_trial_user_attr(trial_id, ERROR_ATTR, reason)
        return storage.set_trial_state_values(trial_id, state=optuna.trial.TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_dead_trials(study, grace_period: float, owner: dict[str, Any] | None = None) -> list[int]:
    """Fail the running trials whose worker is gone; returns their numbers.

    A trial is failed when ``owner`` (``{"host", "pid"}``) ran it, when its owner is a process of this
    machine that no longer exists, or when its heartbeat is older than ``grace_period`` seconds
    (Optuna's ``fail_stale_trials`` for database storages).
    """
    optuna = require_optuna()
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    host, now, failed = socket.gethostname(), time.time(), []
    for trial in running:
        worker = trial.user_attrs.get(WORKER_ATTR) or {}
        pid = worker.get("pid")
        if owner is not None and worker == owner:
            reason = f"its worker (pid {pid} on {worker.get('host')}) died"
        elif owner is None and worker.get("host") == host and isinstance(pid, int) and pid > 0 and not _alive(pid):
            reason = f"its worker (pid {pid} on {host}) no longer exists"
        elif owner is None and not _has_optuna_heartbeat(study._storage) and _stale(trial, now, grace_period):
            reason = f"no heartbeat for more than {grace_period:g} s"
        else:
            continue
        if fail_trial(study, trial._trial_id, reason):
            failed.append(trial.number)
    if owner is None and _has_optuna_heartbeat(study._storage):
        failed += _optuna_stale(optuna, study, [t for t in running if t.number not in failed])
    return failed


def _stale(trial, now: float, grace_period: float) -> bool:
    last = trial.user_attrs.get(HEARTBEAT_ATTR)
    if last is None and trial.datetime_start is not None:
        last = trial.datetime_start.timestamp()
    return last is not None and now - float(last) > grace_period


def _optuna_stale(optuna, study, running) -> list[int]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    return [t.number for t in running if states.get(t.number) == optuna.trial.TrialState.FAIL]


class AskLock:
    """An exclusive lock file in the study folder, held while a worker counts trials and asks for one.

    Workers of one machine (and several commands sharing one study folder, also over NFS) take turns,
    so a study never starts more than ``--trials`` trials there.
    """

    def __init__(self, study_dir: str | Path):
        self.path = Path(study_dir) / ".ask.lock"
        self._handle = None

    def __enter__(self) -> AskLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "a")  # held until __exit__
        fcntl.flock(self._handle, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
