"""The decision threshold of a binary classifier, chosen on the validation split for a stated goal.

A softmax classifier's argmax predicts the positive class when ``p(positive) > 0.5``: the
threshold that maximises accuracy *if* the probabilities are calibrated to the test
distribution. Training with oversampling, class weights or a focal loss moves the probabilities
away from the base rates on purpose (more minority recall, less accuracy), so 0.5 no longer suits
any goal in particular. A recipe therefore says what it optimises::

    trainer:
      decision: {metric: accuracy}        # or f1 (of the positive class) or balanced_accuracy

and at the end of training the threshold on ``p(positive)`` that maximises that metric on the
validation split is chosen (the threshold-moving remedy of Provost, "Machine Learning from
Imbalanced Data Sets 101", AAAI 2000 workshop; scikit-learn's ``TunedThresholdClassifierCV``)
with the run's final weights, and saved in ``<run>/decision.json``. ``epochal eval`` reports the
metrics at that threshold besides the argmax ones, and ``epochal predict`` names the class it
picks. The positive class is the second of the two sorted classes (Adult: ``>50K``) unless
``positive`` names it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch

from epochal.config.errors import ConfigError
from epochal.config.sections import Section

__all__ = [
    "DECISION_FILE",
    "DECISION_METRICS",
    "DecisionConfig",
    "check_decision",
    "choose_threshold",
    "decide",
    "decision_metrics",
    "evaluate_decision",
    "fit_decision",
    "read_decision",
]

#: The file in a run folder that holds the chosen threshold.
DECISION_FILE = "decision.json"


class DecisionConfig(Section):
    """``trainer.decision``: what the run's binary decision optimises on the validation split.

    Attributes:
        metric: ``accuracy``, ``f1`` (of the positive class) or ``balanced_accuracy`` (mean recall of
            the two classes).
        positive: the positive class's name; None: the second of the two sorted class names.
    """

    metric: Literal["accuracy", "f1", "balanced_accuracy"] = "accuracy"
    positive: str | None = None


def _counts(predicted: torch.Tensor, actual: torch.Tensor) -> tuple[torch.Tensor, ...]:
    tp = (predicted & actual).sum(-1).double()
    fp = (predicted & ~actual).sum(-1).double()
    fn = (~predicted & actual).sum(-1).double()
    tn = (~predicted & ~actual).sum(-1).double()
    return tp, fp, fn, tn


def _accuracy(tp, fp, fn, tn):
    return (tp + tn) / (tp + fp + fn + tn)


def _f1(tp, fp, fn, tn):
    return torch.where(tp > 0, 2 * tp / (2 * tp + fp + fn).clamp_min(1), torch.zeros_like(tp))


def _balanced_accuracy(tp, fp, fn, tn):
    return 0.5 * (tp / (tp + fn).clamp_min(1) + tn / (tn + fp).clamp_min(1))


#: Metric name -> function of the confusion counts ``(tp, fp, fn, tn)`` (higher is better).
DECISION_METRICS: dict[str, Callable[..., torch.Tensor]] = {
    "accuracy": _accuracy,
    "f1": _f1,
    "balanced_accuracy": _balanced_accuracy,
}


def decision_metrics(probs: torch.Tensor, actual: torch.Tensor, threshold: float) -> dict[str, float]:
    """Accuracy, F1 of the positive class and balanced accuracy of ``probs > threshold``.

    Args:
        probs: ``p(positive)`` per sample.
        actual: True where the sample is positive.
        threshold: the decision threshold.
    """
    counts = _counts(probs > threshold, actual.bool())
    return {name: float(rule(*counts)) for name, rule in DECISION_METRICS.items()}


def choose_threshold(probs: torch.Tensor, actual: torch.Tensor, metric: str) -> tuple[float, float]:
    """The threshold on ``p(positive)`` that maximises ``metric``, and that metric's value.

    Every distinct cut of the sorted probabilities is tried (the midpoint between neighbours, so a
    threshold never sits on a sample); ties keep the cut nearest 0.5.

    Returns:
        ``(threshold, value)``.
    """
    if metric not in DECISION_METRICS:
        raise ValueError(f"decision metric {metric!r} is not one of {sorted(DECISION_METRICS)}")
    probs, actual = probs.double().flatten(), actual.bool().flatten()
    if probs.numel() == 0:
        raise ValueError("choosing a decision threshold needs validation samples; there are none")
    levels = torch.unique(probs)
    cuts = torch.cat([levels[:1] - 1e-9, (levels[1:] + levels[:-1]) / 2, levels[-1:] + 1e-9]).clamp(0, 1)
    values = DECISION_METRICS[metric](*_counts(probs[None, :] > cuts[:, None], actual[None, :]))
    best = values.max()
    candidates = cuts[values >= best - 1e-12]
    threshold = candidates[(candidates - 0.5).abs().argmin()]
    return float(threshold), float(best)


def _positive_index(classes: list[str], positive: str | None) -> int:
    if not classes:
        raise ConfigError(
            "trainer.decision chooses a threshold between two classes, but the data has no classes "
            "(a regression target); set trainer.decision to null"
        )
    if len(classes) != 2:
        raise ConfigError(
            f"trainer.decision chooses a threshold between two classes, but the data has {len(classes)} "
            f"({classes[:10]}); remove trainer.decision for multi-class data"
        )
    if positive is None:
        return 1
    if positive not in classes:
        raise ConfigError(f"trainer.decision.positive={positive!r} is not a class; the classes are {classes}")
    return classes.index(positive)


def check_decision(config, data) -> int:
    """The positive class's index for ``trainer.decision``, or a ConfigError before any training.

    Raises:
        ConfigError: for data without exactly two classes, an unknown ``positive`` or no validation split.
    """
    index = _positive_index([str(c) for c in data.classes or []], config.trainer.decision.positive)
    if data.valid is None:
        raise ConfigError("trainer.decision chooses its threshold on the validation split, but the run has none")
    return index


@torch.no_grad()
def positive_probabilities(
    model: torch.nn.Module, loader, index: int, device: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(p(positive), targets)`` of every batch of ``loader``, on the CPU."""
    model = model.to(device).eval()
    probs, targets = [], []
    for inputs, target in loader:
        logits = model(*inputs) if isinstance(inputs, tuple | list) else model(inputs)
        probs.append(logits.float().softmax(-1)[:, index].cpu())
        targets.append(target.cpu())
    return torch.cat(probs), torch.cat(targets)


