"""``epochal train``, ``lr-find`` and ``plot-schedule``: commands that start from a recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from epochal.cli._output import DeviceOpt, JsonOpt, command, console, emit_json

__all__ = ["lr_find", "plot_schedule", "recipe_config", "train"]

RecipeArg = Annotated[str, typer.Argument(help="A shipped recipe name (see `epochal recipes`) or a YAML file.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        help="Override a recipe key, e.g. --set optimizer.lr=0.1 (value parsed as YAML); repeatable.",
    ),
]
DataOpt = Annotated[
    Path | None, typer.Option("--data", help="Data folder (or CSV for tabular recipes); sets data.path.")
]
EpochsOpt = Annotated[int | None, typer.Option("--epochs", min=1, help="Number of epochs; sets epochs.")]


def recipe_config(
    recipe: str,
    overrides: list[str] | None,
    data: Path | None = None,
    epochs: int | None = None,
    device: str | None = None,
):
    """Load ``recipe`` with ``--set`` overrides and the command's shortcut options applied last."""
    from epochal.config import load_config

    return load_config(
        recipe,
        overrides or [],
        data__path=str(data.resolve()) if data is not None else None,
        epochs=epochs,
        trainer__device=device,
    )


@command
def train(
    recipe: RecipeArg = "default",
    data: DataOpt = None,
    set_: SetOpt = None,
    epochs: EpochsOpt = None,
    out: Annotated[Path, typer.Option("--out", help="Root folder under which the run folder is created.")] = Path(
        "runs"
    ),
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume",
            help="Continue a crashed or stopped run folder exactly where its last checkpoint left off.",
        ),
    ] = None,
    device: DeviceOpt = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars (on stderr).")] = True,
    json_output: JsonOpt = False,
) -> None:
    """Train a recipe (default: the bundled cifar10-mini quick start) into a new run folder."""
    from epochal.config import load_config
    from epochal.config.experiment import train as run_training

    if resume is not None:
        if set_ or data is not None or epochs is not None:
            raise ValueError("--resume continues the run's saved config.yaml; drop --set, --data and --epochs")
        config = load_config(resume / "config.yaml") if (resume / "config.yaml").is_file() else None
        if config is None:
            raise FileNotFoundError(f"--resume {resume}: no config.yaml there; give a run folder")
    else:
        config = recipe_config(recipe, set_, data, epochs)
    result = run_training(config, out=out, resume=resume, device=device, progress=progress)
    if json_output:
        keys = ("run_dir", "epochs", "metrics", "best", "wall_s", "skipped_files", "final_weights", "decision")
        emit_json({k: result[k] for k in keys if k in result})
        return
    metrics = "  ".join(f"{k} {v:.4f}" for k, v in result["metrics"].items() if isinstance(v, float))
    print(f"run folder: {result['run_dir']}")
    print(f"epochs: {result['epochs']}  wall: {result['wall_s']:.1f} s  {metrics}")
    if result["skipped_files"]:
        print(f"skipped {len(result['skipped_files'])} undecodable file(s); see data.json and summary.json")


@command
def lr_find(
    recipe: RecipeArg = "default",
    data: DataOpt = None,
    set_: SetOpt = None,
    out: Annotated[Path, typer.Option("--out", help="The PNG plot to write.")] = Path("lr_find.png"),
    start: Annotated[float, typer.Option(help="First learning rate probed.")] = 1e-7,
    end: Annotated[float, typer.Option(help="Last learning rate probed.")] = 10.0,
    num: Annotated[int, typer.Option(min=5, help="Optimizer steps of the probe.")] = 100,
    device: DeviceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Run the learning-rate range test on a recipe's model and data, plot it and suggest a rate."""
    from epochal.config.experiment import lr_find as run_lr_find

    config = recipe_config(recipe, set_, data)
    result = run_lr_find(config, plot=out, device=device, start=start, end=end, num=num)
    if json_output:
        emit_json(result)
        return
    print(
        f"suggested lr: {result['suggestion']:.3g}  ("
        + ", ".join(f"{k} {v:.3g}" for k, v in result["suggestions"].items() if v is not None)
        + ")"
    )
    print(f"plot: {result['plot']}")


@command
def plot_schedule(
    recipe: RecipeArg = "default",
    set_: SetOpt = None,
    epochs: EpochsOpt = None,
    data: DataOpt = None,
    steps_per_epoch: Annotated[
        int | None,
        typer.Option(min=1, help="Optimizer steps per epoch (default: computed from the recipe's data)."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="The PNG plot to write.")] = Path("schedule.png"),
    json_output: JsonOpt = False,
) -> None:
    """Plot a recipe's learning-rate and momentum schedule per optimizer step."""
    from epochal.config.experiment import schedule_plot

    config = recipe_config(recipe, set_, data, epochs)
    result = schedule_plot(config, out, steps_per_epoch)
    if json_output:
        emit_json(result)
        return
    console().print(
        f"{result['phases']} phase(s), {result['total_steps']} steps "
        f"({result['steps_per_epoch']} per epoch): {result['plot']}"
    )
