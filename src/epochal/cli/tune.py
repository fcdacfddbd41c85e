"""``epochal tune``: a hyperparameter search over a recipe with Optuna (see docs/tuning.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from epochal.cli._output import DeviceOpt, JsonOpt, command, emit_json
from epochal.cli.train import DataOpt, EpochsOpt, RecipeArg, SetOpt, recipe_config

__all__ = ["tune"]

#: What ``--json`` prints (the whole summary is in ``<study>/study.json``).
_JSON_KEYS = ("study", "study_dir", "storage", "trials", "states", "monitor", "direction", "best_trial",
              "best_value", "best_params", "best_trial_dir", "best_yaml", "importances", "importance_method", "plots")


@command
def tune(
    recipe: RecipeArg = "default",
    space: Annotated[
        str | None,
        typer.Option("--space", help="Search-space YAML file (default: the space shipped for the recipe)."),
    ] = None,
    trials: Annotated[
        int, typer.Option("--trials", min=1, help="Trials in the study in total (a resumed study adds the rest).")
    ] = 20,
    storage: Annotated[
        str | None,
        typer.Option("--storage", help="sqlite:///f.db, postgresql://user:pw@host/db, journal or journal:///path "
                     "(default: SQLite in the study folder)."),
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Worker processes on this machine.")] = 1,
    study: Annotated[str | None, typer.Option("--study", help="Study name (default: <recipe>-tune).")] = None,
    data: DataOpt = None,
    set_: SetOpt = None,
    epochs: EpochsOpt = None,
    out: Annotated[Path, typer.Option("--out", help="Folder holding the study folder.")] = Path("runs"),
    monitor: Annotated[
        str | None, typer.Option("--monitor", help="Logged key to optimise, e.g. valid/accuracy.")
    ] = None,
    sampler: Annotated[str | None, typer.Option("--sampler", help="tpe (default), cmaes, random or grid.")] = None,
    pruner: Annotated[
        str | None, typer.Option("--pruner", help="median (default), successive_halving, hyperband or none.")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Sampler seed (default: the recipe's seed).")] = None,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="torch CPU threads per worker.")] = None,
    nproc: Annotated[
        int | None,
        typer.Option("--nproc", min=1, help="Processes each trial trains on (data-parallel, a torchrun job per "
                     "trial; default trainer.devices)."),
    ] = None,
    device: DeviceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Search hyperparameters of a recipe with Optuna; each trial is a run folder of the study folder."""
    from epochal.tuning import tune as run_search

    config = recipe_config(recipe, set_, data, epochs)
    result = run_search(config, space, trials=trials, storage=storage, workers=workers, study=study, out=out,
                        monitor=monitor, sampler=sampler, pruner=pruner, seed=seed, device=device, threads=threads,
                        nproc=nproc)
    if json_output:
        emit_json({k: result.get(k) for k in _JSON_KEYS})
        return
    states = ", ".join(f"{n} {s}" for s, n in result["states"].items() if n)
    print(f"study {result['study']}: {result['trials']} trials ({states}) in {result['study_dir']}")
    if result["best_trial"] is None:
        print("no trial has completed yet")
        return
    print(f"best: trial {result['best_trial']}, {result['monitor']} {result['best_value']:.6g}")
    for key, value in result["best_params"].items():
        print(f"  {key} = {value}")
    print(f"recipe: {result['best_yaml']}  (epochal train {result['best_yaml']})")
    if result["importances"]:
        ranked = ", ".join(f"{k} {v:.2f}" for k, v in result["importances"].items())
        print(f"importances ({result['importance_method']}): {ranked}")
