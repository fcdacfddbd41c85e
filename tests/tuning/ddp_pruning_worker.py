"""Child process of the DDP pruning test: rank 0 owns the trial and decides, the other rank follows.

Usage: python ddp_pruning_worker.py RANK WORLD_SIZE STORE_FILE OUT_JSON
"""

import json
import sys

import optuna
import torch
import torch.distributed as dist
from torch import nn

from epochal.callbacks.base import Callback
from epochal.data.base import ArrayLoader
from epochal.learner import Learner
from epochal.tuning.pruning import OptunaPruning


class Scripted(Callback):
    """Replaces the validation loss by a scripted value per epoch (before OptunaPruning reads it)."""

    order = -10

    def __init__(self, values):
        self.values = values

    def after_validate(self):
        self.learner.epoch_metrics["valid/loss"] = self.values[self.learner.state.epoch]


def main(rank: int, world_size: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    trial = None
    if rank == 0:
        study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.75))
        trial = study.ask()
    # rank 0 exceeds the threshold at epoch 1; the other rank alone would never be pruned
    values = [0.7, 0.9, 0.6, 0.5, 0.4] if rank == 0 else [0.1] * 5
    pruning = OptunaPruning(trial, "valid/loss")
    torch.manual_seed(0)
    x = torch.randn(32, 4)
    y = (x[:, 0] > 0).long()
    data = (ArrayLoader(x, y, batch_size=16), ArrayLoader(x, y, batch_size=16))
    learner = Learner(nn.Linear(4, 2), data, optimizer="sgd", lr=0.1, device="cpu",
                      callbacks=[Scripted(values), pruning])
    learner.fit(5)
    with open(out, "w") as handle:
        json.dump({"epochs": len(learner.history), "pruned": pruning.pruned, "pruned_epoch": pruning.pruned_epoch,
                   "reported": pruning.reported}, handle)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
