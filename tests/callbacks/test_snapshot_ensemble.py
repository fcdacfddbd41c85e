"""SnapshotEnsemble: one file per cycle end (SGDR, FGE) holding the model of that step, resume-safe numbering."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from epochal.callbacks.base import Callback
from epochal.callbacks.model_checkpoint import ModelCheckpoint
from epochal.callbacks.snapshot_ensemble import SnapshotEnsemble
from epochal.schedules import TrainingPhase, fge, sgdr
from epochal.state import load_checkpoint


class Keep(Callback):
    """The live weights after every optimizer step, by step."""

    order = 70

    def before_fit(self):
        self.by_step = {}

    def after_batch(self):
        if self.learner.training:
            self.by_step[self.learner.state.step] = {k: v.clone() for k, v in self.learner.model.state_dict().items()}


@pytest.mark.parametrize(("phases", "steps"), [
    (sgdr(0.1, cycle_len=1, n_cycles=3), [4, 8, 12]),
    ([TrainingPhase(1, lr=0.05), *fge(4, lr=0.01, lr_max=0.1, cycle_len=2)], [12, 20]),
], ids=["sgdr", "fge"])
def test_one_snapshot_per_cycle_with_the_weights_of_that_step(make_learner, tmp_path, phases, steps):
    keep, snapshots = Keep(), SnapshotEnsemble()
    learner = make_learner(tmp_path, [snapshots, keep])  # 4 steps per epoch
    learner.fit(phases)
    assert [s["step"] for s in snapshots.snapshots] == steps
    for index, step in enumerate(steps):
        path = tmp_path / "checkpoints" / f"snapshot_{index:02d}.pt"
        payload = load_checkpoint(path)
        assert payload["snapshot"]["step"] == step and payload["snapshot"]["phase"].startswith("cycle")
        assert all(torch.equal(payload["model"][k], v) for k, v in keep.by_step[step].items())
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["snapshots"] == [f"checkpoints/snapshot_{i:02d}.pt" for i in range(len(steps))]


class CrashAt(Callback):
    order = 200

    def after_epoch(self):
        if self.learner.state.epoch == 1:
            raise RuntimeError("simulated crash")


def test_a_resumed_run_numbers_the_next_snapshot_after_the_saved_ones(make_learner, tmp_path):
    phases = sgdr(0.1, cycle_len=1, n_cycles=3)
    crashed = make_learner(tmp_path, [SnapshotEnsemble(), ModelCheckpoint(), CrashAt()])
    with pytest.raises(RuntimeError, match="simulated"):
        crashed.fit(phases)
    snapshots = SnapshotEnsemble()
    make_learner(tmp_path, [snapshots, ModelCheckpoint()]).fit(phases, resume=tmp_path)
    assert [s["path"] for s in snapshots.snapshots] == [f"checkpoints/snapshot_{i:02d}.pt" for i in range(3)]
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("snapshot_*.pt")) == [
        "snapshot_00.pt", "snapshot_01.pt", "snapshot_02.pt"]


def test_no_matching_phase_or_a_bad_pattern_is_an_error(make_learner, tmp_path):
    with pytest.raises(ValueError, match="no phase name matches"):
        make_learner(tmp_path, [SnapshotEnsemble()]).fit(2)
    with pytest.raises(ValueError, match="regular expression"):
        SnapshotEnsemble(phases="cycle(")


def test_non_finite_weights_are_not_written(make_learner, tmp_path):
    class Poison(Callback):
        order = 10

        def after_batch(self):
            if self.learner.training and self.learner.state.step == 8:
                with torch.no_grad():
                    self.learner.model.weight.fill_(float("nan"))

    snapshots = SnapshotEnsemble()
    learner = make_learner(tmp_path, [Poison(), snapshots], model=lambda: nn.Linear(4, 2))
    with pytest.warns(RuntimeWarning, match="not finite"):
        learner.fit(sgdr(0.1, cycle_len=1, n_cycles=2, warmup=0))
    assert [s["step"] for s in snapshots.snapshots] == [4]
