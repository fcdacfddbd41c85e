"""Using a finished run: evaluate it on new labelled data, predict, export its weights.

A run folder holds everything needed to rebuild its model: the resolved recipe
(``config.yaml``), the data facts (``data.json``: classes, input shape, normalisation, the fitted
tabular preprocessor) and the checkpoints. A checkpoint path inside a run folder
(``<run>/checkpoints/best.pt``) works as well as the folder (then ``best.pt`` is used, or
``last.pt`` when there is no best).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from epochal.config.data_files import overlap_with_run
from epochal.config.decision import decide, evaluate_decision, read_decision
from epochal.config.errors import ConfigError

__all__ = [
    "EXPORT_FORMATS", "TTAModel", "evaluate", "export", "locate_run", "predict", "restore_model",
]

#: ``epochal export`` formats and their file suffixes.
EXPORT_FORMATS = {"safetensors": ".safetensors", "torchscript": ".pt", "onnx": ".onnx"}


def locate_run(target: str | Path, which: str | None = None) -> tuple[Path, Path]:
    """``(run_dir, checkpoint)`` for a run folder or a checkpoint file inside one.

    A run folder gives its final weights: the file ``summary.json`` names under ``final_weights``
    (``swa.pt``/``ema.pt`` of a run that ended with averaged weights), else ``best.pt``, else ``last.pt``.

    Raises:
        FileNotFoundError: when ``target`` is neither, or the run has no checkpoint.
    """
    from epochal.runs.folder import final_checkpoint

    target = Path(target)
    if target.is_dir():
        run_dir = target
        final = final_checkpoint(run_dir) if which is None else None  # SWA/EMA: the averaged weights
        names = [which] if which else [*([final.stem] if final else []), "best", "last"]
        for name in names:
            if (run_dir / "checkpoints" / f"{name}.pt").is_file():
                checkpoint = run_dir / "checkpoints" / f"{name}.pt"
                break
        else:
            raise FileNotFoundError(
                f"{run_dir} has no checkpoints/{'|'.join(names)}.pt; is it a run folder "
                "of a run that finished an epoch?"
            )
    elif target.is_file():
        checkpoint = target
        run_dir = target.parent.parent if target.parent.name == "checkpoints" else target.parent
    else:
        raise FileNotFoundError(f"{target} is neither a run folder nor a checkpoint file")
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"cannot find the config.yaml of {target} (looked in {run_dir})")
    return run_dir, checkpoint


def restore_model(target: str | Path, which: str | None = None):
    """Rebuild a run's model and load its checkpoint weights.

    Returns:
        ``(model, config, data_info, checkpoint_path)``; the model is on the CPU in eval mode.
    """
    from epochal.config.builders import create_model, with_data_defaults
    from epochal.config.experiment import read_data_info
    from epochal.config.loading import load_config
    from epochal.state import CheckpointError, load_checkpoint

    run_dir, checkpoint = locate_run(target, which)
    config = load_config(run_dir / "config.yaml")
    info = read_data_info(run_dir)
    if not info:
        raise FileNotFoundError(f"{run_dir} has no data.json (runs trained with `epochal train` have one)")
    config, _ = with_data_defaults(config, info)  # what a recipe left to the data, as training chose it
    model = create_model(config, info)
    payload = load_checkpoint(checkpoint)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint {checkpoint} does not fit the model of {run_dir}: {str(exc).splitlines()[0][:300]}"
        ) from None
    return model.eval(), config, info, checkpoint


class TTAModel(nn.Module):
    """Test-time augmentation: the mean of the model's logits over :func:`epochal.data.tta_views`.

    ``flip`` adds the mirror image; ``translate > 0`` the images shifted by that many pixels both
    ways (airbench's views; :func:`epochal.config.tta.parse_tta` builds them from names).
    """

    def __init__(self, model: nn.Module, flip: bool = True, translate: int = 0):
        super().__init__()
        self.model, self.flip, self.translate = model, flip, translate

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        from epochal.data import predict_tta

        return predict_tta(self.model, images, flip=self.flip, translate=self.translate)


def _normalize(info: dict[str, Any]):
    spec = info.get("normalize")
    return (tuple(spec["mean"]), tuple(spec["std"])) if spec else None


def _labelled_data(
    config, info: dict[str, Any], data_path: str | Path, device: str, batch_size: int | None, cache: str
):
    """Loaders whose validation part is every labelled sample of ``data_path`` (images packed into ``cache``)."""
    from epochal import data

    path = Path(data_path)
    if not path.exists():
        raise FileNotFoundError(f"--data {path} does not exist")
    size = batch_size or config.data.batch_size
    if config.data.kind == "tabular":
        prep = data.TabularPreprocessor().load_state_dict(info["preprocessor"])
        frame, _ = data.read_table(path)
        _require_columns(frame, path, [config.data.target], "the target column the run was trained to predict")
        inputs, targets = prep.transform(frame), prep.transform_target(frame[config.data.target])
        loader = data.TensorLoader(inputs, targets, batch_size=size, shuffle=False, device=device)
        return data.DataLoaders(train=loader, valid=loader, classes=info.get("classes"), info=info)
    return data.image_folder_loaders(
        path,
        valid_root=path,
        classes=info.get("classes"),
        image_size=config.data.image_size,
        batch_size=size,
        valid_batch_size=size,
        augment=None,
        normalize=_normalize(info),
        device=device,
        cache_dir=cache,
        drop_last=False,
        progress=False,
    )


def _require_columns(frame, path: Path, needed: list[str], what: str) -> None:
    """Refuse a table that lacks a column, listing the columns it has (not a bare ``KeyError``)."""
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        have = ", ".join(map(str, frame.columns))
        raise ConfigError(f"--data {path}: column {', '.join(map(repr, missing))} ({what}) is missing; "
                          f"the file has the columns: {have}")


def _own_validation_data(config, device: str, batch_size: int | None):
    """The run's own validation split, rebuilt from its recipe (same data, seed and split)."""
    from epochal.config.builders import build_data

    if not config.data.valid_pct:
        raise ConfigError("the run held out no validation split (data.valid_pct is 0); pass --data")
    if batch_size is not None:
        config = config.model_copy(update={"data": config.data.model_copy(update={"batch_size": batch_size})})
    return build_data(config, device=device)


def evaluate(
    target: str | Path,
    data_path: str | Path | None = None,
    tta: bool | str | list[str] = False,
    device: str | None = None,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Loss and metrics of a run's model on every labelled sample of ``data_path``.

    Without ``data_path`` the run's own validation split is rebuilt from its recipe (the same
    data path, seed and ``valid_pct``) and evaluated, so the numbers can be checked against the
    run's summary. ``tta``: True (the mirror image) or view names (``"flip,translate"``, see
    :mod:`epochal.config.tta`). A multi-label run also reports F1 micro and macro at 0.5 (``f1``,
    ``f1_macro``) and at its tuned thresholds (``f1_at_thresholds``, ``f1_macro_at_thresholds``).

    With ``data_path`` the images are compared with the file lists the run recorded at train time
    (:mod:`epochal.config.data_files`): ``overlap`` counts those the run trained or validated on.

    Returns:
        ``{"metrics": {name: value}, "n": samples, "checkpoint": path, "data": what was evaluated,
        "checkpoint_info": see checkpoint_statement, "overlap": {"train", "valid", "of"} or None}``,
        and ``decision`` (the metrics at the run's chosen threshold, see
        :func:`epochal.config.decision.evaluate_decision`) for a run trained with ``trainer.decision``.
    """
    from epochal.config.builders import build_loss
    from epochal.config.experiment import resolve_auto, resolve_device, valid_metrics
    from epochal.config.thresholds import run_thresholds, threshold_metrics
    from epochal.config.tta import parse_tta, tta_model
    from epochal.learner import Learner
    from epochal.runs.folder import checkpoint_statement

    tta = parse_tta(tta)
    model, config, info, checkpoint = restore_model(target)
    thresholds = run_thresholds(locate_run(target)[0], info)
    metrics = config.metrics if thresholds is None else threshold_metrics(config.metrics, thresholds)
    device = resolve_device(device)
    if tta and config.data.kind == "tabular":
        raise ConfigError("--tta is for image models; the run is tabular")
    if info.get("task") == "reconstruction":
        _check_reconstruction(target, tta, "eval")
    run_dir = locate_run(target)[0]
    overlap = None
    with tempfile.TemporaryDirectory(prefix="epochal-eval-") as cache:
        if data_path is None:
            data = _own_validation_data(config, device, batch_size)
            source = f"validation split of {config.data.path} (valid_pct={config.data.valid_pct}, seed={config.seed})"
        else:
            data = _labelled_data(config, info, data_path, device, batch_size, cache)
            source = str(data_path)
            overlap = overlap_with_run(run_dir, data)
        learner = Learner(
            tta_model(model, tta),
            data,
            loss=build_loss(config, info),
            metrics=metrics,
            device=device,
            precision=resolve_auto(config.trainer.precision, device, "bf16", "fp32"),
        )
        metrics = learner.validate()
        n = int(data.info.get("valid_size") or sum(len(y) for _, y in data.valid))
        decision = read_decision(locate_run(target)[0])
        if decision is not None:  # the run's own threshold, besides argmax (see epochal.config.decision)
            decision = evaluate_decision(model, data.valid, decision, device)
        del data, learner  # release the memory-mapped cache before the folder goes
    result = {"metrics": valid_metrics(metrics), "n": n, "checkpoint": str(checkpoint), "data": source,
              "checkpoint_info": checkpoint_statement(run_dir, Path(checkpoint)), "overlap": overlap}
    return {**result, "decision": decision} if decision is not None else result


def _image_files(inputs: list[str | Path], failed: list[dict[str, str]] | None = None) -> list[Path]:
    from epochal.data.folders import find_image_files
    from epochal.data.report import warn_skipped

    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found, skipped = find_image_files(item)  # the extensions and skips of training's listing
            warn_skipped(skipped, f"predict input {item}")
            if not found:
                _fail(failed, item, "a folder without image files")
            files += map(Path, found)
        elif item.is_file():
            files.append(item)
        else:
            _fail(failed, item, "no such file or folder")
    return files


def _fail(failed: list[dict[str, str]] | None, path: Path, reason: str) -> None:
    """Record an input that cannot be predicted, or raise when the caller wants every input (``failed=None``)."""
    if failed is None:
        raise FileNotFoundError(f"input {path}: {reason}")
    failed.append({"path": str(path), "error": reason})


def predict(
    target: str | Path | list[str | Path],
    inputs: list[str | Path],
    tta: bool | str | list[str] = False,
    top_k: int = 1,
    device: str | None = None,
    batch_size: int = 64,
    weights: str | list[float] | None = None,
    combine: str = "probs",
    failed: list[dict[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """Class predictions of a run's model (or of an ensemble of runs): for image files (or folders
    of them), or for every row of CSV files for a tabular run (the target column may be absent).

    A list of targets predicts with their :class:`~epochal.averaging.Ensemble` (``weights``:
    equal, ``"fit"`` or one per member; ``combine``: see :func:`epochal.config.ensembles.evaluate_ensemble`).
    ``tta``: True (the mirror image) or view names (``"flip,translate"``, :mod:`epochal.config.tta`).

    A multi-label run scores each class with a sigmoid (a single-label one with a softmax) and
    adds ``"labels"``: every class above its threshold from the run's ``thresholds.json`` (0.5
    without one, and for an ensemble); ``top`` still lists the ``top_k`` highest scores.

    Args:
        weights: the ensemble's member weights (a list of targets only).
        combine: how the ensemble combines its members' outputs (a list of targets only).
        failed: where to record the inputs that cannot be read (``{"path", "error"}`` each), which
            are then skipped; None: the first one raises.

    Returns:
        One ``{"path", "class", "probability", "top": [[class, probability], ...]}`` per image, or
        per table row (with ``"row"``, its 0-based position among the file's rows); ``top`` lists
        the ``top_k`` most probable classes, the first being ``class``. A run that reconstructs
        its input (an autoencoder) gives ``{"path", "reconstruction_error", "embedding"}``: the
        mean squared error of the reconstruction (normalised pixels) and the code of ``encode``.
    """
    from epochal.config.experiment import resolve_device
    from epochal.config.thresholds import run_thresholds
    from epochal.config.tta import parse_tta, tta_model

    tta = parse_tta(tta)
    device = resolve_device(device)
    if isinstance(target, (list, tuple)):
        from epochal.config.ensembles import restore_ensemble

        model, config, info, _ = restore_ensemble(target, weights, combine, device=device)
    else:
        model, config, info, _ = restore_model(target)
    if info.get("task") == "reconstruction":
        _check_reconstruction(target, tta, "predict")
        return _reconstruct_images(model.to(device).eval(), config, info, inputs, device, batch_size, failed)
    if isinstance(target, (list, tuple)):  # an ensemble: its members' thresholds were tuned for each alone
        if info.get("multi_label") and combine == "probs":
            raise ConfigError("the ensemble's members are multi-label: combine 'probs' mixes softmax probabilities; "
                              "use --combine sigmoid (or logits)")
        thresholds = [0.5] * len(_classes(info)) if info.get("multi_label") else None
    else:
        thresholds = run_thresholds(locate_run(target)[0], info)
    if config.data.kind == "tabular":
        if tta:
            raise ConfigError("--tta is for image models; the run is tabular")
        decision = None if isinstance(target, (list, tuple)) else read_decision(locate_run(target)[0])
        return _predict_table(model.to(device).eval(), info, inputs, top_k, device, batch_size, failed, decision)
    model = tta_model(model, tta).to(device).eval()
    return _predict_images(model, config, info, inputs, top_k, device, batch_size, thresholds, failed)


def _check_reconstruction(target, tta, what: str) -> None:
    """Refuse what a run that reconstructs its input (an autoencoder) cannot do."""
    if isinstance(target, (list, tuple)):
        raise ConfigError(f"{what}: an ensemble combines classifiers; {target[0]} reconstructs its input")
    if tta:
        raise ConfigError(
            f"--tta averages the predictions of transformed views; {target} reconstructs its input, "
            "so a flipped view's reconstruction is of another image: leave --tta out"
        )


def _classes(info: dict[str, Any]) -> list[str]:
    return info.get("classes") or [str(i) for i in range(int(info["num_classes"]))]


def _top(probs: torch.Tensor, classes: list[str], top_k: int) -> list[dict[str, Any]]:
    """``{"class", "probability", "top"}`` for each row of class probabilities."""
    values, indices = probs.topk(min(top_k, probs.shape[1]), dim=-1)
    return [
        {"class": classes[i[0]], "probability": v[0], "top": [[classes[c], p] for c, p in zip(i, v)]}
        for v, i in zip(values.tolist(), indices.tolist())
    ]


def _decoded(files: list[Path], size: tuple[int, int], failed) -> tuple[list[Path], list[torch.Tensor]]:
    """The files that decode and their pixels; the others go to ``failed`` (or raise)."""
    from epochal.data.decode import BadImageError, load_rgb_array

    good, pixels = [], []
    for path in files:
        try:
            pixels.append(torch.from_numpy(load_rgb_array(path, size=size)))
        except (BadImageError, OSError) as exc:  # undecodable, truncated, unreadable (permissions)
            if failed is None:
                raise
            failed.append({"path": str(path), "error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__})
            continue
        good.append(path)
    return good, pixels


def _image_batches(config, info, inputs, device: str, batch_size: int, failed=None):
    """``(files, images)`` chunks of the inputs that decode, normalised as the run's data was."""
    from epochal.data import Normalize

    shape = info.get("input_shape") or [3, config.data.image_size, config.data.image_size]
    norm = _normalize(info)
    normalize = Normalize(*norm) if norm else None
    files = _image_files(inputs, failed)
    if not files and failed is None:
        raise FileNotFoundError(f"no image files found in {[str(i) for i in inputs]}")
    for start in range(0, len(files), batch_size):
        chunk, pixels = _decoded(files[start : start + batch_size], (shape[-2], shape[-1]), failed)
        if not chunk:
            continue
        images = torch.stack(pixels).to(device).float().div_(255)
        yield chunk, (normalize(images) if normalize is not None else images)


def _predict_images(model, config, info, inputs, top_k: int, device: str, batch_size: int,
                    thresholds: list[float] | None = None, failed=None) -> list[dict[str, Any]]:
    """Rows of :func:`predict` for image files; ``thresholds`` (multi-label) switch softmax for sigmoid."""
    from epochal.config.thresholds import labels_above

    classes = _classes(info)
    rows = []
    for chunk, images in _image_batches(config, info, inputs, device, batch_size, failed):
        with torch.no_grad():
            logits = model(images).float()
        probs = (logits.sigmoid() if thresholds is not None else logits.softmax(dim=-1)).cpu()
        batch = _top(probs, classes, top_k)
        if thresholds is not None:
            for row, labels in zip(batch, labels_above(probs, classes, thresholds)):
                row["labels"] = labels
        rows += [{"path": str(path), **row} for path, row in zip(chunk, batch)]
    return rows


def _reconstruct_images(model, config, info, inputs, device: str, batch_size: int, failed=None) -> list[dict]:
    """Rows of :func:`predict` for a run that reconstructs its input: error and code per image."""
    encode = getattr(model, "encode", None)
    rows = []
    for chunk, images in _image_batches(config, info, inputs, device, batch_size, failed):
        with torch.no_grad():
            errors = (model(images).float() - images).square().flatten(1).mean(1).tolist()
            codes = encode(images).float().cpu().tolist() if callable(encode) else [None] * len(chunk)
        rows += [{"path": str(path), "reconstruction_error": error, **({"embedding": code} if code else {})}
                 for path, error, code in zip(chunk, errors, codes)]
    return rows


def _predict_table(model, info, inputs, top_k: int, device: str, batch_size: int, failed=None,
                   decision: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Predictions for every row of each CSV, preprocessed as the run's training rows were.

    With a saved ``decision`` (a run trained with ``trainer.decision``), ``class`` is the class its
    threshold picks and ``probability`` that class's probability; ``top`` stays ranked by probability.
    """
    from epochal import data

    if info.get("task") == "regression":
        raise ConfigError("predict lists classes, but the run is a regression; use `epochal eval` with a labelled CSV")
    prep = data.TabularPreprocessor().load_state_dict(info["preprocessor"])
    classes = _classes(info)
    rows = []
    for path in map(Path, inputs):
        if not path.is_file():
            _fail(failed, path, "no such CSV file" if not path.exists() else "not a CSV file")
            continue
        try:
            frame, _ = data.read_table(path)
            inputs_ = prep.transform(frame)
        except (OSError, UnicodeDecodeError, ValueError) as exc:  # unreadable, not a table, columns missing
            if failed is None:
                raise ValueError(f"input {path}: {exc}") from None
            failed.append({"path": str(path), "error": str(exc).splitlines()[0]})
            continue
        loader = data.TensorLoader(inputs_, torch.zeros(len(frame)), batch_size=batch_size, shuffle=False,
                                   device=device)
        with torch.no_grad():
            logits = [model(*x) if isinstance(x, tuple) else model(x) for x, _ in loader.iter_epoch(0)]
        probs = torch.cat(logits).float().softmax(dim=-1).cpu()
        found = _top(probs, classes, top_k)
        if decision is not None:
            for row, pick, p in zip(found, decide(probs, decision).tolist(), probs.tolist()):
                row.update({"class": classes[pick], "probability": p[pick]})
        rows += [{"path": str(path), "row": i, **row} for i, row in enumerate(found)]
    return rows


def _example_input(model: nn.Module, config, info: dict[str, Any]):
    if config.data.kind == "tabular":
        return model.example_input(1)
    shape = info.get("input_shape") or [3, config.data.image_size or 224, config.data.image_size or 224]
    return torch.randn(1, *shape)


def export(
    target: str | Path, fmt: str = "safetensors", out: str | Path | None = None, which: str | None = None
) -> dict[str, Any]:
    """Write a run's model as ``safetensors`` weights, a ``torchscript`` program or an ``onnx`` graph,
    or (``embeddings``) a tabular run's categorical embeddings as a folder of CSVs
    (:func:`~epochal.config.embeddings_export.export_embeddings`).

    Returns:
        ``{"path", "format", "bytes", "checkpoint"}``.

    Raises:
        ImportError: for ``onnx`` without the ``onnx`` package (the ``export`` extra).
    """
    from epochal.state import export_safetensors

    if fmt == "embeddings":  # a folder of tables (tabular runs), not one model file
        from epochal.config.embeddings_export import export_embeddings

        return export_embeddings(target, out, which)
    if fmt not in EXPORT_FORMATS:
        from epochal.utils import unknown_name_error

        raise unknown_name_error("export format", fmt, [*EXPORT_FORMATS, "embeddings"])
    if fmt == "onnx":
        try:
            import onnx
        except ImportError:
            raise ImportError(
                "exporting to ONNX needs the optional 'onnx' package: pip install 'epochal[export]'"
            ) from None
    model, config, info, checkpoint = restore_model(target, which)
    run_dir = locate_run(target, which)[0]
    path = Path(out) if out is not None else run_dir / f"model{EXPORT_FORMATS[fmt]}"
    path.parent.mkdir(parents=True, exist_ok=True)
    example = _example_input(model, config, info)
    args = example if isinstance(example, tuple) else (example,)
    if fmt == "safetensors":
        export_safetensors(model.state_dict(), path, metadata={"format": "epochal", "model": config.model.name})
    elif fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning))
            traced = torch.jit.trace(model, args)
            traced.save(str(path))
    else:
        torch.onnx.export(
            model,
            args,
            str(path),
            dynamo=False,
            input_names=[f"input{i}" for i in range(len(args))],
            output_names=["logits"],
            dynamic_axes={f"input{i}": {0: "batch"} for i in range(len(args))},
        )
        onnx.checker.check_model(str(path))
    return {"path": str(path), "format": fmt, "bytes": path.stat().st_size, "checkpoint": str(checkpoint)}
