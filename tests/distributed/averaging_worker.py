"""A rank of the weight-averaging test (torch.multiprocessing, gloo over a file rendezvous): SWA and
snapshots under DDP.

Each rank trains on its share of a fixed data set with SWA (BatchNorm recalibrated) and
SnapshotEnsemble, records which files it wrote, and saves its final weights to ``OUT/rank<r>.pt``.
"""

import datetime

import torch
import torch.distributed as dist
from torch import nn

import epochal.callbacks.snapshot_ensemble as snapshot_module
import epochal.callbacks.weight_averaging as averaging_module
from epochal.callbacks.snapshot_ensemble import SnapshotEnsemble
from epochal.callbacks.swa import SWA
from epochal.data.loaders import TensorLoader
from epochal.learner import Learner
from epochal.schedules import sgdr
from epochal.state import seed_everything

PER_RANK = 8
CYCLES = 3


def dataset():
    """64 training and 30 validation samples of a 2-class problem, the same in every process."""
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(94, 4, generator=generator) * 3 + 1
    y = (x[:, 0] + x[:, 1] > 2).long()
    return (x[:64], y[:64]), (x[64:], y[64:])


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))


def train_loader(rank: int, world_size: int) -> TensorLoader:
    (x, y), _ = dataset()
    return TensorLoader(x, y, batch_size=PER_RANK, shuffle=True, seed=5, rank=rank, world_size=world_size)


def run(rank: int, world_size: int, init_file: str, out: str, run_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=60))
    try:
        _train(rank, world_size, out, run_dir)
    finally:
        dist.destroy_process_group()


def _train(rank: int, world_size: int, out: str, run_dir: str) -> None:
    written: list[str] = []

    def recording(save):
        def save_and_record(path, payload):
            written.append(path.name)
            return save(path, payload)
        return save_and_record

    averaging_module.save_checkpoint = recording(averaging_module.save_checkpoint)
    snapshot_module.save_checkpoint = recording(snapshot_module.save_checkpoint)
    seed_everything(0)
    _, (xv, yv) = dataset()
    valid = TensorLoader(xv, yv, batch_size=10, shuffle=False, rank=rank, world_size=world_size)
    swa = SWA(start=1)
    learner = Learner(model(), (train_loader(rank, world_size), valid), optimizer="sgd", metrics=["accuracy"],
                      device="cpu", run_dir=run_dir, seed=0, callbacks=[swa, SnapshotEnsemble()])
    learner.fit(sgdr(0.1, cycle_len=1, n_cycles=CYCLES))
    torch.save({"weights": {k: v.clone() for k, v in learner.model.state_dict().items()},
                "written": written, "updates": swa.averaged.n_averaged, "final": swa.final_checkpoint,
                "history": learner.history}, f"{out}/rank{rank}.pt")
