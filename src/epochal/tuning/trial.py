"""One trial: sample its parameters, train the recipe into its own run folder, tell the study the outcome.

A trial's folder, ``<study>/trials/trial_0003``, is a normal run folder (what ``epochal train``
writes: ``config.yaml``, ``metrics.jsonl``, ``summary.json``, ``checkpoints/``), plus ``trial.json``:
the study, the trial number, its parameters, its state (``running``, ``complete``, ``pruned`` or
``failed``), its value and, for a failed trial, why. The folder is made before anything can fail, so
every trial, even one whose sampled values the recipe refuses, has exactly one.

The objective is the best value of the monitored key over the trial's epochs (what its best
checkpoint holds), in the metric's own direction.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

from epochal.runs.folder import TRIAL_FILE
from epochal.tuning._optuna import require_optuna
from epochal.tuning.spec import StudySpec
from epochal.tuning.storage import ERROR_ATTR, Heartbeat, redact, worker_identity

__all__ = ["RUN_DIR_ATTR", "GridExhausted", "read_trial_record", "run_trial", "trial_dir", "write_trial_record"]

#: Trial user attribute with the trial's run folder.
RUN_DIR_ATTR = "epochal_run_dir"


class GridExhausted(Exception):
    """The grid sampler has visited every combination: the worker stops."""


def trial_dir(spec: StudySpec, number: int) -> Path:
    """``<study_dir>/trials/trial_0003`` for trial 3."""
    return spec.trials_dir / f"trial_{number:04d}"


def write_trial_record(folder: Path, record: dict[str, Any]) -> None:
    """Write ``trial.json`` atomically."""
    from epochal.utils import write_json_atomic

    write_json_atomic(folder / TRIAL_FILE, record)


def read_trial_record(folder: str | Path) -> dict[str, Any] | None:
    """``trial.json`` of a trial's run folder, or None for other folders."""
    from epochal.runs.folder import read_json

    path = Path(folder) / TRIAL_FILE
    return read_json(path) if path.is_file() else None


def run_trial(study, storage, spec: StudySpec, space, trial) -> str:
    """Train one asked trial and tell the study how it ended.

    A failure of any kind (a sampled value the recipe refuses, an exception in training, a value
    that is not finite) fails this trial only, with the reason saved in ``trial.json`` and in the
    trial's ``epochal_error`` user attribute; the search goes on. Ctrl-C fails the trial and stops.

    Returns:
        The final state: ``"complete"``, ``"pruned"`` or ``"failed"``.
    """
    folder = trial_dir(spec, trial.number)
    record: dict[str, Any] = {"study": spec.name, "number": trial.number, "storage": redact(spec.storage),
                              "state": "running", "params": {}, "value": None, "worker": worker_identity()}
    trial.set_user_attr(RUN_DIR_ATTR, str(folder.resolve()))
    start = time.perf_counter()
    with Heartbeat(storage, trial._trial_id, spec.heartbeat_interval):
        try:
            folder.mkdir(parents=True, exist_ok=False)
            write_trial_record(folder, record)
            state, value, error = _train(spec, space, trial, folder, record)
        except KeyboardInterrupt:
            _tell(study, trial, "failed", None, "interrupted (Ctrl-C)")
            raise
        except Exception as exc:  # every failure is this trial's alone
            state, value, error = "failed", None, f"{type(exc).__name__}: {exc}"
        state, exhausted = _tell(study, trial, state, value, error)
    record.update(state=state, value=value, error=error, wall_s=round(time.perf_counter() - start, 3))
    if folder.is_dir():
        write_trial_record(folder, record)
    _log(spec, trial.number, record)
    if exhausted:
        raise GridExhausted("the grid sampler has visited every combination of the space")
    return state


def _train(spec: StudySpec, space, trial, folder: Path, record: dict[str, Any]):
    from epochal.config.experiment import train
    from epochal.runs.folder import read_json
    from epochal.tuning.pruning import OptunaPruning

    values = space.suggest(trial)
    record["params"] = values
    write_trial_record(folder, record)
    config = space.config(spec.recipe, values, label=f"trial {trial.number} ({space.source})")
    if spec.nproc > 1:  # a torchrun job of nproc processes; its rank 0 reports to the trial
        from epochal.tuning.ddp_trial import run_trial_job

        outcome = run_trial_job(spec, trial._trial_id, config.to_dict(), folder)
        pruned, reported = outcome["pruned"], outcome["reported"]
    else:
        pruning = OptunaPruning(trial, spec.monitor)
        train(config, run_dir=folder, device=spec.device, progress=False, callbacks=[pruning])
        pruned, reported = pruning.pruned, pruning.reported
    if pruned:
        return "pruned", reported[-1][1], None
    best = read_json(folder / "summary.json").get("best", {}).get(spec.monitor, {}).get("value")
    if best is None or not math.isfinite(best):
        return "failed", None, f"{spec.monitor} has no finite value in any epoch"
    return "complete", float(best), None


def _tell(study, trial, state: str, value: float | None, error: str | None) -> tuple[str, bool]:
    """Tell the study; returns the state it holds (a trial failed meanwhile by another worker stays
    failed) and whether the grid sampler has visited its whole grid."""
    optuna = require_optuna()
    states = {"complete": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED,
              "failed": optuna.trial.TrialState.FAIL}
    exhausted = False
    try:
        if error is not None:
            trial.set_user_attr(ERROR_ATTR, error)
        study.tell(trial, value if state == "complete" else None, state=states[state])
    except optuna.exceptions.UpdateFinishedTrialError:
        pass
    except RuntimeError as exc:
        # the grid sampler stops the study after its last combination, which the ask-and-tell
        # interface reports as an error (optuna#5141) once the trial is already stored
        if "Study.stop" not in str(exc):
            raise
        exhausted = True
    stored = study._storage.get_trial(trial._trial_id).state  # the storage API takes trial ids
    names = {v: k for k, v in states.items()}
    return names.get(stored, stored.name.lower()), exhausted


def _log(spec: StudySpec, number: int, record: dict[str, Any]) -> None:
    value = record["value"]
    shown = f" {spec.monitor} {value:.6g}" if isinstance(value, float) else ""
    params = ", ".join(f"{k}={v}" for k, v in record["params"].items())
    reason = f": {record['error']}" if record.get("error") else ""
    print(f"[{spec.name}] trial {number} {record['state']}{shown} ({record['wall_s']:.1f} s) {params}{reason}",
          file=sys.stderr, flush=True)
