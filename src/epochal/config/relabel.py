"""Relabelling the neutral class with a trained run: the API behind ``epochal relabel``.

A data set often has a folder of uncertain images (``unsure/``, ``other/``) kept out of training
with ``data.options.neutral_class``. A model trained on the rest predicts them; those it puts in
a class with a top probability of at least ``threshold`` join that class, the others stay
neutral (pseudo-labelling with a confidence threshold: Lee, *Pseudo-Label: The Simple and
Efficient Semi-Supervised Learning Method for Deep Neural Networks*, ICML workshops 2013). The
result is a new ``path,label`` CSV of every image of the folder, which a recipe trains on with
``data.path: FILE.csv`` (keep ``data.options.neutral_class`` to leave the images that stayed
neutral out). Nothing is overwritten: an existing output file is refused.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import torch

from epochal.config.errors import ConfigError

__all__ = ["relabel"]


def _neutral_class(run_dir: Path, given: str | None) -> str:
    """``given``, else the ``data.options.neutral_class`` the run was trained with."""
    if given is not None:
        return given
    from epochal.config.loading import load_config

    config = load_config(run_dir / "config.yaml")
    name = config.data.options.get("neutral_class")
    if name is None:
        raise ConfigError(
            f"run {run_dir} was trained without data.options.neutral_class; name the neutral class "
            "with --neutral-class NAME"
        )
    return str(name)


def _check_out(out: Path) -> None:
    if out.exists():
        raise ConfigError(f"--out {out} already exists; relabel never overwrites a label file: give a new path")
    if out.suffix.lower() != ".csv":
        raise ConfigError(f"--out {out} must be a .csv file (path,label rows a recipe can train on)")


def _write_new(out: Path, rows: list[tuple[str, str]]) -> None:
    """Write the CSV beside ``out``, then link it into place: fails, leaving nothing, if ``out`` appeared."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "label"])
    writer.writerows(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(buffer.getvalue(), encoding="utf-8")
    try:
        os.link(tmp, out)  # unlike a rename, a link never replaces an existing file
    except FileExistsError:
        raise ConfigError(f"--out {out} was created meanwhile; relabel never overwrites a label file") from None
    finally:
        tmp.unlink(missing_ok=True)


def relabel(
    run: str | Path,
    data: str | Path,
    threshold: float = 0.9,
    out: str | Path | None = None,
    neutral_class: str | None = None,
    device: str | None = None,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Predict the neutral images of ``data`` with ``run`` and write a label CSV with the confident ones moved.

    Args:
        run: a finished run folder (or a checkpoint inside one).
        data: an image folder of class sub-folders, or a ``path,label`` CSV (a previous relabel's
            output too: pseudo-labelling in rounds), the neutral class among them.
        threshold: the smallest top probability that moves an image to its predicted class, in (0, 1].
        out: the new CSV (default ``<run>/relabelled-<threshold>.csv``); it must not exist.
        neutral_class: the neutral folder's name (default: the run's ``data.options.neutral_class``).
        device: where and in what batches the run predicts.
        batch_size: as for ``device``.

    Returns:
        ``{"out", "neutral_class", "threshold", "moved": {class: count}, "stayed", "neutral", "images"}``.
    """
    from epochal.config.experiment import read_data_info
    from epochal.config.inference import locate_run, predict
    from epochal.data import list_images, relabel_neutral

    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"--threshold {threshold} must be in (0, 1]: the top probability that moves an image")
    run_dir, _ = locate_run(run)
    neutral = _neutral_class(run_dir, neutral_class)
    out = Path(out) if out is not None else run_dir / f"relabelled-{threshold:g}.csv"
    _check_out(out)
    items = list_images(data)
    if items.multi_label:
        raise ConfigError(
            f"--data {data} is multi-label (a 'labels' column); the neutral class is for single-label data"
        )
    if neutral not in items.classes:
        raise ConfigError(f"--data {data} has no neutral class {neutral!r}; its classes are {items.classes}")
    labels = [items.classes[t] for t in items.targets]
    positions = [i for i, label in enumerate(labels) if label == neutral]
    classes = read_data_info(run_dir).get("classes")
    if not classes:
        raise ConfigError(f"run {run_dir} has no class names in data.json; relabel needs a classification run")
    moved = dict.fromkeys(classes, 0)
    if positions:
        rows = predict(run, [items.paths[i] for i in positions], top_k=len(classes), device=device,
                       batch_size=batch_size)
        probs = torch.tensor([[dict(r["top"])[c] for c in classes] for r in rows])
        new_labels, _ = relabel_neutral(probs, threshold)
        for position, label in zip(positions, new_labels.tolist()):
            if label >= 0:
                labels[position] = classes[label]
                moved[classes[label]] += 1
    _write_new(out, list(zip(items.paths, labels)))
    return {
        "out": str(out),
        "neutral_class": neutral,
        "threshold": threshold,
        "moved": moved,
        "stayed": len(positions) - sum(moved.values()),
        "neutral": len(positions),
        "images": len(items.paths),
    }
