"""``python -m epochal`` for the failure tests: rank FAIL_RANK raises, exits or hangs at step FAIL_STEP.

Usage: torchrun --nproc_per_node=2 cli_worker.py raise|exit|hang FAIL_RANK FAIL_STEP train RECIPE ...

The failure is a callback added to the Learner that ``epochal train`` builds, so everything else
is the real command line: its error output, torchrun's failure handling, the other rank's wait.
"""

import os
import signal
import sys
import threading

from epochal.callbacks.base import Callback
from epochal.config import experiment
from epochal.distributed import world


class Fail(Callback):
    """At step ``step`` of rank ``rank``: raise an error, die without a word, or stop answering."""

    def __init__(self, mode: str, rank: int, step: int):
        self.mode, self.rank, self.step = mode, rank, step

    def after_step(self) -> None:
        if world().rank != self.rank or self.learner.state.step != self.step:
            return
        if self.mode == "raise":
            raise ValueError(f"injected failure at step {self.step}")
        if self.mode == "exit":
            os._exit(3)  # no message, no clean-up: as a crash would
        # hang; once rank 0 has named it and failed, torchrun's SIGTERM ends it at once (SaveOnInterrupt's
        # handler would only set a flag that a hung loop never reads, and torchrun kills after 30 s)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        threading.Event().wait()


def main() -> None:
    mode, rank, step = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    build = experiment.build_learner

    def failing_build(*args, **kwargs):
        learner, phases = build(*args, **kwargs)
        learner.add_callback(Fail(mode, rank, step))
        return learner, phases

    experiment.build_learner = failing_build
    sys.argv = ["epochal", *sys.argv[4:]]
    from epochal.cli.main import main as cli

    cli()


if __name__ == "__main__":
    main()
