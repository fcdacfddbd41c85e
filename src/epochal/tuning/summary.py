"""What a finished search leaves in its study folder, and the result ``epochal tune --json`` prints.

::

    <study>/
      study.json        the study: storage, monitor, direction, every trial (state, value, params,
                        run folder, error), the best trial, parameter importances
      best.yaml         the best trial's recipe: ``epochal train best.yaml`` reproduces it
      best_trial        a link to the best trial's run folder
      plots/history.png the optimisation history (each trial's value and the best so far)
      plots/slices.png  one panel per parameter: value against the parameter
      trials/trial_0000 ... one run folder per trial

Parameter importances are Optuna's ``get_param_importances``: fANOVA (Hutter et al., *An
Efficient Approach for Assessing Hyperparameter Importance*, ICML 2014) when scikit-learn is
installed, else PED-ANOVA (Watanabe et al., IJCAI 2023), which needs nothing more; the method used
is saved beside the numbers.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any

from epochal.runs.folder import STUDY_FILE
from epochal.tuning._optuna import require_optuna
from epochal.tuning.spec import StudySpec
from epochal.tuning.storage import ERROR_ATTR, WORKER_ATTR, redact
from epochal.tuning.trial import RUN_DIR_ATTR, read_trial_record, write_trial_record

__all__ = ["summarise", "write_study_file"]


_STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}


def _trial_row(trial, space) -> dict[str, Any]:
    value = trial.value if trial.value is not None and math.isfinite(trial.value) else None
    return {
        "number": trial.number,
        "state": _STATES.get(trial.state.name, trial.state.name.lower()),
        "value": value,
        "params": space.decode(trial.params),
        "run_dir": trial.user_attrs.get(RUN_DIR_ATTR),
        "worker": trial.user_attrs.get(WORKER_ATTR),
        "error": trial.user_attrs.get(ERROR_ATTR) or (
            "its worker stopped without reporting (no heartbeat within the grace period)"
            if trial.state.name == "FAIL" and not trial.user_attrs.get(ERROR_ATTR) else None),
    }


def write_study_file(spec: StudySpec, rows: list[dict[str, Any]] | None = None, **extra: Any) -> Path:
    """Write ``<study>/study.json`` (also at the start, so the folder is known as a study at once)."""
    from epochal.utils import write_json_atomic

    record = {"study": spec.name, "storage": redact(spec.storage), "monitor": spec.monitor,
              "direction": spec.direction, "n_trials": spec.n_trials, "sampler": spec.sampler,
              "pruner": spec.pruner, "space": spec.space, **extra, "trials": rows or []}
    return write_json_atomic(Path(spec.study_dir) / STUDY_FILE, record)


def _sync_trial_files(rows: list[dict[str, Any]]) -> None:
    """Bring the local trials' ``trial.json`` up to the storage's state (a killed trial is failed there)."""
    for row in rows:
        folder = Path(row["run_dir"]) if row.get("run_dir") else None
        record = read_trial_record(folder) if folder is not None and folder.is_dir() else None
        if record is not None and record.get("state") != row["state"]:
            record.update(state=row["state"], value=row["value"], error=row["error"])
            write_trial_record(folder, record)


def summarise(study, spec: StudySpec) -> dict[str, Any]:
    """Write ``study.json``, ``best.yaml``, the ``best_trial`` link and the plots; return the result.

    Returns:
        ``{"study", "study_dir", "storage", "trials", "states", "monitor", "direction", "best_trial",
        "best_value", "best_params", "best_trial_dir", "best_yaml", "importances",
        "importance_method", "plots"}``; ``trials`` counts the finished (complete, pruned or failed)
        trials; the best entries are None while no trial has completed.
    """
    space = spec.space_object()
    rows = [_trial_row(t, space) for t in study.get_trials(deepcopy=False)]
    _sync_trial_files(rows)
    states = {s: sum(r["state"] == s for r in rows) for s in ("complete", "pruned", "failed", "running")}
    result: dict[str, Any] = {
        "study": spec.name, "study_dir": str(Path(spec.study_dir).resolve()), "storage": redact(spec.storage),
        "trials": states["complete"] + states["pruned"] + states["failed"], "states": states,
        "monitor": spec.monitor, "direction": spec.direction, "best_trial": None, "best_value": None,
        "best_params": None, "best_trial_dir": None, "best_yaml": None,
    }
    complete = [r for r in rows if r["state"] == "complete" and r["value"] is not None]
    if complete:
        best = (max if spec.direction == "maximize" else min)(complete, key=lambda r: r["value"])
        result.update(best_trial=best["number"], best_value=best["value"], best_params=best["params"],
                      best_trial_dir=best["run_dir"], best_yaml=str(_write_best(spec, space, best)))
    importances, method = _importances(study)
    result.update(importances=importances, importance_method=method, plots=_plots(study, spec))
    write_study_file(spec, rows, **{k: v for k, v in result.items() if k not in ("storage", "study")})
    return result


def _write_best(spec: StudySpec, space, best: dict[str, Any]) -> Path:
    """``best.yaml``: the best trial's own ``config.yaml`` when its folder is here, else its recipe rebuilt."""
    import yaml

    from epochal.utils import atomic_write_text

    folder = Path(best["run_dir"]) if best["run_dir"] else None
    if folder is not None and (folder / "config.yaml").is_file():
        body = (folder / "config.yaml").read_text()
        _link_best(Path(spec.study_dir), folder)
    else:
        body = yaml.safe_dump(space.config(spec.recipe, best["params"]).to_dict(), sort_keys=False)
    params = ", ".join(f"{k}={v}" for k, v in best["params"].items())
    header = (f"# Best trial of study {spec.name!r}: trial {best['number']} ({spec.monitor} {best['value']:.6g}),\n"
              f"# run folder {best['run_dir']}\n# parameters: {params}\n"
              "# Reproduce it with: epochal train best.yaml\n")
    return atomic_write_text(Path(spec.study_dir) / "best.yaml", header + body)


def _link_best(study_dir: Path, folder: Path) -> None:
    link, temporary = study_dir / "best_trial", study_dir / ".best_trial.tmp"
    try:
        temporary.unlink(missing_ok=True)
        os.symlink(os.path.relpath(folder, study_dir), temporary)
        os.replace(temporary, link)
    except OSError:  # a file system without links: best_trial_dir in study.json says the same
        temporary.unlink(missing_ok=True)


def _importances(study) -> tuple[dict[str, float] | None, str | None]:
    optuna = require_optuna()
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        return None, None
    try:
        import sklearn  # noqa: F401 - fANOVA's random forest

        evaluator, method = optuna.importance.FanovaImportanceEvaluator(seed=0), "fanova"
    except ImportError:
        evaluator, method = optuna.importance.PedAnovaImportanceEvaluator(), "ped_anova"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError) as exc:  # e.g. every complete trial has the same parameters
        return None, f"{method} (not computed: {exc})"
    return {k: float(v) for k, v in importances.items()}, method


def _plots(study, spec: StudySpec) -> dict[str, str]:
    """``history.png`` and ``slices.png`` under ``<study>/plots`` (none before a trial completes)."""
    optuna = require_optuna()
    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        return {}
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np
    from optuna.visualization import matplotlib as optuna_plots

    folder = Path(spec.study_dir) / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, draw in (("history", optuna_plots.plot_optimization_history), ("slices", optuna_plots.plot_slice)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            axes = draw(study, target_name=spec.monitor)
        figure = np.asarray(axes).flat[0].figure
        path = folder / f"{name}.png"
        figure.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(figure)
        written[name] = str(path)
    return written
