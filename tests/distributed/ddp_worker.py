"""A torchrun worker of the data-parallel tests: trains, blocks at a step to be killed, or resumes.

Usage: torchrun --nproc_per_node=2 ddp_worker.py full|crash|resume RUN_DIR OUT [STOP_STEP]

Each rank trains on its share of a fixed data set (``per_rank`` samples per batch, 2 accumulation
steps) and validates on 101 samples split unevenly (51 and 50); rank r saves its final weights and
history to ``OUT.rank<r>.pt``. ``crash`` prints ``READY <rank> <pid>`` once the checkpoint of
STOP_STEP is written and then waits to be killed.
"""

import os
import sys
import threading
from pathlib import Path

import torch

from epochal.callbacks.base import Callback
from epochal.callbacks.model_checkpoint import ModelCheckpoint
from epochal.data.loaders import TensorLoader
from epochal.distributed import world
from epochal.learner import Learner
from epochal.schedules import one_cycle
from epochal.state import seed_everything

PER_RANK = 8
GRAD_ACCUM = 2
EPOCHS = 3


def dataset():
    """96 training and 101 validation samples of a 3-class problem, the same in every process."""
    generator = torch.Generator().manual_seed(123)
    x = torch.randn(197, 8, generator=generator)
    y = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 0.8).long()
    return (x[:96], y[:96]), (x[96:], y[96:])


def model():
    """Deterministic (no dropout, no BatchNorm), so one process with batch 2B computes the same steps."""
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))


def learner(batch_size: int, rank: int, world_size: int, run_dir=None, callbacks=()) -> Learner:
    seed_everything(0)
    (x, y), (xv, yv) = dataset()
    split = {"rank": rank, "world_size": world_size}
    train = TensorLoader(x, y, batch_size=batch_size, shuffle=True, seed=5, **split)
    valid = TensorLoader(xv, yv, batch_size=20, shuffle=False, **split)
    return Learner(model(), (train, valid), optimizer="sgd", metrics=["accuracy", "auroc"], device="cpu",
                   grad_accum=GRAD_ACCUM, log_every=2, run_dir=run_dir, seed=0, callbacks=list(callbacks))


def phases():
    return one_cycle(EPOCHS, 0.3, optimizer="sgd", weight_decay=1e-3)


class BlockAtStep(Callback):
    """Once the checkpoint of ``step`` is on disk, say so and wait to be killed."""

    order = 200

    def __init__(self, step: int):
        self.step = step

    def after_step(self) -> None:
        if self.learner.state.step == self.step:
            sys.stdout.write(f"READY {world().rank} {os.getpid()}\n")  # one write: a whole line
            sys.stdout.flush()
            threading.Event().wait()


def main() -> None:
    mode, run_dir, out = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    stop_step = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    w = world()
    callbacks = [ModelCheckpoint(monitor="valid/accuracy", every_n_steps=2)]
    if mode == "crash":
        callbacks.append(BlockAtStep(stop_step))
    trained = learner(PER_RANK, w.rank, w.world_size, run_dir, callbacks)
    trained.fit(phases(), resume=run_dir if mode == "resume" else None)
    weights = {k: v.clone() for k, v in trained.model.state_dict().items()}
    torch.save({"weights": weights, "history": trained.history}, f"{out}.rank{w.rank}.pt")


if __name__ == "__main__":
    main()
