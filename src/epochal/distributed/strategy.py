"""How a Learner runs over the processes of a job: one process, or data-parallel (DDP) on many.

The Learner asks its strategy at the few points where processes must act together, and nowhere
else: which device to use, what module to call in training, whether to skip the gradient all-reduce
of an accumulating micro-batch, how to combine validation sums and the running loss, whose epoch
record and checkpoint count. :class:`Strategy` is one process (every answer trivial);
:class:`DataParallel` is torch's ``DistributedDataParallel`` (Li et al., *PyTorch Distributed:
Experiences on Accelerating Data Parallel Training*, VLDB 2020) with epochal's rules:

- **training**: the model called in training is wrapped in DDP (gradients averaged over ranks in
  buckets during the backward pass); ``learner.model`` stays the bare model, so checkpoints hold
  its state without the ``module.`` prefix and load into a single process unchanged. Gradient
  accumulation skips the all-reduce of the micro-batches that do not step (``no_sync``).
- **evaluation is exact**: validation runs the bare model (no collective per batch, so ranks may
  hold different numbers of batches); sums and counts are added over ranks and ranking metrics
  gather every rank's scores, so each sample counts once however unevenly the set splits.
- **one record, one decision**: after each epoch the record (losses and metrics) is rank 0's on
  every rank, so EarlyStopping, ReduceLROnPlateau and ModelCheckpoint take the same decision on
  every rank; decisions that need rank-local facts are broadcast or combined where they are made.
- **BatchNorm**: as DDP does in every training forward, the running statistics are rank 0's before
  every validation (``sync_bn=True`` instead normalises every batch with the statistics of all
  ranks: ``torch.nn.SyncBatchNorm``, CUDA only).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from epochal.distributed import failures, ops
from epochal.distributed.group import init_process_group, local_device, set_control_group
from epochal.distributed.world import World, launched, world

__all__ = ["DataParallel", "Strategy", "auto_strategy"]

T = TypeVar("T")


class Strategy:
    """One process: the base of every strategy, where each collective is the identity.

    Attributes:
        world: this process's :class:`~epochal.distributed.world.World`.
    """

    name = "single_process"

    def __init__(self) -> None:
        self.world = World()
        self.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run folder and prints (rank 0)."""
        return self.world.is_main

    def set_device(self, requested: str | torch.device | None) -> torch.device:
        """Choose (and remember) the training device; None means CUDA when available."""
        if requested is None:
            requested = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(requested)
        return self.device

    def prepare(self, model: nn.Module) -> nn.Module:
        """The model to train, changed where the strategy needs (SyncBatchNorm)."""
        return model

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module called in training (the bare model here)."""
        return model

    def reset(self) -> None:
        """Forget the training wrapper (after freezing changed which parameters train)."""

    def no_sync(self, model: nn.Module, skip: bool) -> contextlib.AbstractContextManager:
        """Inside: the backward pass of ``model``'s training wrapper does not all-reduce gradients, when ``skip``."""
        return contextlib.nullcontext()

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over ranks (in place)."""
        return tensor

    def gather(self, tensor: torch.Tensor | None) -> torch.Tensor | None:
        """Every rank's rows of ``tensor`` concatenated, in rank order (lengths may differ)."""
        return tensor

    def from_main(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank."""
        return obj

    def gather_objects(self, obj: T) -> list[T]:
        """Every rank's ``obj``, in rank order."""
        return [obj]

    def agree(self, flag: bool) -> bool:
        """Rank 0's decision on every rank."""
        return bool(flag)

    def run_on_main(self, fn: Callable[[], T]) -> T:
        """``fn()`` run on rank 0 only, its result (or its error) on every rank."""
        return fn()

    def splits(self, loader: Any) -> bool:
        """Whether ``loader`` gives each rank its own share (so its results are combined over ranks)."""
        return False

    def combine_sum(self, total: torch.Tensor, count: int) -> tuple[torch.Tensor, int]:
        """A sum (a device tensor) and a sample count added over ranks (``total`` itself is left alone)."""
        return total, count

    def combine_validation(self, loader: Any, loss_sum: torch.Tensor, count: int,
                           metrics: Sequence[Any]) -> tuple[torch.Tensor, int]:
        """The validation loss sum and count of every rank; metrics take every rank's state."""
        return loss_sum, count

    def sync_buffers(self, model: nn.Module) -> None:
        """Give every rank rank 0's buffers (BatchNorm running statistics)."""

    def check(self, learner) -> None:
        """Refuse, before the first step, what would hang or silently miscount across ranks."""

    def guard(self) -> contextlib.AbstractContextManager:
        """Inside: a failed collective becomes an error naming the ranks that stopped answering."""
        return contextlib.nullcontext()

    def describe(self) -> dict[str, Any] | None:
        """What the run summary records about the processes (None for a single process)."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.world.rank}, world_size={self.world.world_size})"


class DataParallel(Strategy):
    """Data-parallel training with ``torch.nn.parallel.DistributedDataParallel`` (module docstring).

    Every process of the job builds the same Learner on its own share of the data (loaders built
    with ``rank=world.rank, world_size=world.world_size``; plain torch DataLoaders are split by the
    Learner) and calls ``fit`` with the same phases.

    Args:
        sync_bn: convert BatchNorm layers to ``torch.nn.SyncBatchNorm`` (statistics over all ranks;
            CUDA only).
        find_unused_parameters: DDP's option for models whose forward leaves some trainable
            parameters unused.
        static_graph: DDP's option for a graph that never changes between steps.
        **ddp_options: other keyword arguments of ``DistributedDataParallel`` (``bucket_cap_mb``,
            ``gradient_as_bucket_view``...).

    Raises:
        RuntimeError: when no process group is initialised (use :func:`auto_strategy` or
            :func:`~epochal.distributed.init_process_group` first).

    Examples:
        >>> # torchrun --nproc_per_node=4 train.py
        >>> w = epochal.distributed.init_process_group("cuda")
        >>> data = image_folder_loaders(root, rank=w.rank, world_size=w.world_size)
        >>> Learner(model, data, strategy=DataParallel(sync_bn=True)).fit(one_cycle(10, 0.4))
    """

    name = "data_parallel"

    def __init__(self, sync_bn: bool = False, find_unused_parameters: bool = False, static_graph: bool = False,
                 **ddp_options: Any) -> None:
        super().__init__()
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                "DataParallel needs an initialised process group: start the processes with torchrun and call "
                "epochal.distributed.init_process_group() (or let the Learner do it: strategy=None)"
            )
        set_control_group()
        self.world = world()
        self.sync_bn = sync_bn
        self.ddp_options = {"find_unused_parameters": find_unused_parameters, "static_graph": static_graph,
                            **ddp_options}
        self._ddp: nn.parallel.DistributedDataParallel | None = None

    # ------------------------------------------------------------------ device and model
    def set_device(self, requested: str | torch.device | None) -> torch.device:
        device = local_device(requested, self.world)
        if dist.get_backend() == "nccl" and device.type != "cuda":
            raise ValueError(f"device {str(device)!r}: the process group uses NCCL, which needs CUDA devices; "
                             "train on 'cuda', or start the group with the gloo backend for the CPU")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        self.device = device
        return device

    def prepare(self, model: nn.Module) -> nn.Module:
        if not self.sync_bn:
            return model
        if self.device.type != "cuda":
            raise ValueError(f"sync_bn (trainer.sync_bn): torch.nn.SyncBatchNorm runs on CUDA devices only, and this "
                             f"job trains on {self.device}; set sync_bn to false")
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)

    def wrap(self, model: nn.Module) -> nn.Module:
        if self._ddp is None or self._ddp.module is not model:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self._ddp = nn.parallel.DistributedDataParallel(model, device_ids=device_ids, **self.ddp_options)
        return self._ddp

    def reset(self) -> None:
        self._ddp = None

    def no_sync(self, model: nn.Module, skip: bool) -> contextlib.AbstractContextManager:
        # the wrapper is made here if need be: the first micro-batch after a resume (or a freeze) is
        # the first call, and all-reducing it would change the sum's rounding (avg(avg(g1) + g2))
        return self.wrap(model).no_sync() if skip else contextlib.nullcontext()

    # ------------------------------------------------------------------ collectives
    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return ops.all_reduce_sum(tensor)

    def gather(self, tensor: torch.Tensor | None) -> torch.Tensor | None:
        return ops.all_gather_uneven(tensor)

    def from_main(self, obj: T) -> T:
        return ops.broadcast_object(obj)

    def gather_objects(self, obj: T) -> list[T]:
        return ops.gather_objects(obj)

    def agree(self, flag: bool) -> bool:
        return ops.agree(flag)

    def run_on_main(self, fn: Callable[[], T]) -> T:
        return ops.run_on_main(fn)

    def splits(self, loader: Any) -> bool:
        return self.world.distributed and getattr(loader, "world_size", 1) == self.world.world_size

    def combine_sum(self, total: torch.Tensor, count: int) -> tuple[torch.Tensor, int]:
        if not self.world.distributed:
            return total, count
        pair = torch.stack([total.detach().double(), torch.tensor(float(count), dtype=torch.float64,
                                                                  device=total.device)])
        pair = self.sum(pair)  # float64: counts stay exact, and both travel in one message
        return pair[0].to(total.dtype), int(pair[1])

    def combine_validation(self, loader: Any, loss_sum: torch.Tensor, count: int,
                           metrics: Sequence[Any]) -> tuple[torch.Tensor, int]:
        if not self.splits(loader):  # every rank evaluated every sample: the results are already whole
            return loss_sum, count
        for metric in metrics:
            metric.sync(self)
        return self.combine_sum(loss_sum, count)

    def sync_buffers(self, model: nn.Module) -> None:
        if self.world.distributed:
            ops.broadcast_tensors(list(model.buffers()))

    def check(self, learner) -> None:
        from epochal.distributed.checks import check_learner

        check_learner(self, learner)

    def guard(self) -> contextlib.AbstractContextManager:
        return failures.guard()

    def describe(self) -> dict[str, Any]:
        return {"strategy": self.name, "backend": dist.get_backend(), "world_size": self.world.world_size,
                "local_world_size": self.world.local_world_size, "sync_bn": self.sync_bn}

    def __repr__(self) -> str:
        return (f"DataParallel(rank={self.world.rank}, world_size={self.world.world_size}, "
                f"sync_bn={self.sync_bn})")


def auto_strategy(device: str | torch.device | None = None, **options: Any) -> Strategy:
    """The strategy of this process: :class:`DataParallel` in a job, else a single-process :class:`Strategy`.

    A process started by torchrun whose group is not initialised yet joins the job here
    (:func:`~epochal.distributed.init_process_group` with ``device`` choosing the backend).

    Args:
        device: the training device (picks NCCL or gloo when joining).
        **options: :class:`DataParallel` options (``sync_bn``...); unused for a single process.
    """
    if launched() and not dist.is_initialized():
        init_process_group(device)
    if dist.is_available() and dist.is_initialized():
        return DataParallel(**options)
    return Strategy()  # sync_bn means nothing here: one process's BatchNorm already sees its whole batch
