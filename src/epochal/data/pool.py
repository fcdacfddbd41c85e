"""Decoding worker processes that never outlive the process that started them.

A worker busy with a long task does not notice that its parent was killed (``kill -9``, the OOM
killer) and would run on, holding memory and a half-written shard. On Linux each worker asks the
kernel for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``); elsewhere a daemon thread
checks the parent's pid every second.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from concurrent.futures import ProcessPoolExecutor

__all__ = ["die_with_parent", "mp_context", "process_pool"]

_PR_SET_PDEATHSIG = 1
_POLL_S = 1.0


def mp_context():
    """Fork where available: workers only use Pillow and numpy, and start in milliseconds."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _watch(parent: int) -> None:
    while not threading.Event().wait(_POLL_S):
        if os.getppid() != parent:
            os._exit(1)


def die_with_parent(parent: int) -> None:
    """Worker initializer: end this process as soon as process ``parent`` is gone."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
        if armed:
            if os.getppid() != parent:  # the parent died before the signal was armed
                os._exit(1)
            return
    threading.Thread(target=_watch, args=(parent,), name="epochal-parent-watch", daemon=True).start()


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool of ``workers`` whose processes die with this one."""
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=mp_context(), initializer=die_with_parent, initargs=(os.getpid(),)
    )
