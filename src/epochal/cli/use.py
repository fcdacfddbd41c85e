"""``epochal eval``, ``predict`` and ``export``: using a finished run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from epochal.cli._output import DeviceOpt, JsonOpt, command, emit_json
from epochal.cli.ensemble import CombineOpt, SnapshotsOpt, WeightsOpt, print_ensemble, split_members

__all__ = ["evaluate", "export", "predict"]

TargetArg = Annotated[Path, typer.Argument(help="A run folder, or a checkpoint file inside one.")]
TtaOpt = Annotated[bool, typer.Option("--tta", help="Average the logits of each image and its mirror image.")]


TargetsArg = Annotated[
    list[Path], typer.Argument(help="Run folders or checkpoint files; several evaluate their ensemble.")
]


@command
def evaluate(
    targets: TargetsArg,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Labelled data: a folder of class folders, or a CSV (default: the run's own validation split).",
        ),
    ] = None,
    tta: TtaOpt = False,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Evaluation batch size.")] = None,
    weights: WeightsOpt = None,
    combine: CombineOpt = "probs",
    snapshots: SnapshotsOpt = False,
    device: DeviceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Evaluate a trained run (or an ensemble of runs) on labelled data, or again on its own validation split."""
    from epochal.config.inference import evaluate as run_evaluate

    if len(targets) > 1 or snapshots or weights is not None:
        from epochal.config.ensembles import evaluate_ensemble

        result = evaluate_ensemble(targets, data, weights=weights, combine=combine, tta=tta, snapshots=snapshots,
                                   device=device, batch_size=batch_size)
        print_ensemble(result, json_output)
        return
    result = run_evaluate(targets[0], data, tta=tta, device=device, batch_size=batch_size)
    if json_output:
        extra = {"decision": result["decision"]} if "decision" in result else {}
        emit_json({"metrics": result["metrics"], "n": result["n"], "data": result["data"], **extra})
        return
    print(f"{result['n']} samples of {result['data']}, checkpoint {result['checkpoint']}")
    for name, value in result["metrics"].items():
        print(f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}")
    if "decision" in result:
        decision = result["decision"]
        print(f"at the run's {decision['metric']} threshold p({decision['positive']}) > {decision['threshold']:.4f}:")
        for name, value in decision["metrics"].items():
            print(f"  {name}: {value:.4f}")


@command
def predict(
    target: TargetArg,
    inputs: Annotated[list[Path], typer.Argument(help="Image files or folders of images.")],
    tta: TtaOpt = False,
    top_k: Annotated[int, typer.Option(min=1, help="Classes listed per image.")] = 1,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the predictions to this CSV.")] = None,
    weights: WeightsOpt = None,
    combine: CombineOpt = "probs",
    snapshots: SnapshotsOpt = False,
    device: DeviceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Predict the classes of images with a trained run; leading run folders or checkpoints make an ensemble."""
    from epochal.config.inference import predict as run_predict

    members, inputs = split_members(inputs)
    if members or snapshots or weights is not None:
        target = [target, *members]
    kwargs = {"weights": weights, "combine": combine} if isinstance(target, list) else {}
    if snapshots:
        from epochal.config.ensembles import ensemble_members

        target = ensemble_members(target, snapshots=True)
    rows = run_predict(target, [str(i) for i in inputs], tta=tta, top_k=top_k, device=device, **kwargs)
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
