"""One process at a time trains a run folder; the lock goes away with its holder, however it ends."""

from __future__ import annotations

import os
import signal
import socket
import threading

import pytest
import torch
from torch import nn

from epochal.callbacks.base import Callback
from epochal.data.base import ArrayLoader
from epochal.learner import Learner
from epochal.runs import RunLockedError, run_lock

HOLDER = """
import sys
from epochal.runs import run_lock
with run_lock(sys.argv[1]):
    print("LOCKED", flush=True)
    sys.stdin.read()
"""

PROBE = """
import sys
from epochal.runs import RunLockedError, run_lock
try:
    with run_lock(sys.argv[1]):
        print("FREE")
except RunLockedError as error:
    print("HELD", error)
"""


def _learner(run_dir, callbacks=()) -> Learner:
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    data = (ArrayLoader(x, y, batch_size=8), ArrayLoader(x, y, batch_size=8))
    return Learner(nn.Linear(4, 2), data, device="cpu", run_dir=run_dir, callbacks=callbacks)


def _probe(spawn, run_dir) -> str:
    out, _ = spawn(PROBE, run_dir).communicate(timeout=120)
    return out.strip()


def test_a_second_trainer_fails_at_once_naming_the_holder(tmp_path, spawn, read_line):
    run = tmp_path / "run"
    holder = spawn(HOLDER, run)
    assert read_line(holder.stdout) == "LOCKED"
    with pytest.raises(RunLockedError) as info:
        _learner(run).fit(1)
    message = str(info.value)
    assert f"process {holder.pid} on {socket.gethostname()}, started 20" in message and f"kill {holder.pid}" in message
    assert info.value.holder["pid"] == holder.pid
    assert sorted(p.name for p in run.iterdir()) == [".lock"]  # the refused fit wrote nothing
    os.kill(holder.pid, signal.SIGKILL)  # the kernel drops the lock with its holder
    holder.wait(timeout=60)
    history = _learner(run).fit(1)
    assert len(history) == 1 and len((run / "metrics.jsonl").read_text().splitlines()) == 1


class _Fail(Callback):
    def __init__(self, error: BaseException | None):
        self.error = error

    def after_batch(self) -> None:
        if self.error is not None:
            raise self.error


@pytest.mark.parametrize("error", [None, RuntimeError("boom"), KeyboardInterrupt()], ids=["finish", "error", "ctrl-c"])
def test_the_lock_is_released_on_every_exit_of_fit(tmp_path, spawn, error):
    learner = _learner(tmp_path / "run", [_Fail(error)])
    if error is None:
        learner.fit(1)
    else:
        with pytest.raises(type(error)):
            learner.fit(1)
    assert _probe(spawn, tmp_path / "run") == "FREE"


def test_the_lock_is_reentrant_in_one_thread_and_refused_to_another(tmp_path, spawn):
    run = tmp_path / "run"
    errors = []
    with run_lock(run):
        _learner(run).fit(1)  # epochal train holds the lock around fit, which takes it again
        assert _probe(spawn, run).startswith(f"HELD run folder {run} is being trained by process {os.getpid()}")
        thread = threading.Thread(target=lambda: errors.append(pytest.raises(RunLockedError, _learner(run).fit, 1)))
        thread.start()
        thread.join()
    assert len(errors) == 1 and _probe(spawn, run) == "FREE"
