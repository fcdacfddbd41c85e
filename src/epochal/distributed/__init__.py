"""Data-parallel training on torchrun: process group set-up, rank-aware helpers, reductions, decisions.

The only part of epochal that reads ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``
(:mod:`~epochal.distributed.world`). One concept, one file per part:

- :mod:`~epochal.distributed.world`: who this process is (:class:`World`, :func:`world`);
- :mod:`~epochal.distributed.group`: joining the job with a timeout, NCCL or gloo, the gloo control group;
- :mod:`~epochal.distributed.ops`: sums, uneven gathers, broadcasts, rank 0's decisions, BatchNorm averaging;
- :mod:`~epochal.distributed.strategy`: :class:`Strategy` (one process) and :class:`DataParallel`
  (DDP), the Learner's one seam;
- :mod:`~epochal.distributed.checks`: what is refused before the first step (loaders that would hang);
- :mod:`~epochal.distributed.batch`: the global batch and explicit learning-rate scaling;
- :mod:`~epochal.distributed.failures`: naming the rank that died or hung;
- :mod:`~epochal.distributed.launch`: ``epochal train --nproc N`` on one machine.

See ``docs/distributed.md``.
"""

from epochal.distributed.batch import LR_SCALING_RULES, GlobalBatch, LRScaling
from epochal.distributed.failures import RankFailure, rank_prefix, record_failure
from epochal.distributed.group import destroy_process_group, init_process_group, local_device, process_group
from epochal.distributed.ops import (
    agree,
    all_gather_uneven,
    all_reduce_sum,
    average_batchnorm_statistics,
    barrier,
    broadcast_object,
    broadcast_tensors,
    gather_objects,
    is_main,
    main_process_first,
    run_on_main,
)
from epochal.distributed.strategy import DataParallel, Strategy, auto_strategy
from epochal.distributed.world import World, launched, timeout, world

__all__ = [
    "LR_SCALING_RULES",
    "DataParallel",
    "GlobalBatch",
    "LRScaling",
    "RankFailure",
    "Strategy",
    "World",
    "agree",
    "all_gather_uneven",
    "all_reduce_sum",
    "auto_strategy",
    "average_batchnorm_statistics",
    "barrier",
    "broadcast_object",
    "broadcast_tensors",
    "destroy_process_group",
    "gather_objects",
    "init_process_group",
    "is_main",
    "launched",
    "local_device",
    "main_process_first",
    "process_group",
    "rank_prefix",
    "record_failure",
    "run_on_main",
    "timeout",
    "world",
]
