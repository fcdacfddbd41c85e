"""OptunaPruning: per-epoch reports, the fit cancelled when the pruner says so, rank 0 deciding under DDP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
import torch.distributed as dist
from torch import nn

from epochal.callbacks.base import Callback
from epochal.data.base import ArrayLoader
from epochal.learner import Learner
from epochal.tuning.pruning import OptunaPruning

WORKER = Path(__file__).with_name("ddp_pruning_worker.py")


class Scripted(Callback):
    """Replaces the validation loss by a scripted value per epoch (before OptunaPruning reads it)."""

    order = -10

    def __init__(self, values):
        self.values = values

    def after_validate(self):
        self.learner.epoch_metrics["valid/loss"] = self.values[self.learner.state.epoch]


def _fit(callbacks, run_dir=None, epochs: int = 5) -> Learner:
    torch.manual_seed(0)
    x = torch.randn(32, 4)
    y = (x[:, 0] > 0).long()
    data = (ArrayLoader(x, y, batch_size=16), ArrayLoader(x, y, batch_size=16))
    learner = Learner(nn.Linear(4, 2), data, optimizer="sgd", lr=0.1, device="cpu", callbacks=callbacks,
                      run_dir=run_dir)
    learner.fit(epochs)
    return learner


VALUES = [0.7, 0.9, 0.6, 0.5, 0.4]  # above ThresholdPruner(upper=0.75) at epoch 1 only


def test_pruned_trial_stops_the_fit_after_the_pruned_epoch(tmp_path):
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.75))
    trial = study.ask()
    pruning = OptunaPruning(trial, "loss")
    learner = _fit([Scripted(VALUES), pruning], run_dir=tmp_path)
    assert pruning.pruned and pruning.pruned_epoch == 1
    assert len(learner.history) == 2 and pruning.reported == [(0, 0.7), (1, 0.9)]
    assert study.trials[0].intermediate_values == {0: 0.7, 1: 0.9}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "stopped"  # recorded like any cancelled fit
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2  # the pruned epoch is logged


def test_unpruned_trial_reports_every_epoch():
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    pruning = OptunaPruning(trial, "valid/loss")
    learner = _fit([Scripted(VALUES), pruning])
    assert not pruning.pruned and len(learner.history) == 5
    assert study.trials[0].intermediate_values == dict(enumerate(VALUES))


def test_unlogged_monitor_names_the_logged_keys():
    trial = optuna.create_study().ask()
    torch.manual_seed(0)
    x = torch.randn(16, 4)
    y = (x[:, 0] > 0).long()
    data = (ArrayLoader(x, y, batch_size=16), ArrayLoader(x, y, batch_size=16))
    learner = Learner(nn.Linear(4, 2), data, metrics=["accuracy"], device="cpu",
                      callbacks=[OptunaPruning(trial, "valid/acuracy")])
    with pytest.raises(KeyError, match="valid/acuracy.*did you mean 'valid/accuracy'"):
        learner.fit(1)


def test_initialised_process_group_of_one_decides_and_broadcasts(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.75))
        pruning = OptunaPruning(study.ask(), "valid/loss")
        learner = _fit([Scripted(VALUES), pruning])
    finally:
        dist.destroy_process_group()
    assert pruning.pruned and len(learner.history) == 2


@pytest.mark.slow  # two interpreters importing torch: about 30 s on a busy 2-core machine
def test_two_ranks_stop_together_on_rank_0s_decision(tmp_path):
    outs = [tmp_path / f"rank{r}.json" for r in range(2)]
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(r), "2", str(tmp_path / "store"), str(outs[r])],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    rank0, rank1 = (json.loads(o.read_text()) for o in outs)
    assert rank0["pruned"] and rank1["pruned"] and rank0["pruned_epoch"] == rank1["pruned_epoch"] == 1
    assert rank0["epochs"] == rank1["epochs"] == 2
    assert rank0["reported"] == [[0, 0.7], [1, 0.9]] and rank1["reported"] == []  # only rank 0 talks to the study
