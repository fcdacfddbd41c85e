"""One process at a time trains a run folder: an exclusive OS lock on ``<run>/.lock``.

Two processes training the same folder (two ``epochal train --resume RUN`` at once) would both
append epochs to ``metrics.jsonl`` and overwrite each other's checkpoints. :func:`run_lock` takes
``flock`` (``msvcrt.locking`` on Windows) on the folder's ``.lock`` file without waiting: the
second process fails at once with :class:`RunLockedError`, naming the holder recorded in the file
(pid, host, start time). The kernel releases the lock however the holder ends, ``kill -9``
included, so it is never stale; the file stays behind as a record of the last holder. Child
processes forked while the lock is held share it until they exit (worker processes die with
their parent). The lock is re-entrant within one thread: ``epochal train`` holds it around the
whole command and ``Learner.fit`` takes it again.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

__all__ = ["LOCK_NAME", "RunLockedError", "run_lock"]

#: The lock file inside a run folder.
LOCK_NAME = ".lock"


class RunLockedError(RuntimeError):
    """Another process (or thread) is training this run folder.

    Attributes:
        run_dir: the folder.
        holder: what the holder recorded: ``pid``, ``host``, ``started`` (may be empty).
    """

    def __init__(self, run_dir: Path, holder: dict):
        self.run_dir, self.holder = run_dir, holder
        if holder.get("pid"):
            who = f"process {holder['pid']} on {holder.get('host', '?')}, started {holder.get('started', '?')}"
            stop = f" (kill {holder['pid']} on {holder.get('host', '?')})"
        else:
            who, stop = "another process", ""
        super().__init__(
            f"run folder {run_dir} is being trained by {who}; wait for it to finish or stop it{stop}, "
            "then resume with `epochal train --resume` (a run folder is trained by one process at a time)"
        )


@dataclass
class _Held:
    fd: int
    thread: int
    count: int = 1


_HELD: dict[str, _Held] = {}
_GUARD = threading.Lock()


def _try_lock(fd: int, run_dir: Path) -> bool:
    """Whether the lock was taken; a file system without locks warns and counts as taken."""
    if os.name == "nt":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # held by another process
        return False
    except OSError as error:  # e.g. ENOLCK on a network file system without lock support
        warnings.warn(f"cannot lock run folder {run_dir} ({error.strerror}); nothing stops a second process "
                      "from training it at the same time", RuntimeWarning, stacklevel=4)
    return True


def _unlock(fd: int) -> None:
    with contextlib.suppress(OSError):
        if os.name == "nt":
            import msvcrt

            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_UN)  # also for forked children that share the descriptor
    os.close(fd)


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}") if hasattr(os, "pread") else {}
    except (OSError, ValueError):
        return {}  # the holder has not written itself yet


def _acquire(run_dir: Path) -> int:
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    if not _try_lock(fd, run_dir):
        holder = _read_holder(fd)
        os.close(fd)
        raise RunLockedError(run_dir, holder)
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(sys.argv)[:300],
    }
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(record).encode())
    return fd


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike | None) -> Iterator[None]:
    """Hold the run folder's lock for the ``with`` block (nothing when ``run_dir`` is None).

    The folder is created when missing.

    Raises:
        RunLockedError: another process, or another thread of this one, holds it.

    Examples:
        >>> with run_lock("runs/2026-01-01_00-00-00-default"):   # doctest: +SKIP
        ...     learner.fit(phases)
    """
    if run_dir is None:
        yield
        return
    run_dir = Path(run_dir)
    key = str(run_dir.resolve())
    with _GUARD:
        held = _HELD.get(key)
        if held is not None and held.thread != threading.get_ident():
            raise RunLockedError(run_dir, {"pid": os.getpid(), "host": socket.gethostname(),
                                           "started": "in another thread of this process"})
        if held is not None:
            held.count += 1
        else:
            _HELD[key] = _Held(_acquire(run_dir), threading.get_ident())
    try:
        yield
    finally:
        with _GUARD:
            held = _HELD[key]
            held.count -= 1
            if held.count == 0:
                del _HELD[key]
                _unlock(held.fd)
