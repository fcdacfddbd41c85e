"""Per-class decision thresholds of a multi-label run, tuned on its validation split.

A sigmoid output of 0.5 is the right cut only for a calibrated model of balanced labels; rare
labels usually need a lower one. Tuning a threshold per class on held-out scores to maximise that
class's F1 is the usual practice (Lipton, Elkan and Naryanaswamy, *Optimal Thresholding of
Classifiers to Maximize F1 Measure*, 2014; Fan and Lin, *A Study on Threshold Selection for
Multi-label Classification*, 2007: "SCut").

The rule (:func:`tune_thresholds`): a class predicts positive when its probability is strictly
above its threshold ``t`` (as :class:`~epochal.metrics.MultiLabelF1` does at 0.5). The candidates
are ``0`` and every distinct validation probability of the class; each one's F1 over the
validation split is computed, and the threshold is the candidate of highest F1, a tie going to the
lower threshold (every ``t`` between two neighbouring scores predicts the same, so this is also the
lowest threshold of the best prediction). A class without a positive in the validation split has
no F1 to maximise and keeps 0.5.

At the end of ``epochal train`` a multi-label run writes ``<run>/thresholds.json`` (see
:func:`write_thresholds`); ``epochal predict`` and ``epochal eval`` read it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = [
    "DEFAULT_THRESHOLD",
    "THRESHOLDS_FILE",
    "labels_above",
    "read_thresholds",
    "run_thresholds",
    "threshold_metrics",
    "tune_thresholds",
    "write_thresholds",
]

#: The threshold of a class that could not be tuned, and the one every class has without tuning.
DEFAULT_THRESHOLD = 0.5
#: The file in the run folder.
THRESHOLDS_FILE = "thresholds.json"


def _best_threshold(scores: torch.Tensor, positives: torch.Tensor) -> tuple[float, float | None]:
    """``(threshold, F1 there)`` of one class by the module's rule; F1 None without positives."""
    n_pos = int(positives.sum())
    if n_pos == 0:
        return DEFAULT_THRESHOLD, None
    scores = scores.double()
    candidates = torch.unique(torch.cat([scores.new_zeros(1), scores]))  # sorted ascending
    all_sorted = scores.sort().values
    pos_sorted = scores[positives].sort().values
    predicted = len(scores) - torch.searchsorted(all_sorted, candidates, right=True)  # scores > t
    true_pos = n_pos - torch.searchsorted(pos_sorted, candidates, right=True)
    f1 = 2 * true_pos.double() / (predicted + n_pos).double()
    best = int(torch.argmax(f1))  # the first maximum: the lowest threshold among ties
    return float(candidates[best]), float(f1[best])


def tune_thresholds(probs: torch.Tensor, targets: torch.Tensor) -> tuple[list[float], list[float | None]]:
    """Per-class thresholds maximising each class's F1 of ``probs > threshold`` (see the module).

    Args:
        probs: ``(N, C)`` sigmoid probabilities of the validation split.
        targets: ``(N, C)`` multi-hot targets (> 0.5 is a positive).

    Returns:
        ``(thresholds, f1s)``, one per class; a class without positives gets 0.5 and F1 None.

    Examples:
        >>> probs = torch.tensor([[0.875], [0.5], [0.25], [0.125]])
        >>> tune_thresholds(probs, torch.tensor([[1], [1], [0], [0]]))  # > 0.25: both positives alone
        ([0.25], [1.0])
    """
    if probs.ndim != 2 or probs.shape != targets.shape:
        raise ValueError(f"probs {tuple(probs.shape)} and targets {tuple(targets.shape)} must both be (N, C)")
    pairs = [_best_threshold(probs[:, c], targets[:, c] > 0.5) for c in range(probs.shape[1])]
    return [t for t, _ in pairs], [f for _, f in pairs]


def _f1_summary(logits: torch.Tensor, targets: torch.Tensor, thresholds: list[float] | float) -> dict[str, float]:
    from epochal.metrics import MultiLabelF1

    out = {}
    for average in ("micro", "macro"):
        metric = MultiLabelF1(thresholds, average=average)
        metric.update(logits, targets)
        out[f"f1_{average}"] = metric.compute()
    return out


