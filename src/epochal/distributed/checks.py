"""What data-parallel training refuses before its first step, and what it warns about.

A job whose ranks disagree hangs instead of failing: a rank with one batch more waits forever for
the others' gradients. So before the first step every rank compares its training loaders with the
others' (one small gather) and every rank raises the same error when they differ. Loaders that
give every rank the same batches are legal but wasteful, and said so once, on rank 0.
"""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["check_learner"]


def _describe(loader: Any) -> str:
    describe = getattr(loader, "describe", None)
    return describe() if callable(describe) else f"a {type(loader).__name__}"


def _loader_world(loader: Any, role: str, world_size: int) -> int:
    """The number of shares ``loader`` splits its data into (1: every rank reads all of it)."""
    size = getattr(loader, "world_size", 1)
    if size not in (1, world_size):
        raise ValueError(
            f"the {role} loader ({_describe(loader)}) was built for world_size={size}, but this job has "
            f"{world_size} processes; build it with rank=world.rank, world_size=world.world_size "
            "(world = epochal.distributed.world())"
        )
    return size


def _check_training(strategy, learner) -> None:
    loaders = list({id(learner.train_loader(p)): learner.train_loader(p) for p in learner.phases}.values())
    world_size = strategy.world.world_size
    for loader in loaders:
        if _loader_world(loader, "training", world_size) == 1 and strategy.is_main:
            warnings.warn(
                f"the training loader ({_describe(loader)}) is not split across the {world_size} processes: every "
                "rank reads the same batches, so each step averages identical gradients and the job does the work "
                f"of one process {world_size} times; build epochal loaders with rank=world.rank, "
                "world_size=world.world_size, or give a torch DataLoader over a map-style dataset (the Learner "
                "gives each rank its share of those)", RuntimeWarning, stacklevel=4)
    lengths = strategy.gather_objects([len(loader) for loader in loaders])
    if any(entry != lengths[0] for entry in lengths):
        per_rank = ", ".join(f"rank {r}: {entry}" for r, entry in enumerate(lengths))
        raise ValueError(
            f"the processes' training loaders have different numbers of batches per epoch ({per_rank}); every "
            "optimizer step waits for the gradients of every rank, so a rank with more batches would wait "
            "forever. Give every rank the same share size (epochal's samplers do; a DataLoader with "
            "drop_last=True or a sampler cut to a multiple of world_size)"
        )


def _check_validation(strategy, learner) -> None:
    from epochal.metrics import Metric

    valid = learner.data.valid
    if valid is None or _loader_world(valid, "validation", strategy.world.world_size) == 1:
        return  # every rank evaluates every sample: nothing to combine
    for metric in learner.metrics:
        if type(metric).sync is Metric.sync:
            raise TypeError(
                f"metric {metric.name!r} ({type(metric).__name__}) cannot be combined over ranks: the validation "
                "loader gives each rank its own share, so the metric needs a sync(reducer) method that adds its "
                "sums with reducer.sum(tensor) or gathers its rows with reducer.gather(tensor) "
                "(see epochal.metrics.Metric.sync)"
            )


def check_learner(strategy, learner) -> None:
    """Raise on every rank, before the first step, for data that would hang or miscount (module docstring)."""
    if not strategy.world.distributed:  # a group of one process (a test, a tuning trial) shares nothing
        return
    _check_training(strategy, learner)
    _check_validation(strategy, learner)
