"""What a data-parallel fit checks before its first step: nothing to say for a group of one process."""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
from torch import nn

from epochal.distributed import DataParallel
from epochal.learner import Learner
from epochal.schedules import one_cycle


def test_a_group_of_one_process_trains_without_a_split_warning(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        data = (torch.randn(16, 3), torch.randint(0, 2, (16,)))
        learner = Learner(nn.Linear(3, 2), data, device="cpu", optimizer="sgd", strategy=DataParallel())
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # "not split across the 1 processes" was one
            learner.fit(one_cycle(1, 0.1, optimizer="sgd"))
    finally:
        dist.destroy_process_group()
    assert learner.state.step == learner.steps_per_epoch(learner.phases[0])


def test_every_accumulating_micro_batch_skips_the_all_reduce_the_first_one_of_a_fit_too(tmp_path):
    # the first micro-batch of a fit (after a resume, the first of the resumed run) met no DDP wrapper
    # yet and was all-reduced: avg(avg(g1) + g2), one ulp from avg(g1 + g2) (the resumed run drifted)
    from epochal.callbacks.base import Callback

    class SyncSeen(Callback):
        def __init__(self):
            self.seen = []

        def after_backward(self):
            ddp = self.learner.strategy._ddp
            self.seen.append(None if ddp is None else ddp.require_backward_grad_sync)

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        data = (torch.randn(16, 3), torch.randint(0, 2, (16,)))
        seen = SyncSeen()
        learner = Learner(nn.Linear(3, 2), data, device="cpu", optimizer="sgd", strategy=DataParallel(),
                          grad_accum=2, callbacks=[seen])
        learner.data.train.batch_size = 4
        learner.fit(one_cycle(1, 0.1, optimizer="sgd"))
    finally:
        dist.destroy_process_group()
    assert seen.seen == [False, True, False, True]  # 4 micro-batches, 2 steps: all-reduce on the stepping ones only
