"""``epochal eval``, ``predict`` and ``export``: using a finished run."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Annotated

import typer

from epochal.cli._output import DeviceOpt, JsonOpt, command, emit_json
from epochal.cli.ensemble import CombineOpt, SnapshotsOpt, WeightsOpt, print_ensemble, split_members
from epochal.cli.tta import TtaOpt

__all__ = ["evaluate", "export", "predict"]

TargetArg = Annotated[Path, typer.Argument(help="A run folder, or a checkpoint file inside one.")]


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
    tta: TtaOpt = None,
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

        result = evaluate_ensemble(targets, data, weights=weights, combine=combine, tta=tta or False,
                                   snapshots=snapshots,
                                   device=device, batch_size=batch_size)
        print_ensemble(result, json_output)
        return
    result = run_evaluate(targets[0], data, tta=tta or False, device=device, batch_size=batch_size)
    warning = overlap_warning(result["overlap"])
    if warning:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    if json_output:
        extra = {"decision": result["decision"]} if "decision" in result else {}
        emit_json({**{k: result[k] for k in ("metrics", "n", "data", "checkpoint", "checkpoint_info", "overlap")},
                   **extra})
        return
    print(f"{result['n']} samples of {result['data']}")
    print(f"checkpoint {result['checkpoint_info']['text']}")
    for name, value in result["metrics"].items():
        print(f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}")
    if "decision" in result:
        decision = result["decision"]
        print(f"at the run's {decision['metric']} threshold p({decision['positive']}) > {decision['threshold']:.4f}:")
        for name, value in decision["metrics"].items():
            print(f"  {name}: {value:.4f}")


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
    inputs: Annotated[
        list[Path], typer.Argument(help="Image files or folders of images; CSV files for a tabular run.")
    ],
    tta: TtaOpt = None,
    top_k: Annotated[int, typer.Option(min=1, help="Classes listed per image or row.")] = 1,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the predictions to this CSV.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Fail when any input cannot be read.")] = False,
    weights: WeightsOpt = None,
    combine: CombineOpt = "probs",
    snapshots: SnapshotsOpt = False,
    device: DeviceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Predict the classes of images (or of CSV rows, for a tabular run) with a trained run; leading
    run folders or checkpoints make an ensemble.

    Every readable input is predicted; the others are listed on stderr with the reason, and the
    exit status is 1 only when nothing could be read (or, with --strict, when anything could not).
    """
    from epochal.config.inference import predict as run_predict

    members, inputs = split_members(inputs)
    if members or snapshots or weights is not None:
        target = [target, *members]
    kwargs = {"weights": weights, "combine": combine} if isinstance(target, list) else {}
    if snapshots:
        from epochal.config.ensembles import ensemble_members

        target = ensemble_members(target, snapshots=True)
    failed: list[dict[str, str]] = []
    rows = run_predict(target, [str(i) for i in inputs], tta=tta or False, top_k=top_k, device=device, failed=failed,
                       **kwargs)
    for entry in failed:
        print(f"skipped {entry['path']}: {entry['error']}", file=sys.stderr)
    if not rows or (strict and failed):
        why = "--strict and " if rows else ""
        raise ValueError(f"{why}{len(failed)} of the inputs could not be read (listed above)" if failed
                         else f"nothing to predict in {[str(i) for i in inputs]}")
    if out is not None:
        write_predictions(out, rows, top_k)
    if json_output:
        emit_json({"predictions": rows, "n": len(rows), "failed": failed})
        return
    for r in rows:
        if "reconstruction_error" in r:  # an autoencoder run: how well it reconstructs each image
            print(f"{r['path']}\treconstruction_error\t{r['reconstruction_error']:.6f}")
            continue
        where = f"{r['path']}:{r['row']}" if "row" in r else r["path"]
        labels = [";".join(r["labels"])] if "labels" in r else []  # multi-label: every class above its threshold
        print("\t".join([where, *(f"{c}\t{p:.4f}" for c, p in r["top"]), *labels]))


def write_predictions(path: Path, rows: list[dict], top_k: int) -> None:
    """The predictions as CSV: ``path[,row],class,probability``, then ``class_2,probability_2`` ... up to ``top_k``
    (an autoencoder run: ``path,reconstruction_error,code_0,...``)."""
    import csv

    from epochal.utils import atomic_write_text

    if rows and "reconstruction_error" in rows[0]:  # an autoencoder run: error, then the code
        width = len(rows[0].get("embedding") or [])
        header = ["path", "reconstruction_error", *(f"code_{i}" for i in range(width))]
        lines = [[r["path"], f"{r['reconstruction_error']:.6f}", *(f"{v:.6f}" for v in r.get("embedding") or [])]
                 for r in rows]
    else:
        header = ["path", *(["row"] if rows and "row" in rows[0] else [])]
        header += [name for k in range(1, top_k + 1)
                   for name in ((f"class_{k}", f"probability_{k}") if k > 1 else ("class", "probability"))]
        lines = []
        for r in rows:
            cells = [r["path"], *([r["row"]] if "row" in r else [])]
            cells += [v for c, p in r["top"] for v in (c, f"{p:.6f}")]
            lines.append(cells)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    csv.writer(buffer).writerows([header, *lines])
    atomic_write_text(path, buffer.getvalue())


@command
def export(
    target: TargetArg,
    format: Annotated[
        str,
        typer.Option("--format", help="safetensors, torchscript, onnx (needs the 'export' extra) or embeddings "
                     "(a tabular run's categorical embeddings: a folder with a CSV per column)."),
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
