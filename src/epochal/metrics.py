"""Metrics that declare their direction and accumulate exactly on the device.

Every metric keeps sums and counts as device tensors (``update`` never reads a value back to the
host) and turns them into a number only in ``compute``. Evaluation over a data set is therefore
exact: the result is the metric of the whole set, not a mean of per-batch means.
"""

from __future__ import annotations

import torch

from epochal.utils import did_you_mean

__all__ = [
    "AUROC",
    "METRICS",
    "Accuracy",
    "ErrorRate",
    "MeanAveragePrecision",
    "MeanLoss",
    "Metric",
    "MultiLabelF1",
    "TopKAccuracy",
    "get_metric",
]


def _hard_labels(targets: torch.Tensor) -> torch.Tensor:
    """Class indices from index targets or from soft/one-hot targets (mixup, label smoothing)."""
    return targets.argmax(dim=-1) if targets.ndim > 1 else targets


class Metric:
    """Base class: ``reset``, ``update(preds, targets)`` on device, ``compute() -> float``.

    Attributes:
        name: key under which the value is logged (``valid/<name>``).
        higher_is_better: the direction, read by checkpointing, early stopping, plateau and pruning.
    """

    name: str = "metric"
    higher_is_better: bool = True

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, preds: torch.Tensor, targets: torch.Tensor) -> None:
        raise NotImplementedError

    def compute(self) -> float:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class _SumCount(Metric):
    """A metric that is a sum of per-sample values divided by the number of samples."""

    def reset(self) -> None:
        self._sum: torch.Tensor | None = None
        self._count = 0

    def _add(self, values: torch.Tensor) -> None:
        total = values.detach().float().sum()
        self._sum = total if self._sum is None else self._sum + total
        self._count += values.numel()

    def compute(self) -> float:
        if self._count == 0:
            return float("nan")
        return float(self._sum) / self._count


class Accuracy(_SumCount):
    """Top-1 accuracy; soft or one-hot targets count by their arg-max."""

    name = "accuracy"
    higher_is_better = True

    def __init__(self) -> None:
        self.reset()

    def update(self, preds: torch.Tensor, targets: torch.Tensor) -> None:
        self._add(preds.argmax(dim=-1) == _hard_labels(targets))


class ErrorRate(Accuracy):
    """1 - accuracy."""

    name = "error_rate"
    higher_is_better = False

    def compute(self) -> float:
        return 1.0 - super().compute()


class TopKAccuracy(_SumCount):
    """The target is among the ``k`` highest scores."""

    higher_is_better = True

    def __init__(self, k: int = 5) -> None:
        if k < 1:
            raise ValueError(f"TopKAccuracy: k must be >= 1, got {k}")
        self.k = k
        self.name = f"top{k}_accuracy"
        self.reset()

    def update(self, preds: torch.Tensor, targets: torch.Tensor) -> None:
        k = min(self.k, preds.shape[-1])
        top = preds.topk(k, dim=-1).indices
        self._add((top == _hard_labels(targets).unsqueeze(-1)).any(dim=-1))


class MeanLoss(_SumCount):
    """Mean of per-sample values of a loss function (``reduction='none'``)."""

    higher_is_better = False

    def __init__(self, loss_fn, name: str = "loss") -> None:
        self.loss_fn = loss_fn
        self.name = name
        self.reset()

    def update(self, preds: torch.Tensor, targets: torch.Tensor) -> None:
        self._add(self.loss_fn(preds.float(), targets))