def _validation_outputs(model: torch.nn.Module, valid, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits and targets of every validation batch (on the CPU)."""
    model = model.to(device).eval()
    logits, targets = [], []
    with torch.no_grad():
        for inputs, target in valid:
            out = model(*inputs) if isinstance(inputs, tuple) else model(inputs)
            logits.append(out.float().cpu())
            targets.append(target.cpu())
    return torch.cat(logits), torch.cat(targets)


def write_thresholds(run_dir: str | Path, valid, device: str) -> dict[str, Any]:
    """Tune the thresholds of a multi-label run's final model on ``valid`` into ``<run>/thresholds.json``.

    The model is the one ``epochal predict`` restores (:func:`~epochal.config.inference.locate_run`:
    averaged weights of an SWA/EMA run, else ``best.pt``, else ``last.pt``).

    Args:
        run_dir: the run folder.
        valid: the run's validation loader (batches of inputs and multi-hot targets).
        device: where the model runs.

    Returns:
        What was written: ``classes``, ``thresholds`` and ``f1`` (by class), ``valid`` (F1 micro and
        macro at 0.5 and at the tuned thresholds), ``n``, ``checkpoint`` and ``rule``.
    """
    from epochal.config.inference import restore_model
    from epochal.runs import write_json_atomic

    model, _, info, checkpoint = restore_model(run_dir)
    logits, targets = _validation_outputs(model, valid, device)
    thresholds, f1s = tune_thresholds(torch.sigmoid(logits), targets)
    classes = info.get("classes") or [str(i) for i in range(logits.shape[1])]
    record = {
        "rule": "per class: the lowest t in {0} and the validation probabilities maximising the F1 of p > t; "
        "0.5 for a class without validation positives",
        "checkpoint": str(Path(checkpoint).relative_to(run_dir)) if Path(checkpoint).is_relative_to(run_dir)
        else str(checkpoint),
        "n": len(targets),
        "classes": classes,
        "thresholds": dict(zip(classes, thresholds)),
        "f1": dict(zip(classes, f1s)),
        "valid": {
            "at_0.5": _f1_summary(logits, targets, DEFAULT_THRESHOLD),
            "at_thresholds": _f1_summary(logits, targets, thresholds),
        },
    }
    write_json_atomic(Path(run_dir) / THRESHOLDS_FILE, record)
    return record


def read_thresholds(run_dir: str | Path, classes: list[str]) -> list[float] | None:
    """The saved thresholds of ``run_dir`` in ``classes`` order, or None when it has none.

    Raises:
        ValueError: when the file does not list exactly ``classes`` (not this run's file).
    """
    from epochal.runs import read_json

    path = Path(run_dir) / THRESHOLDS_FILE
    if not path.is_file():
        return None
    saved = read_json(path).get("thresholds")
    if not isinstance(saved, dict) or sorted(saved) != sorted(classes):
        raise ValueError(f"{path} does not hold one threshold for each of the run's classes {classes}")
    return [float(saved[c]) for c in classes]


def run_thresholds(run_dir: str | Path, info: dict[str, Any]) -> list[float] | None:
    """A multi-label run's decision thresholds (0.5 for every class without ``thresholds.json``); None otherwise."""
    if not info.get("multi_label"):
        return None
    classes = info.get("classes") or [str(i) for i in range(int(info["num_classes"]))]
    return read_thresholds(run_dir, classes) or [DEFAULT_THRESHOLD] * len(classes)


def labels_above(probs: torch.Tensor, classes: list[str], thresholds: list[float]) -> list[list[str]]:
    """The classes whose probability is above their threshold, for each row of ``probs``."""
    above = probs > torch.tensor(thresholds, dtype=probs.dtype, device=probs.device)
    return [[classes[c] for c in row.nonzero().flatten().tolist()] for row in above]


def threshold_metrics(metrics: list[str], thresholds: list[float]) -> list:
    """``metrics`` plus F1 micro and macro at 0.5 (``f1``, ``f1_macro``) and at ``thresholds``.

    The tuned ones are logged as ``f1_at_thresholds`` and ``f1_macro_at_thresholds``.
    """
    from epochal.metrics import MultiLabelF1

    extra = [name for name in ("f1", "f1_macro") if name not in metrics]
    return [
        *metrics,
        *extra,
        MultiLabelF1(thresholds, name="f1_at_thresholds"),
        MultiLabelF1(thresholds, average="macro", name="f1_macro_at_thresholds"),
    ]