def fit_decision(
    run_dir: str | Path, config, data, device: str = "cpu", model: torch.nn.Module | None = None
) -> dict[str, Any]:
    """Choose the run's threshold on ``data.valid`` with its final weights; write ``decision.json``.

    Args:
        run_dir: the finished run (its final checkpoint is the one ``eval`` and ``predict`` use).
        config: the run's recipe (``trainer.decision`` set).
        data: the run's loaders.
        device: where the validation pass runs.
        model: the trained model, used when the run wrote no checkpoint (no ``model_checkpoint``).

    Returns:
        The record written: ``metric``, ``positive``, ``threshold``, ``valid`` (the decision
        metrics at the threshold) and ``valid_at_half`` (at 0.5, what argmax gives).
    """
    from epochal.config.inference import restore_model
    from epochal.runs import write_json_atomic

    goal, classes = config.trainer.decision, [str(c) for c in data.classes or []]
    index = check_decision(config, data)
    try:
        model = restore_model(run_dir)[0]
    except FileNotFoundError:
        if model is None:
            raise
    probs, targets = positive_probabilities(model, data.valid, index, device)
    actual = targets == index
    threshold, _ = choose_threshold(probs, actual, goal.metric)
    record = {
        "metric": goal.metric,
        "positive": classes[index],
        "positive_index": index,
        "threshold": threshold,
        "valid": decision_metrics(probs, actual, threshold),
        "valid_at_half": decision_metrics(probs, actual, 0.5),
        "valid_size": int(len(targets)),
    }
    write_json_atomic(Path(run_dir) / DECISION_FILE, record)
    return record


def read_decision(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's saved decision, or None for a run without ``trainer.decision``."""
    from epochal.runs import read_json

    path = Path(run_dir) / DECISION_FILE
    return read_json(path) if path.is_file() else None


def decide(probs: torch.Tensor, decision: dict[str, Any]) -> torch.Tensor:
    """Class indices from class probabilities ``(N, 2)`` under a saved decision."""
    index = int(decision["positive_index"])
    positive = probs[:, index] > float(decision["threshold"])
    return torch.where(positive, index, 1 - index)


def evaluate_decision(model: torch.nn.Module, loader, decision: dict[str, Any], device: str) -> dict[str, Any]:
    """The decision metrics of ``model`` on ``loader`` at the run's saved threshold.

    Returns:
        ``{"metric", "positive", "threshold", "metrics": {accuracy, f1, balanced_accuracy}}``.
    """
    index = int(decision["positive_index"])
    probs, targets = positive_probabilities(model, loader, index, device)
    return {
        "metric": decision["metric"],
        "positive": decision["positive"],
        "threshold": float(decision["threshold"]),
        "metrics": decision_metrics(probs, targets == index, float(decision["threshold"])),
    }