class _Collecting(Metric):
    """Metrics that need every score (ranking metrics): scores stay on the device until compute."""

    higher_is_better = True

    def reset(self) -> None:
        self._preds: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []

    def update(self, preds: torch.Tensor, targets: torch.Tensor) -> None:
        self._preds.append(preds.detach().float())
        self._targets.append(targets.detach())

    def _gathered(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cat(self._preds), torch.cat(self._targets)


def _average_precision(scores: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """AP of one column: mean precision at the rank of every positive (ties broken by order)."""
    order = scores.argsort(descending=True)
    hits = positives[order].float()
    n_pos = hits.sum()
    if n_pos == 0:
        return torch.tensor(float("nan"), device=scores.device)
    precision = hits.cumsum(0) / torch.arange(1, len(hits) + 1, device=scores.device)
    return (precision * hits).sum() / n_pos


def _auroc(scores: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Area under the ROC curve by the rank-sum (Mann-Whitney U) formula with average ties."""
    positives = positives.bool()
    n_pos, n_neg = positives.sum(), (~positives).sum()
    if n_pos == 0 or n_neg == 0:
        return torch.tensor(float("nan"), device=scores.device)
    sorted_scores, order = scores.sort()
    # 1-based ranks, averaged over tied scores
    _, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True, return_counts=True)
    first = torch.cumsum(counts, 0) - counts + 1
    mean_rank = first.to(scores.dtype) + (counts.to(scores.dtype) - 1) / 2
    ranks = torch.empty_like(scores)
    ranks[order] = mean_rank[inverse]
    rank_sum = ranks[positives].sum()
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


class MeanAveragePrecision(_Collecting):
    """Multi-label mAP: the mean over classes (with at least one positive) of average precision."""

    name = "mAP"

    def __init__(self) -> None:
        self.reset()

    def compute(self) -> float:
        preds, targets = self._gathered()
        aps = torch.stack([_average_precision(preds[:, c], targets[:, c] > 0.5) for c in range(preds.shape[1])])
        return float(aps.nanmean())


class AUROC(_Collecting):
    """ROC AUC: binary (one logit, or two-class softmax) or multi-label/one-vs-rest macro average."""

    name = "auroc"

    def __init__(self) -> None:
        self.reset()

    def compute(self) -> float:
        preds, targets = self._gathered()
        if preds.ndim == 1 or preds.shape[-1] == 1:
            return float(_auroc(preds.reshape(-1), targets.reshape(-1) > 0.5))
        if targets.ndim == 1:  # class indices: one-vs-rest
            targets = torch.nn.functional.one_hot(targets.long(), preds.shape[-1])
        aucs = torch.stack([_auroc(preds[:, c], targets[:, c] > 0.5) for c in range(preds.shape[1])])
        if preds.shape[-1] == 2:
            return float(aucs[1])
        return float(aucs.nanmean())


class MultiLabelF1(Metric):
    """Micro-averaged F1 for multi-label outputs (logits thresholded after a sigmoid)."""

    name = "f1"
    higher_is_better = True

    def __init__(self, threshold: float = 0.5) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"MultiLabelF1: threshold must be in (0, 1), got {threshold}")
        self.threshold = threshold
        self.reset()

    def reset(self) -> None:
        self._tp = self._fp = self._fn = None

    def update(self, preds: torch.Tensor, targets: torch.Tensor) -> None:
        predicted = torch.sigmoid(preds.detach().float()) > self.threshold
        actual = targets.detach() > 0.5
        tp, fp, fn = (predicted & actual).sum(), (predicted & ~actual).sum(), (~predicted & actual).sum()
        if self._tp is None:
            self._tp, self._fp, self._fn = tp, fp, fn
        else:
            self._tp, self._fp, self._fn = self._tp + tp, self._fp + fp, self._fn + fn

    def compute(self) -> float:
        if self._tp is None:
            return float("nan")
        tp, fp, fn = float(self._tp), float(self._fp), float(self._fn)
        return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")


METRICS = {
    "accuracy": Accuracy,
    "error_rate": ErrorRate,
    "top5_accuracy": lambda: TopKAccuracy(5),
    "f1": MultiLabelF1,
    "mAP": MeanAveragePrecision,
    "auroc": AUROC,
}


def get_metric(spec: str | Metric) -> Metric:
    """A metric from its registry name (``accuracy``, ``top5_accuracy``, ``top<k>_accuracy``, ...)."""
    if isinstance(spec, Metric):
        return spec
    if spec in METRICS:
        return METRICS[spec]()
    if spec.startswith("top") and spec.endswith("_accuracy") and spec[3:-9].isdigit():
        return TopKAccuracy(int(spec[3:-9]))
    raise ValueError(
        f"unknown metric {spec!r}: valid names are {sorted(METRICS)} or top<k>_accuracy{did_you_mean(spec, METRICS)}"
    )
