"""``epochal eval``, ``predict`` and ``export``: using a finished run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from epochal.cli._output import DeviceOpt, JsonOpt, command, emit_json

__all__ = ["evaluate", "export", "predict"]

TargetArg = Annotated[Path, typer.Argument(help="A run folder, or a checkpoint file inside one.")]
TtaOpt = Annotated[bool, typer.Option("--tta", help="Average the logits of each image and its mirror image.")]


@command
def evaluate(
    target: TargetArg,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Labelled data: a folder of class folders, or a CSV (default: the run's own validation split).",
        ),
    ] = None,
    tta: TtaOpt = False,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Evaluation batch size.")] = None,
    device: DeviceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Evaluate a trained run on labelled data, or again on its own validation split."""
    from epochal.config.inference import evaluate as run_evaluate

    result = run_evaluate(target, data, tta=tta, device=device, batch_size=batch_size)
    warning = overlap_warning(result["overlap"])
    if warning:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    if json_output:
        emit_json({k: result[k] for k in ("metrics", "n", "data", "checkpoint", "checkpoint_info", "overlap")})
        return
    print(f"{result['n']} samples of {result['data']}")
    print(f"checkpoint {result['checkpoint_info']['text']}")
    for name, value in result["metrics"].items():
        print(f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}")


def overlap_warning(overlap: dict[str, int] | None) -> str | None:
    """What to say when evaluated images are among those the run trained (or validated) on."""
    if not overlap or not (overlap.get("train") or overlap.get("valid")):
        return None
    seen = [f"{overlap[s]} of the run's {name} images" for s, name in (("train", "training"), ("valid", "validation"))
            if overlap.get(s)]
    return (f"{' and '.join(seen)} are among the {overlap['of']} evaluated (same relative path and size, or the "
            "same file): metrics on images the model trained on overstate how it does on new ones")


@command
def predict(
    target: TargetArg,
    inputs: Annotated[list[Path], typer.Argument(help="Image files or folders of images.")],
    tta: TtaOpt = False,
    top_k: Annotated[int, typer.Option(min=1, help="Classes listed per image.")] = 1,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the predictions to this CSV.")] = None,
    device: DeviceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Predict the classes of images with a trained run."""
    from epochal.config.inference import predict as run_predict

    rows = run_predict(target, [str(i) for i in inputs], tta=tta, top_k=top_k, device=device)
    if out is not None:
        import csv

        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "class", "probability"])
            writer.writerows([r["path"], r["class"], f"{r['probability']:.6f}"] for r in rows)
    if json_output:
        emit_json({"predictions": rows, "n": len(rows)})
        return
    for r in rows:
        print(f"{r['path']}\t{r['class']}\t{r['probability']:.4f}")


@command
def export(
    target: TargetArg,
    format: Annotated[
        str, typer.Option("--format", help="safetensors, torchscript or onnx (needs the 'export' extra).")
    ] = "safetensors",
    out: Annotated[Path | None, typer.Option("--out", help="Output file (default: <run>/model.<suffix>).")] = None,
    checkpoint: Annotated[str | None, typer.Option(help="best or last (default: best, else last).")] = None,
    json_output: JsonOpt = False,
) -> None:
    """Export a trained run's model for deployment."""
    from epochal.config.inference import export as run_export

    result = run_export(target, format, out, checkpoint)
    if json_output:
        emit_json(result)
        return
    print(f"wrote {result['path']} ({result['format']}, {result['bytes']} bytes) from {result['checkpoint']}")
