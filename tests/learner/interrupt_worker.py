"""Child process of the signal tests: trains, or gets a signal mid-epoch, or resumes.

Usage: python interrupt_worker.py RUN_DIR full|signal|resume STOP_STEP OUT_WEIGHTS

``signal`` prints READY once step STOP_STEP is done and then waits, inside that batch, until the
parent's signal has been recorded by SaveOnInterrupt; the process exits with the status a shell
reports for the signal (130 for SIGINT, 143 for SIGTERM) and prints where the checkpoint went.
The data, model and schedule are those of ``resume_worker.py``.
"""

import sys
import threading
from pathlib import Path

import torch
from resume_worker import loaders
from torch import nn

from epochal.callbacks.base import Callback
from epochal.callbacks.model_checkpoint import ModelCheckpoint
from epochal.callbacks.save_on_interrupt import Interrupted, SaveOnInterrupt
from epochal.learner import Learner
from epochal.schedules import one_cycle
from epochal.state import seed_everything


class WaitForSignal(Callback):
    """At step ``step``, say READY and hold the batch until the signal handler has run."""

    order = 105  # before SaveOnInterrupt (110): the signal is acted on at the end of this very batch

    def __init__(self, step: int, saver: SaveOnInterrupt):
        self.step, self.saver, self.recorded = step, saver, threading.Event()

    def after_batch(self) -> None:
        if self.learner.training and self.learner.state.step == self.step:
            print("READY", flush=True)
            while self.saver.requested is None:  # the handler runs between bytecodes of this loop
                self.recorded.wait(0.01)


def main() -> None:
    run_dir, mode, stop_step, out = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    seed_everything(0, deterministic=True)
    data_gen = torch.Generator().manual_seed(123)
    x = torch.randn(100, 8, generator=data_gen)
    y = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 1).long()
    train, valid = loaders("array", x, y)
    model = nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 3))
    saver = SaveOnInterrupt()
    callbacks = [ModelCheckpoint(monitor="valid/accuracy"), saver]  # no mid-epoch saves of its own
    if mode == "signal":
        callbacks.append(WaitForSignal(stop_step, saver))
    learner = Learner(model, (train, valid), optimizer="sgd", metrics=["accuracy"], callbacks=callbacks,
                      device="cpu", run_dir=run_dir, seed=0, log_every=2)
    phases = one_cycle(3, 0.2, optimizer="sgd", weight_decay=1e-3)
    try:
        learner.fit(phases, resume=run_dir if mode == "resume" else None)
    except Interrupted as stop:
        print(f"SAVED {stop.checkpoint} {stop.position['epoch']} {stop.position['batch']}", flush=True)
        sys.exit(stop.exit_code)
    torch.save({k: v.clone() for k, v in learner.model.state_dict().items()}, out)


if __name__ == "__main__":
    main()
