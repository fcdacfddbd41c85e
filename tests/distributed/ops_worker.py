"""A rank of the collective tests (torch.multiprocessing, gloo over a file rendezvous): checks and reports.

Each check compares what the collective gives with what one process computes over all ranks'
data; the rank writes its results to ``OUT/rank<r>.pt`` for the test to compare across ranks.
"""

import datetime

import torch
import torch.distributed as dist
from torch import nn

from epochal.distributed import ops
from epochal.distributed.strategy import DataParallel

#: rows of the uneven gather on each rank: rank 1 has none, as a small validation share may
ROWS = (3, 0)


def _norm_after(batches: list[torch.Tensor]) -> nn.BatchNorm1d:
    """A BatchNorm with cumulative statistics (momentum None, as SWA's recalibration) over ``batches``."""
    norm = nn.BatchNorm1d(2, momentum=None)
    norm.train()
    with torch.no_grad():
        for batch in batches:
            norm(batch)
    return norm


def run(rank: int, world_size: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=60))
    try:
        _checks(rank, out)
    finally:
        dist.destroy_process_group()


def _checks(rank: int, out: str) -> None:
    rows = torch.arange(ROWS[rank] * 2, dtype=torch.float32).reshape(-1, 2) + 100 * rank
    gathered = ops.all_gather_uneven(rows if len(rows) else None)
    assert gathered.shape == (sum(ROWS), 2), gathered.shape
    decision = ops.agree(rank == 0)  # rank 0 says yes, rank 1 no: rank 0's answer everywhere
    shared = ops.broadcast_object({"path": f"written by {rank}"})
    try:
        ops.run_on_main(lambda: (_ for _ in ()).throw(FileNotFoundError("no such run folder")))
        error = None
    except FileNotFoundError as exc:  # rank 0's error, raised on every rank
        error = str(exc)
    strategy = DataParallel()
    total, count = strategy.combine_sum(torch.tensor(1.5 * (rank + 1)), 10 + rank)
    generator = torch.Generator().manual_seed(rank)
    batches = [torch.randn(4, 2, generator=generator) * (rank + 1) for _ in range(rank + 1)]  # 1 and 2 batches
    norm = _norm_after(batches)
    ops.average_batchnorm_statistics(norm)
    torch.save({"gathered": gathered, "decision": decision, "shared": shared, "error": error,
                "total": total, "count": count, "batches": batches, "mean": norm.running_mean,
                "var": norm.running_var, "tracked": norm.num_batches_tracked}, f"{out}/rank{rank}.pt")
