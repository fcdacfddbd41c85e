"""Who this process is in a data-parallel job: the one place that reads ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``.

``torchrun`` (``python -m torch.distributed.run``) starts one process per device and tells each
who it is through environment variables: ``RANK`` (0 .. ``WORLD_SIZE - 1`` over all machines),
``LOCAL_RANK`` (its index on its machine, the GPU it takes), ``WORLD_SIZE`` and
``LOCAL_WORLD_SIZE``; ``MASTER_ADDR``/``MASTER_PORT`` are read by torch itself during the
``env://`` rendezvous. Every other part of epochal takes ranks as explicit arguments (loaders,
samplers) or asks this module; nothing else reads these variables.

Once a process group is initialised (by :func:`epochal.distributed.init_process_group` or by the
user's own ``torch.distributed.init_process_group``), the group is the truth for the rank and the
world size; the variables only add the local rank.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch.distributed as dist

__all__ = ["World", "launched", "timeout", "world"]

#: The variables torchrun sets for every process it starts.
_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE")
#: Seconds a rendezvous or collective may wait before the job fails (default: torch's 30 minutes).
TIMEOUT_VARIABLE = "EPOCHAL_DIST_TIMEOUT"


@dataclass(frozen=True)
class World:
    """This process's place in the job.

    Attributes:
        rank: global rank, 0 .. ``world_size - 1``; rank 0 writes the run folder.
        local_rank: index on this machine (the GPU this process uses).
        world_size: processes in the job, over all machines.
        local_world_size: processes on this machine.

    Examples:
        >>> w = world()
        >>> loaders = image_folder_loaders(root, rank=w.rank, world_size=w.world_size)
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the process that writes files and talks to outside services."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether the job has more than one process."""
        return self.world_size > 1


def _int_variable(name: str, default: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise ValueError(f"environment variable {name} is not set (torchrun sets {', '.join(_ENV)})")
        return default
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None
    if number < 0:
        raise ValueError(f"environment variable {name}={value!r} must be >= 0")
    return number


def launched() -> bool:
    """Whether torchrun (or another launcher that sets ``RANK`` and ``WORLD_SIZE``) started this process."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def _from_environment() -> World:
    size = _int_variable("WORLD_SIZE")
    rank = _int_variable("RANK")
    if size < 1 or rank >= size:
        raise ValueError(f"RANK={rank} and WORLD_SIZE={size} are not valid; need 0 <= RANK < WORLD_SIZE")
    local_size = _int_variable("LOCAL_WORLD_SIZE", size)
    local_rank = _int_variable("LOCAL_RANK", rank % max(local_size, 1))
    return World(rank, local_rank, size, local_size)


def world() -> World:
    """This process's :class:`World`: from the initialised process group, else from torchrun's variables.

    A process that is neither in a group nor started by a launcher is rank 0 of a world of one.
    A group initialised without torchrun's variables (``init_method="file://..."``) is taken to
    run on one machine: the local rank is the rank.
    """
    if dist.is_available() and dist.is_initialized():
        rank, size = dist.get_rank(), dist.get_world_size()
        if launched():
            env = _from_environment()
            if env.rank == rank and env.world_size == size:
                return env
        return World(rank, rank, size, size)
    if launched():
        return _from_environment()
    return World()


def timeout() -> datetime.timedelta:
    """How long a rendezvous or collective waits for the other ranks (``EPOCHAL_DIST_TIMEOUT`` seconds).

    A rank that died or hung makes the others fail after this long instead of waiting forever;
    torchrun usually ends them sooner, as soon as it sees a process exit.
    """
    from torch.distributed.constants import default_pg_timeout

    value = os.environ.get(TIMEOUT_VARIABLE)
    if value is None:
        return default_pg_timeout
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{TIMEOUT_VARIABLE}={value!r} is not a number of seconds") from None
    if seconds <= 0:
        raise ValueError(f"{TIMEOUT_VARIABLE}={value!r} must be > 0 seconds")
    return datetime.timedelta(seconds=seconds)
