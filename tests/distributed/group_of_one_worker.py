"""A one-process gloo group for test_checks.py, in its own process: prints one JSON line, then ``os._exit``.

Usage: python group_of_one_worker.py split_warning|no_sync STORE_FILE

Run in a subprocess because tearing a gloo group down inside the test process can deadlock: the
DDP reducer's last reference to the group, dropped under the GIL, joins gloo's worker threads while
one of them waits for the GIL to release a finished all-reduce (seen once under heavy load: the
whole test run hung). ``os._exit`` ends the process without those destructors.
"""

import json
import os
import sys
import warnings

import torch
import torch.distributed as dist
from torch import nn

from epochal.callbacks.base import Callback
from epochal.distributed import DataParallel
from epochal.learner import Learner
from epochal.schedules import one_cycle


class SyncSeen(Callback):
    """Whether each micro-batch's backward all-reduced (None: no DDP wrapper existed yet)."""

    def __init__(self):
        self.seen = []

    def after_backward(self):
        ddp = self.learner.strategy._ddp
        self.seen.append(None if ddp is None else ddp.require_backward_grad_sync)


def main() -> None:
    mode, store = sys.argv[1], sys.argv[2]
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    data = (torch.randn(16, 3), torch.randint(0, 2, (16,)))
    result = {}
    if mode == "split_warning":
        learner = Learner(nn.Linear(3, 2), data, device="cpu", optimizer="sgd", strategy=DataParallel())
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # "not split across the 1 processes" was one
            learner.fit(one_cycle(1, 0.1, optimizer="sgd"))
        result = {"step": learner.state.step, "steps_per_epoch": learner.steps_per_epoch(learner.phases[0])}
    elif mode == "no_sync":
        seen = SyncSeen()
        learner = Learner(nn.Linear(3, 2), data, device="cpu", optimizer="sgd", strategy=DataParallel(),
                          grad_accum=2, callbacks=[seen])
        learner.data.train.batch_size = 4
        learner.fit(one_cycle(1, 0.1, optimizer="sgd"))
        result = {"seen": seen.seen}
    print(json.dumps(result), flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
