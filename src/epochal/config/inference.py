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

from epochal.config.decision import decide, evaluate_decision, read_decision
from epochal.config.errors import ConfigError

__all__ = ["EXPORT_FORMATS", "TTAModel", "evaluate", "export", "locate_run", "predict", "restore_model"]

#: ``epochal export`` formats and their file suffixes.
EXPORT_FORMATS = {"safetensors": ".safetensors", "torchscript": ".pt", "onnx": ".onnx"}
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


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
    from epochal.config.builders import create_model
    from epochal.config.experiment import read_data_info
    from epochal.config.loading import load_config
    from epochal.state import CheckpointError, load_checkpoint

    run_dir, checkpoint = locate_run(target, which)
    config = load_config(run_dir / "config.yaml")
    info = read_data_info(run_dir)
    if not info:
        raise FileNotFoundError(f"{run_dir} has no data.json (runs trained with `epochal train` have one)")
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
    """Test-time augmentation: the mean of the model's logits over the original and mirrored images."""

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
    tta: bool = False,
    device: str | None = None,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Loss and metrics of a run's model on every labelled sample of ``data_path``.

    Without ``data_path`` the run's own validation split is rebuilt from its recipe (the same
    data path, seed and ``valid_pct``) and evaluated, so the numbers can be checked against the
    run's summary.

    Returns:
        ``{"metrics": {name: value}, "n": samples, "checkpoint": path, "data": what was evaluated}``,
        and ``decision`` (the metrics at the run's chosen threshold, see
        :func:`epochal.config.decision.evaluate_decision`) for a run trained with ``trainer.decision``.
    """
    from epochal.config.builders import build_loss
    from epochal.config.experiment import resolve_device, valid_metrics
    from epochal.learner import Learner

    model, config, info, checkpoint = restore_model(target)
    device = resolve_device(device)
    if tta and config.data.kind == "tabular":
        raise ConfigError("--tta is for image models; the run is tabular")
    with tempfile.TemporaryDirectory(prefix="epochal-eval-") as cache:
        if data_path is None:
            data = _own_validation_data(config, device, batch_size)
            source = f"validation split of {config.data.path} (valid_pct={config.data.valid_pct}, seed={config.seed})"
        else:
            data = _labelled_data(config, info, data_path, device, batch_size, cache)
            source = str(data_path)
        learner = Learner(
            TTAModel(model) if tta else model,
            data,
            loss=build_loss(config, info),
            metrics=config.metrics,
            device=device,
            precision=config.trainer.precision,
        )
        metrics = learner.validate()
        n = int(data.info.get("valid_size") or sum(len(y) for _, y in data.valid))
        decision = read_decision(locate_run(target)[0])
        if decision is not None:  # the run's own threshold, besides argmax (see epochal.config.decision)
            decision = evaluate_decision(model, data.valid, decision, device)
        del data, learner  # release the memory-mapped cache before the folder goes
    result = {"metrics": valid_metrics(metrics), "n": n, "checkpoint": str(checkpoint), "data": source}
    return {**result, "decision": decision} if decision is not None else result


def _image_files(inputs: list[str | Path]) -> list[Path]:
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"input {item} does not exist")
    if not files:
        raise FileNotFoundError(f"no image files found in {[str(i) for i in inputs]}")
    return files


def predict(
    target: str | Path | list[str | Path],
    inputs: list[str | Path],
    tta: bool = False,
    top_k: int = 1,
    device: str | None = None,
    batch_size: int = 64,
    weights: str | list[float] | None = None,
    combine: str = "probs",
) -> list[dict[str, Any]]:
    """Class predictions of a run's model (or of an ensemble of runs): for image files (or folders
    of them), or for every row of CSV files for a tabular run (the target column may be absent).

    A list of targets predicts with their :class:`~epochal.averaging.Ensemble` (``weights``:
    equal, ``"fit"`` or one per member; ``combine``: see :func:`epochal.config.ensembles.evaluate_ensemble`).

    Returns:
        One ``{"path", "class", "probability", "top": [[class, probability], ...]}`` per image, or
        per table row (with ``"row"``, its 0-based position among the file's rows).
    """
    from epochal.config.experiment import resolve_device

    device = resolve_device(device)
    if isinstance(target, (list, tuple)):
        from epochal.config.ensembles import restore_ensemble

        model, config, info, _ = restore_ensemble(target, weights, combine, device=device)
    else:
        model, config, info, _ = restore_model(target)
    if config.data.kind == "tabular":
        if tta:
            raise ConfigError("--tta is for image models; the run is tabular")
        decision = None if isinstance(target, (list, tuple)) else read_decision(locate_run(target)[0])
        return _predict_table(model.to(device).eval(), info, inputs, top_k, device, batch_size, decision)
    model = (TTAModel(model) if tta else model).to(device).eval()
    return _predict_images(model, config, info, inputs, top_k, device, batch_size)


def _classes(info: dict[str, Any]) -> list[str]:
    return info.get("classes") or [str(i) for i in range(int(info["num_classes"]))]


def _top(probs: torch.Tensor, classes: list[str], top_k: int) -> list[dict[str, Any]]:
    """``{"class", "probability", "top"}`` for each row of class probabilities."""
    values, indices = probs.topk(min(top_k, probs.shape[1]), dim=-1)
    return [
        {"class": classes[i[0]], "probability": v[0], "top": [[classes[c], p] for c, p in zip(i, v)]}
        for v, i in zip(values.tolist(), indices.tolist())
    ]


def _predict_images(model, config, info, inputs, top_k: int, device: str, batch_size: int) -> list[dict[str, Any]]:
    from epochal.data import Normalize
    from epochal.data.decode import load_rgb_array

    classes = _classes(info)
    shape = info.get("input_shape") or [3, config.data.image_size, config.data.image_size]
    norm = _normalize(info)
    normalize = Normalize(*norm) if norm else None
    rows = []
    files = _image_files(inputs)
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        pixels = torch.stack([torch.from_numpy(load_rgb_array(p, size=(shape[-2], shape[-1]))) for p in chunk])
        images = pixels.to(device).float().div_(255)
        if normalize is not None:
            images = normalize(images)
        with torch.no_grad():
            probs = model(images).float().softmax(dim=-1).cpu()
        rows += [{"path": str(path), **row} for path, row in zip(chunk, _top(probs, classes, top_k))]
    return rows


def _predict_table(
    model, info, inputs, top_k: int, device: str, batch_size: int, decision: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
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
            raise FileNotFoundError(f"input {path} is not a CSV file")
        frame, _ = data.read_table(path)
        loader = data.TensorLoader(
            prep.transform(frame), torch.zeros(len(frame)), batch_size=batch_size, shuffle=False, device=device
        )
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
    """Write a run's model as ``safetensors`` weights, a ``torchscript`` program or an ``onnx`` graph.

    Returns:
        ``{"path", "format", "bytes", "checkpoint"}``.

    Raises:
        ImportError: for ``onnx`` without the ``onnx`` package (the ``export`` extra).
    """
    from epochal.state import export_safetensors

    if fmt not in EXPORT_FORMATS:
        from epochal.utils import unknown_name_error

        raise unknown_name_error("export format", fmt, EXPORT_FORMATS)
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
