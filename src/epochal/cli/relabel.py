"""``epochal relabel``: move the confidently predicted images of the neutral class into their class."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from epochal.cli._output import DeviceOpt, JsonOpt, command, emit_json

__all__ = ["relabel"]


@command
def relabel(
    target: Annotated[Path, typer.Argument(help="A trained run folder (or a checkpoint inside one).")],
    data: Annotated[
        Path, typer.Option("--data", help="Image folder of class sub-folders, or a path,label CSV (a previous "
                                 "relabel's output too), the neutral class among them.")
    ],
    threshold: Annotated[
        float, typer.Option("--threshold", help="Smallest top probability that moves an image to its class.")
    ] = 0.9,
    out: Annotated[
        Path | None, typer.Option("--out", help="New path,label CSV (default: <run>/relabelled-<threshold>.csv).")
    ] = None,
    neutral_class: Annotated[
        str | None, typer.Option("--neutral-class", help="The neutral folder (default: the run's neutral_class).")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Prediction batch size.")] = 64,
    device: DeviceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Predict the neutral class's images and write a new label CSV with those above --threshold moved.

    Train on the result with `--set data.path=FILE.csv` (keep data.options.neutral_class to leave out the
    images that stayed neutral). An existing --out is refused: nothing is overwritten.
    """
    from epochal.config.relabel import relabel as run_relabel

    result = run_relabel(target, data, threshold, out, neutral_class=neutral_class, device=device,
                         batch_size=batch_size)
    if json_output:
        emit_json(result)
        return
    print(f"{result['neutral']} images of {result['neutral_class']!r} predicted (threshold {result['threshold']}):")
    for name, count in result["moved"].items():
        print(f"  moved to {name}: {count}")
    print(f"  stayed {result['neutral_class']}: {result['stayed']}")
    print(f"wrote {result['out']} ({result['images']} images)")
