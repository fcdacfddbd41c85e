"""Reductions, gathers and decisions across ranks; each is a no-op for a single process.

Every function here is a *collective*: every rank must call it, in the same order. The loop calls
them at points every rank reaches together (the end of a logging interval, of validation, of an
epoch, a checkpoint), never from inside code that only rank 0 runs.

- tensors (metric sums, scores, the running loss) travel on the default group, on the training
  device (NCCL needs CUDA tensors);
- small Python objects and decisions travel on the gloo control group, on the CPU
  (:mod:`~epochal.distributed.group`).
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from epochal.distributed.group import control_group
from epochal.distributed.world import world

__all__ = [
    "agree",
    "all_gather_uneven",
    "all_reduce_sum",
    "average_batchnorm_statistics",
    "barrier",
    "broadcast_object",
    "broadcast_tensors",
    "gather_objects",
    "is_main",
    "main_process_first",
    "run_on_main",
]

T = TypeVar("T")


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main() -> bool:
    """Whether this process is rank 0 (always true for a single process)."""
    return world().is_main


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over every rank, in place, and return it."""
    if _active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (picklable objects, on the control group)."""
    if not _active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj, group=control_group())
    return out


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank ``src``'s ``obj`` on every rank (what other ranks pass is ignored)."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, group=control_group())
    return box[0]


def agree(flag: bool) -> bool:
    """Rank 0's decision on every rank: a choice made once, followed by all.

    Examples:
        >>> if agree(trial.should_prune() if is_main() else False):
        ...     raise CancelFit("pruned")
    """
    if not _active():
        return bool(flag)
    box = torch.tensor([1 if flag else 0], dtype=torch.int32)
    dist.broadcast(box, src=0, group=control_group())
    return bool(box.item())


def broadcast_tensors(tensors: list[torch.Tensor], src: int = 0) -> None:
    """Overwrite ``tensors`` on every rank with rank ``src``'s, in place (one message per dtype and device)."""
    if not _active() or not tensors:
        return
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for tensor in tensors:
        groups.setdefault((tensor.dtype, tensor.device), []).append(tensor)
    with torch.no_grad():
        for members in groups.values():
            flat = _flatten_dense_tensors([t.detach() for t in members])
            dist.broadcast(flat, src=src)
            for tensor, value in zip(members, _unflatten_dense_tensors(flat, members)):
                tensor.copy_(value)


def barrier() -> None:
    """Wait until every rank is here."""
    if _active():
        dist.barrier(group=control_group())


def all_gather_uneven(tensor: torch.Tensor | None) -> torch.Tensor | None:
    """Concatenate every rank's ``tensor`` along dim 0, in rank order; ranks may hold different lengths.

    A rank with nothing to give passes None (or an empty tensor): it still takes part and receives
    the others' rows. The trailing shape and dtype come from the ranks that have rows.

    Returns:
        The concatenation on ``tensor``'s device (None when no rank had any rows).
    """
    if not _active():
        return tensor
    layout = None if tensor is None else (tuple(tensor.shape[1:]), tensor.dtype, len(tensor))
    layouts = gather_objects(layout)
    known = [entry for entry in layouts if entry is not None]
    if not known:
        return None
    trailing, dtype = known[0][0], known[0][1]
    if any(entry[0] != trailing or entry[1] != dtype for entry in known):
        raise ValueError(f"ranks hold tensors of different shapes or dtypes: {layouts}")
    lengths = [0 if entry is None else entry[2] for entry in layouts]
    device = tensor.device if tensor is not None else _collective_device()
    mine = tensor if tensor is not None else torch.empty((0, *trailing), dtype=dtype, device=device)
    padded = torch.zeros((max(lengths), *trailing), dtype=dtype, device=device)
    padded[: len(mine)] = mine
    parts = [torch.empty_like(padded) for _ in lengths]
    dist.all_gather(parts, padded)
    return torch.cat([part[:n] for part, n in zip(parts, lengths)])


def _collective_device() -> torch.device:
    """Where tensors of the default group live: this rank's GPU for NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def run_on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and return its result on every rank; its error is raised on every rank.

    For work that must happen once (creating the run folder, reading a checkpoint) whose result
    every rank needs. An exception on rank 0 is re-raised on all ranks, so they fail together
    with the same message instead of waiting for a result that never comes.
    """
    if not _active():
        return fn()
    outcome: tuple[str, Any] = ("ok", None)
    if is_main():
        try:
            outcome = ("ok", fn())
        except Exception as exc:  # sent to every rank, raised there and here
            outcome = ("error", _portable(exc))
    kind, value = broadcast_object(outcome)
    if kind == "error":
        raise value
    return value


def _portable(exc: Exception) -> Exception:
    """``exc`` itself when it survives pickling, else a RuntimeError with its type and message."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__} on rank 0: {exc}")
    return exc


@contextlib.contextmanager
def main_process_first(local: bool = True) -> Iterator[None]:
    """Rank 0 (of each machine, with ``local``) runs the block first; the other ranks run it after.

    For work with a shared result on disk, such as packing the image cache: the first rank
    writes it, the others then find it. When the first rank fails, the others still go ahead
    (and usually fail the same way), so nobody waits forever.
    """
    if not _active():
        yield
        return
    current = world()
    first = current.local_rank == 0 if local else current.is_main
    if not first:
        barrier()
    try:
        yield
    finally:
        if first:
            barrier()


def average_batchnorm_statistics(model: nn.Module) -> int:
    """Give every BatchNorm layer the running statistics of all ranks' batches together.

    After a cumulative pass (``momentum=None``, as SWA's BatchNorm recalibration makes) over each
    rank's share, a layer's ``running_mean``/``running_var`` are averages over that rank's
    batches and ``num_batches_tracked`` counts them. Weighting each rank by its batch count gives
    the average over every rank's batches, i.e. what one process passing over the union would
    hold. With ordinary momentum the result is the ranks' mean, which is also what DDP users
    expect from statistics that differ between ranks.

    Returns:
        The number of layers averaged (0 for a single process or a model without BatchNorm).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
             and m.track_running_stats and m.running_mean is not None]
    if not _active() or not norms:
        return 0
    with torch.no_grad():
        for norm in norms:
            count = norm.num_batches_tracked.to(torch.float64)
            mean = all_reduce_sum(norm.running_mean.double() * count)
            var = all_reduce_sum(norm.running_var.double() * count)
            total = all_reduce_sum(count.clone())
            if float(total) > 0:
                norm.running_mean.copy_(mean / total)
                norm.running_var.copy_(var / total)
            norm.num_batches_tracked.copy_(total.to(norm.num_batches_tracked.dtype))
    return len(norms)
