"""Process group set-up: join the job torchrun started, with a timeout, NCCL on GPUs and gloo on CPUs.

:func:`init_process_group` is ``torch.distributed.init_process_group(init_method="env://")``
(torch reads ``MASTER_ADDR``/``MASTER_PORT`` and the rank variables itself) with three things
added: the backend follows the device (NCCL for CUDA, gloo for the CPU), every wait is bounded by
:func:`~epochal.distributed.world.timeout`, and a second, gloo *control group* carries the small
messages of the loop (decisions, run folder paths, checkpoint payloads, failure diagnostics), so
they never occupy GPU memory or the NCCL streams, and still work after a gradient collective failed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.distributed as dist

from epochal.distributed.world import World, launched, timeout, world

__all__ = ["control_group", "destroy_process_group", "init_process_group", "local_device", "process_group"]

_STATE: dict[str, object] = {"control": None, "owned": False}


def control_group():
    """The gloo group for small CPU messages (None: the default group, when epochal did not set one up)."""
    if _STATE["control"] is not None and not dist.is_initialized():  # the user destroyed every group
        _STATE["control"] = None
    return _STATE["control"]


def set_control_group() -> None:
    """Create the gloo control group on every rank (a collective: every rank must call it at the same point)."""
    if _STATE["control"] is None and dist.is_initialized() and dist.get_world_size() > 1:
        _STATE["control"] = dist.new_group(backend="gloo", timeout=timeout())


def local_device(requested: str | torch.device | None, current: World | None = None) -> torch.device:
    """The device of this rank: ``cuda`` becomes ``cuda:<LOCAL_RANK>``; None means CUDA when available.

    Raises:
        ValueError: for a CUDA device with an index when several processes share this machine
            (every one of them would take that GPU).
    """
    current = current or world()
    if requested is None:
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type != "cuda":
        return device
    if device.index is None:
        return torch.device("cuda", current.local_rank)
    if current.local_world_size > 1:
        raise ValueError(
            f"device {str(device)!r}: with {current.local_world_size} processes on this machine each takes the GPU "
            "of its LOCAL_RANK; give the device as 'cuda' (and choose the GPUs with CUDA_VISIBLE_DEVICES)"
        )
    return device


def init_process_group(device: str | torch.device | None = None, backend: str | None = None) -> World:
    """Join the job torchrun started (``env://``); a no-op when a group is already initialised.

    Args:
        device: the device this rank trains on (``cuda`` takes ``cuda:<LOCAL_RANK>``); picks the backend.
        backend: ``"nccl"`` or ``"gloo"`` (default: NCCL for a CUDA device, gloo otherwise).

    Returns:
        This process's :class:`~epochal.distributed.world.World`.

    Raises:
        RuntimeError: when this process was not started by torchrun (no ``RANK``/``WORLD_SIZE``).
    """
    if dist.is_initialized():
        set_control_group()
        return world()
    if not launched():
        raise RuntimeError(
            "no distributed job to join: RANK and WORLD_SIZE are not set; start the processes with "
            "`torchrun --nproc_per_node=N -m epochal train ...` or `epochal train --nproc N`"
        )
    current = world()
    target = local_device(device, current)
    backend = backend or ("nccl" if target.type == "cuda" else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(target)
    dist.init_process_group(backend, init_method="env://", timeout=timeout())
    _STATE["owned"] = True
    set_control_group()
    return world()


def destroy_process_group() -> None:
    """Leave the job: destroy the control group and, when epochal created it, the default group."""
    if not dist.is_initialized():
        return
    if _STATE["control"] is not None:
        dist.destroy_process_group(_STATE["control"])
        _STATE["control"] = None
    if _STATE["owned"]:
        dist.destroy_process_group()
        _STATE["owned"] = False


@contextlib.contextmanager
def process_group(device: str | torch.device | None = None) -> Iterator[World]:
    """Inside: this process is in the job torchrun started (or alone, when it was not started by one).

    The group is destroyed on the way out when this block created it and the block succeeded;
    after an error it is left to the process's exit, because tearing down a group whose peers
    died can itself wait on them.

    Examples:
        >>> with process_group("cuda") as w:     # under torchrun: joined; alone: World()
        ...     train_recipe(config)
    """
    if not launched() or dist.is_initialized():
        yield world()
        return
    yield init_process_group(device)
    destroy_process_group()
