"""The PNG figures of a run folder: loss and metric curves, confusion matrix, and the run's plots.

The LR/momentum schedule and LR-finder figures are drawn by :mod:`epochal.schedules` (they are
functions of the phases); :func:`write_run_plots` puts every figure of a finished fit into
``<run>/plots``. Every function here draws with matplotlib's non-interactive Agg backend,
imported only when a figure is drawn (importing epochal never pulls in matplotlib), writes one
PNG and returns its path.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "confusion_matrix",
    "plot_confusion_matrix",
    "plot_history",
    "read_history",
    "write_run_plots",
]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def read_history(path: str | Path) -> list[dict[str, Any]]:
    """The per-epoch records of a ``metrics.jsonl`` file (or of a run folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _finite(values: Sequence[Any]) -> list[float]:
    return [float(v) if isinstance(v, (int, float)) and math.isfinite(v) else math.nan for v in values]


def plot_history(history: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """Loss curves (train and validation) and one panel per other logged metric, by epoch.

    Args:
        history: per-epoch records with ``epoch`` and ``train/...``/``valid/...`` keys (and
            ``valid_swa/...``, ``valid_ema/...``: drawn as curves of their own).
        path: the PNG to write.
        title: figure title (the run name).
    """
    if not history:
        raise ValueError("plot_history: the history is empty (no epoch finished)")
    epochs = [int(r.get("epoch", i)) + 1 for i, r in enumerate(history)]
    keys = sorted({k for r in history for k in r if "/" in k})
    others = sorted({k.split("/", 1)[1] for k in keys} - {"loss"})
    # train and valid first, then other evaluations of the same metrics (valid_swa, valid_ema)
    splits = ["train", "valid", *sorted({k.split("/", 1)[0] for k in keys} - {"train", "valid"})]
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 1 + len(others), figsize=(4.5 * (1 + len(others)), 3.5), squeeze=False)
    panels = [("loss", axes[0][0])] + [(name, axes[0][i + 1]) for i, name in enumerate(others)]
    for name, ax in panels:
        for split in splits:
            key = f"{split}/{name}"
            if key in keys:
                ax.plot(epochs, _finite([r.get(key) for r in history]), "-o", label=split, markersize=3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def confusion_matrix(preds: Any, targets: Any, num_classes: int):
    """``counts[i, j]``: samples of true class ``i`` predicted as ``j`` (scores or hard labels accepted)."""
    import torch

    preds, targets = torch.as_tensor(preds), torch.as_tensor(targets)
    if preds.ndim > 1:
        preds = preds.argmax(dim=-1)
    if targets.ndim > 1:
        targets = targets.argmax(dim=-1)
    index = targets.long() * num_classes + preds.long()
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def plot_confusion_matrix(matrix: Any, classes: Sequence[str], path: str | Path, normalize: bool = True) -> Path:
    """A confusion matrix as a heat map, rows normalised to recall when ``normalize``; counts printed."""
    import numpy as np

    counts = np.asarray(matrix, dtype=float)
    if counts.shape != (len(classes), len(classes)):
        raise ValueError(f"plot_confusion_matrix: matrix shape {counts.shape} does not match {len(classes)} classes")
    shown = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalize else counts
    n = len(classes)
    plt = _pyplot()
    size = max(3.5, 0.45 * n + 1.5)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    f"{int(counts[i, j])}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if shown[i, j] > 0.6 * (shown.max() or 1) else "black",
                )
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(f"confusion matrix (accuracy {accuracy:.3f})")
    return _save(fig, path)


def write_run_plots(learner: Any, folder: str | Path | None = None) -> dict[str, str]:
    """Write the plots of a finished fit into ``folder`` (default ``<run_dir>/plots``).

    Writes ``curves.png`` (when an epoch finished), ``schedule.png`` (when the learner has a
    schedule) and, for single-label classification with a validation loader,
    ``confusion_matrix.png``.

    Returns:
        Plot name -> path of every file written.
    """
    folder = Path(folder) if folder is not None else Path(learner.run_dir) / "plots"
    written: dict[str, str] = {}
    title = Path(learner.run_dir).name if learner.run_dir is not None else ""
    if learner.history:
        written["curves"] = str(plot_history(learner.history, folder / "curves.png", title))
    if learner.schedule is not None:
        from epochal.schedules import plot_schedule

        written["schedule"] = str(plot_schedule(learner.schedule, path=folder / "schedule.png"))
    classes = list(learner.data.classes or [])
    if classes and learner.data.valid is not None:
        preds, targets = learner.predict(learner.data.valid, with_targets=True)
        if targets.ndim == 1 and preds.ndim == 2 and preds.shape[1] == len(classes):
            matrix = confusion_matrix(preds, targets, len(classes))
            written["confusion_matrix"] = str(plot_confusion_matrix(matrix, classes, folder / "confusion_matrix.png"))
    return written
