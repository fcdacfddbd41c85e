"""SnapshotEnsemble: the weights at the end of every cycle, for an ensemble from one run.

Huang et al., *Snapshot Ensembles: Train 1, get M for free* (ICLR 2017): with a cyclic schedule
such as SGDR (:func:`~epochal.schedules.sgdr`), each cycle ends at a low learning rate in a
different local minimum; the models at those points make an ensemble that costs one training run.
Fast geometric ensembling (Garipov et al., *Loss Surfaces, Mode Connectivity, and Fast Ensembling
of DNNs*, NeurIPS 2018) does the same with short triangular cycles (:func:`~epochal.schedules.fge`)
around one minimum.

The rule: a snapshot is written when the optimizer step that ends a phase whose name matches
``phases`` (a regular expression; by default ``cycle<i>``, the name of every SGDR cycle and of the
low half of every FGE cycle) has been taken. Each snapshot is ``checkpoints/snapshot_<k>.pt``, an
epochal checkpoint holding the model weights (``epochal eval RUN --snapshots`` and
:func:`epochal.config.ensembles.evaluate_ensemble` read them), written atomically; weights that are
not finite are not written (a warning says so). The list of snapshots written is in every
checkpoint (so a resumed run numbers the next one right) and in ``summary.json`` (``snapshots``).
In a data-parallel job the replicas are identical and rank 0 alone writes the files.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

from epochal.callbacks.base import Callback
from epochal.callbacks.model_checkpoint import weights_are_finite
from epochal.state import save_checkpoint

__all__ = ["SnapshotEnsemble"]


class SnapshotEnsemble(Callback):
    """Write the model's weights at the end of every cycle of a cyclic schedule.

    Args:
        phases: regular expression matched (in full) against phase names; a snapshot is taken at
            the end of every matching phase.
        dirpath: the folder for the files (default: ``<run_dir>/checkpoints``).

    Attributes:
        snapshots: ``{"path", "step", "epoch", "phase"}`` of every snapshot written; ``epoch`` is
            the schedule position (epochs elapsed), which at the end of an epoch is that epoch's
            number from 1, as in the history.

    Examples:
        >>> snapshots = SnapshotEnsemble()
        >>> Learner(model, data, callbacks=[snapshots], run_dir="runs/a").fit(sgdr(0.1, cycle_len=2, n_cycles=3))
        >>> [s["path"] for s in snapshots.snapshots]      # checkpoints/snapshot_00.pt ... _02.pt
    """

    order = 60

    def __init__(self, phases: str = r"cycle\d+", dirpath: str | Path | None = None):
        try:
            self.pattern = re.compile(phases)
        except re.error as exc:
            raise ValueError(f"SnapshotEnsemble: phases={phases!r} is not a regular expression ({exc})") from None
        self.phases = phases
        self.dirpath = Path(dirpath) if dirpath is not None else None
        self.snapshots: list[dict[str, Any]] = []
        self._ends: dict[int, int] = {}
        self._seen_step = 0

    @property
    def folder(self) -> Path:
        """Where the snapshots go."""
        return self.dirpath if self.dirpath is not None else self.in_run_dir("checkpoints", "dirpath")

    def before_fit(self) -> None:
        schedule = self.learner.schedule
        self._ends = {schedule.boundaries[k + 1]: k for k, p in enumerate(schedule.phases)
                      if p.name is not None and self.pattern.fullmatch(p.name) and schedule.phase_length(k) > 0}
        if not self._ends:
            names = [p.name for p in schedule.phases]
            raise ValueError(f"SnapshotEnsemble: no phase name matches {self.phases!r} (phases: {names}); use a "
                             "cyclic schedule (sgdr, fge) or pass phases=<regex of the names to snapshot after>")
        if self.learner.state.step == 0:
            self.snapshots = []
        if self.learner.is_main:
            self.folder.mkdir(parents=True, exist_ok=True)
        self._seen_step = self.learner.state.step

    def after_batch(self) -> None:
        learner = self.learner
        step = learner.state.step
        if not learner.training or step == self._seen_step:
            return
        self._seen_step = step
        if step in self._ends:
            self.take_snapshot(self._ends[step])

    def take_snapshot(self, phase: int) -> Path | None:
        """Write the model's weights now as the next snapshot (None when they are not finite)."""
        learner = self.learner
        path = self.folder / f"snapshot_{len(self.snapshots):02d}.pt"
        if not weights_are_finite(learner.model):
            warnings.warn(f"SnapshotEnsemble: weights are not finite at step {learner.state.step}; {path.name} "
                          "was not written", RuntimeWarning, stacklevel=2)
            return None
        record = {"step": learner.state.step, "epoch": learner.schedule.epoch_at(learner.state.step),
                  "phase": learner.schedule.phases[phase].name}
        if learner.is_main:  # in a data-parallel job the replicas are identical: rank 0 alone writes
            state = {k: v.detach().clone() for k, v in learner.model.state_dict().items()}
            save_checkpoint(path, {"model": state, "snapshot": record})
        shown = path.relative_to(learner.run_dir) if learner.run_dir is not None and path.is_relative_to(
            learner.run_dir) else path
        self.snapshots.append({"path": str(shown), **record})
        return path

    def run_summary(self) -> dict[str, Any]:
        return {"snapshots": [s["path"] for s in self.snapshots]}

    def state_dict(self) -> dict[str, Any]:
        return {"snapshots": [dict(s) for s in self.snapshots]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.snapshots = [dict(s) for s in state.get("snapshots", [])]
