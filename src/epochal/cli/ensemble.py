"""Ensemble options and output shared by ``epochal eval`` and ``predict`` (several runs, snapshots)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from epochal.cli._output import console, emit_json

__all__ = ["CombineOpt", "SnapshotsOpt", "WeightsOpt", "is_member", "print_ensemble", "split_members"]

WeightsOpt = Annotated[
    str | None,
    typer.Option("--weights", help="Ensemble weights: 'equal' (default), 'fit' (held-out log loss on the first "
                                   "run's validation split) or one number per member, e.g. 0.5,0.3,0.2."),
]
CombineOpt = Annotated[
    str, typer.Option("--combine", help="How members combine: probs (mean probability), logits, sigmoid.")
]
SnapshotsOpt = Annotated[
    bool, typer.Option("--snapshots", help="Use each run's checkpoints/snapshot_*.pt (snapshot ensembles, FGE).")
]


def is_member(path: Path) -> bool:
    """Whether ``path`` is a run folder or a checkpoint (an ensemble member), not an input image or folder."""
    return (path.is_dir() and (path / "config.yaml").is_file()) or (path.is_file() and path.suffix == ".pt")


def split_members(inputs: list[Path]) -> tuple[list[Path], list[Path]]:
    """``(extra ensemble members, image inputs)``: the leading run folders and checkpoints are members.

    Raises:
        ValueError: when every argument is a run folder or checkpoint (no images to predict).
    """
    count = 0
    while count < len(inputs) and is_member(inputs[count]):
        count += 1
    if count == len(inputs):
        raise ValueError(f"{inputs[-1]} is a run folder or checkpoint (an ensemble member); give the images to "
                         "predict after the runs")
    return inputs[:count], inputs[count:]


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-" if value is None else str(value)


def print_ensemble(result: dict[str, Any], json_output: bool) -> None:
    """The ensemble's metrics and each member's, as a table or one JSON object."""
    if json_output:
        emit_json({k: result[k] for k in ("metrics", "n", "data", "combine", "weights", "weights_fitted_on",
                                          "members")})
        return
    from rich.table import Table

    fitted = f", weights fitted on the {result['weights_fitted_on']}" if result["weights_fitted_on"] else ""
    print(f"ensemble of {len(result['members'])} members ({result['combine']}{fitted}): "
          f"{result['n']} samples of {result['data']}")
    names = list(result["metrics"])
    table = Table()
    table.add_column("member", overflow="fold")
    for column in ["weight", *names]:
        table.add_column(column, justify="right", no_wrap=True)
    for member in result["members"]:
        table.add_row(member["checkpoint"], f"{member['weight']:.3f}", *[_fmt(member["metrics"].get(n)) for n in names])
    table.add_section()
    table.add_row("ensemble", "", *[_fmt(result["metrics"][n]) for n in names])
    console().print(table)
