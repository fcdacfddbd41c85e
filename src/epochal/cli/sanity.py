"""``epochal sanity``: overfit one batch of a recipe and test the likely causes of anything wrong."""

from __future__ import annotations

from typing import Annotated

import typer

from epochal.cli._output import DeviceOpt, JsonOpt, command, emit_json
from epochal.cli.train import DataOpt, RecipeArg, SetOpt, recipe_config

__all__ = ["sanity"]


@command
def sanity(
    recipe: RecipeArg = "default",
    data: DataOpt = None,
    set_: SetOpt = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="Samples of the batch to overfit (default: the recipe's).")
    ] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Steps after which the overfit gives up.")] = 200,
    lr: Annotated[
        float | None, typer.Option("--lr", min=0.0, help="Constant learning rate (default: optimizer.lr).")
    ] = None,
    loss_target: Annotated[float, typer.Option("--loss-target", min=0.0, help="Loss the batch must reach.")] = 0.05,
    skip: Annotated[
        list[str] | None, typer.Option("--skip", help="A check not to run (e.g. duplicates); repeatable.")
    ] = None,
    device: DeviceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Overfit one batch of a recipe (augmentation off) and check data, labels and model; exit 1 on a failed check."""
    from epochal.config.experiment import sanity as run_sanity

    config = recipe_config(recipe, set_, data)
    report = run_sanity(config, device=device, batch_size=batch_size, max_steps=steps, lr=lr,
                        loss_target=loss_target, skip=skip or ())
    if json_output:
        emit_json(report.to_dict())
    else:
        print(report)
    if not report.passed:
        raise typer.Exit(1)
