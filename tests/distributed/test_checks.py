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
