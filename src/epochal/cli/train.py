"""``epochal train``, ``lr-find`` and ``plot-schedule``: commands that start from a recipe."""

from __future__ import annotations

import sys
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
EpochsOpt = Annotated[
    int | None,
    typer.Option("--epochs", min=1, help="Number of epochs; sets epochs (a recipe's listed phases are scaled to it)."),
]
NprocOpt = Annotated[
    int | None,
    typer.Option(
        "--nproc",
        min=1,
        help="Processes on this machine (one per GPU, or CPU processes on gloo): runs this command under "
        "`torchrun --standalone --nproc_per_node=N`; default trainer.devices. Several machines: see "
        "docs/distributed.md.",
    ),
]


def recipe_config(
    recipe: str,
    overrides: list[str] | None,
    data: Path | None = None,
    epochs: int | None = None,
    device: str | None = None,
):
    """Load ``recipe`` with ``--set`` overrides and the command's shortcut options applied last.

    ``--epochs`` also scales a recipe's explicit list of phases to that many epochs, saying so on
    stderr (:func:`~epochal.config.experiment.scale_phases`).
    """
    from epochal.config import load_config
    from epochal.config.experiment import scale_phases

    config = load_config(
        recipe,
        overrides or [],
        data__path=str(data.resolve()) if data is not None else None,
        epochs=epochs,
        trainer__device=device,
    )
    if epochs is not None:
        config, note = scale_phases(config, epochs)
        if note:
            print(note, file=sys.stderr, flush=True)
    return config


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
    nproc: NprocOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Train a recipe (default: the bundled cifar10-mini quick start) into a new run folder.

    Prints what will run when training starts and what happened at the end (on stderr with
    --json). Ctrl-C or SIGTERM stops at the next batch boundary with that exact position saved,
    and prints the --resume command that continues it (exit status 130, or 143 for SIGTERM).
    """
    from epochal import distributed
    from epochal.callbacks.save_on_interrupt import Interrupted
    from epochal.cli.report import RunHeader, interrupted_lines, print_end
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
    processes = nproc or config.trainer.devices
    if processes > 1 and not distributed.launched():  # one machine: start torchrun for this same command
        arguments = _train_arguments(recipe, data, set_, epochs, out, resume, device, progress, json_output)
        from epochal.distributed.launch import relaunch

        raise typer.Exit(relaunch(processes, arguments))
    main = distributed.is_main()  # in a job, rank 0 reports for all
    report = sys.stderr if json_output else sys.stdout
    try:
        result = run_training(config, out=out, resume=resume, device=device, progress=progress,
                              callbacks=[RunHeader(config, report)] if main else [])
    except Interrupted as stop:
        if main:
            print("\n".join(interrupted_lines(stop)), file=sys.stderr, flush=True)
        raise typer.Exit(stop.exit_code) from None
    if not main:
        return
    print_end(result, report)
    if json_output:
        emit_json({k: result[k] for k in TRAIN_JSON_KEYS if k in result or k not in OPTIONAL_JSON_KEYS})
        return
    for key, value in result.get("chosen_from_data", {}).items():
        print(f"{key}: {', '.join(value) if isinstance(value, list) else value} (chosen from the data's labels)")
    if "thresholds" in result:
        tuned, half = result["thresholds"]["at_thresholds"], result["thresholds"]["at_0.5"]
        print(f"thresholds: {result['thresholds']['path']} (valid F1 micro/macro {tuned['f1_micro']:.4f}/"
              f"{tuned['f1_macro']:.4f}; at 0.5 {half['f1_micro']:.4f}/{half['f1_macro']:.4f})")
    _print_data_report(Path(result["run_dir"]) / "data_report.json")


#: The keys of ``epochal train --json``.
TRAIN_JSON_KEYS = ("run_dir", "status", "stop_reason", "epochs", "metrics", "final", "best", "best_epochs",
                   "final_weights", "checkpoints", "wall_s", "skipped_files", "chosen_from_data", "thresholds",
                   "decision")
#: Keys present only for some runs (a recipe that left its loss to the data, a multi-label run, a
#: recipe with trainer.decision).
OPTIONAL_JSON_KEYS = ("chosen_from_data", "thresholds", "decision")


def _print_data_report(path: Path) -> None:
    """One line when the data pipeline skipped or reinterpreted something, naming the file that lists it."""
    from epochal.runs import read_json

    report = read_json(path) if path.is_file() else {}
    if report.get("skipped_files", {}).get("count") or report.get("empty_classes") or report.get("tables"):
        print(f"data: {report['summary']}; every path and row with its reason: {path}")


def _train_arguments(recipe, data, set_, epochs, out, resume, device, progress, json_output) -> list[str]:
    """The ``epochal train`` arguments that reproduce this command (without ``--nproc``), for torchrun."""
    from epochal.cli._output import DEBUG

    args = ["--debug"] if DEBUG["enabled"] else []
    args += ["train", recipe, "--out", str(out)]
    for option, value in (("--data", data), ("--epochs", epochs), ("--resume", resume), ("--device", device)):
        if value is not None:
            args += [option, str(value)]
    for override in set_ or []:
        args += ["--set", override]
    args += [] if progress else ["--no-progress"]
    return args + (["--json"] if json_output else [])


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
