"""Metrics that declare their direction and accumulate exactly on the device.

Every metric keeps sums and counts as device tensors (``update`` never reads a value back to the
host) and turns them into a number only in ``compute``. Evaluation over a data set is therefore
exact: the result is the metric of the whole set, not a mean of per-batch means.

``preds`` are the model's outputs (logits), as the loss sees them. The numbers are those of
scikit-learn, ties included (bf16 and fp16 outputs tie often), and never depend on the order of
the rows:

* :class:`MeanAveragePrecision` is ``average_precision_score`` per class: tied scores form one
  threshold, ``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct scores.
* :class:`AUROC` is ``roc_auc_score`` (the Mann-Whitney U statistic, a tie counting one half);
  class-index targets are scored one-vs-rest on the softmax probabilities.
* :class:`TopKAccuracy` gives a sample whose target ties with other classes at the k-th place the
  expected hit under a random order of the tied classes (see its docstring).
* :class:`MultiLabelF1` is ``f1_score(average="micro")`` (``f1``) or ``average="macro"``
  (``f1_macro``) of the thresholded sigmoid.

The ranking metrics (AUROC, mAP) raise a ValueError naming the metric when a score is NaN.

Under data-parallel training each rank evaluates its own share of the validation set, and
``sync(reducer)`` then gives every rank the state of all of them before ``compute``: sums and
counts are added (``reducer.sum``), the ranking metrics gather every rank's scores, however many
each holds (``reducer.gather``). The result is the metric of the whole set, exactly as one process
computes it: no sample is counted twice and none is left out.
"""

from __future__ import annotations

import torch

from epochal.utils import device_constant, did_you_mean

__all__ = [
    "AUROC",
    "DEFAULT_METRICS",
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

    def sync(self, reducer) -> None:
        """Replace this rank's state by the state of every rank together (data-parallel validation).

        Args:
            reducer: gives ``reducer.sum(tensor)`` (the tensor summed over ranks, in place),
                ``reducer.gather(tensor_or_None)`` (every rank's rows concatenated; ranks may hold
                different numbers of rows) and ``reducer.device`` (where the tensors of a
                collective live). Every rank calls ``sync`` once, after its last ``update``.

        Raises:
            NotImplementedError: for a metric that does not say how its state combines; the
                Learner checks this before the first step of a data-parallel fit.
        """
        raise NotImplementedError(f"{type(self).__name__} does not define sync(reducer)")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class _SumCount(Metric):
    """A metric that is a sum of per-sample values divided by the number of samples."""

    def reset(self) -> None:
        self._sum: torch.Tensor | None = None
        self._count = 0

    def _add(self, values: torch.Tensor) -> None:
        total = values.detach().double().sum()  # float32 would stop counting exactly past 2**24
        self._sum = total if self._sum is None else self._sum + total
        self._count += values.numel()

    def compute(self) -> float:
        if self._count == 0:
            return float("nan")
        return float(self._sum) / self._count

    def sync(self, reducer) -> None:
        total = torch.zeros((), dtype=torch.float64, device=reducer.device) if self._sum is None else self._sum
        pair = reducer.sum(torch.stack([total.to(reducer.device, torch.float64),
                                        torch.tensor(float(self._count), dtype=torch.float64, device=reducer.device)]))
        self._sum, self._count = pair[0], int(pair[1])


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
    """The target is among the ``k`` highest scores; a tie at the k-th place counts a fraction.

    With ``g`` classes scoring strictly higher than the target and ``e`` classes (the target
    included) scoring the same, a sample counts ``clamp(k - g, 0, e) / e``: the probability that
    the target lands in the top ``k`` when the tied classes are put in a random order. The rule
    depends on neither the order of the rows nor that of the classes, and without ties it is
    plain top-k accuracy. (scikit-learn's ``top_k_accuracy_score`` ranks tied labels by highest
    index first and Keras' ``in_top_k`` counts every tied class as inside the top k; averaged over
    every order of the classes, scikit-learn's rule gives this one. Under Keras' rule a model with
    constant outputs scores 1.0.)

    Examples:
        >>> metric = TopKAccuracy(1)
        >>> metric.update(torch.tensor([[0.5, 0.5, 0.0]]), torch.tensor([0]))
        >>> metric.compute()  # the target ties with one other class for the single place
        0.5
    """

    higher_is_better = True

    def __init__(self, k: int = 5) -> None:
        if k < 1:
            raise ValueError(f"TopKAccuracy: k must be >= 1, got {k}")
        self.k = k
        self.name = f"top{k}_accuracy"
        self.reset()

    def update(self, preds: torch.Tensor, targets: torch.Tensor) -> None:
        preds = preds.detach()
        target_score = preds.gather(-1, _hard_labels(targets).long().unsqueeze(-1))
        higher = (preds > target_score).sum(dim=-1)
        tied = (preds == target_score).sum(dim=-1)  # the target included; 0 only for a NaN score
        places = torch.minimum((self.k - higher).clamp(min=0), tied)
        self._add(places.double() / tied)


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
        self._preds.append(preds.detach().to(torch.float32, copy=True))  # kept: a CUDA graph's replay reuses preds
        self._targets.append(targets.detach())

    def sync(self, reducer) -> None:
        preds = reducer.gather(torch.cat(self._preds) if self._preds else None)
        targets = reducer.gather(torch.cat(self._targets) if self._targets else None)
        self._preds = [] if preds is None else [preds]
        self._targets = [] if targets is None else [targets]

    def _gathered(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Every score and target so far (None before any update); NaN scores are an error."""
        if not self._preds:
            return None
        preds, targets = torch.cat(self._preds), torch.cat(self._targets)
        n_nan = int(torch.isnan(preds).sum())
        if n_nan:
            raise ValueError(
                f"{type(self).__name__} ({self.name!r}): {n_nan} of {preds.numel()} scores are NaN, and "
                "NaN has no rank; the model's outputs are not finite (TerminateOnNaN stops such a run)"
            )
        return preds, targets


def _average_precision(scores: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """AP of one column as scikit-learn computes it: ``sum_n (R_n - R_{n-1}) P_n``.

    The thresholds are the distinct scores in decreasing order, so samples with tied scores enter
    the predicted positives together and their order never matters.
    """
    n_pos = positives.sum()
    if n_pos == 0:
        return torch.tensor(float("nan"), device=scores.device)
    sorted_scores, order = scores.sort(descending=True)
    true_positives = positives[order].double().cumsum(0)
    predicted = torch.arange(1, len(scores) + 1, device=scores.device, dtype=torch.float64)
    closes = torch.ones_like(sorted_scores, dtype=torch.bool)  # the last sample of each threshold
    closes[:-1] = sorted_scores[1:] != sorted_scores[:-1]
    true_positives, predicted = true_positives[closes], predicted[closes]
    recall_gain = torch.diff(true_positives, prepend=true_positives.new_zeros(1)) / n_pos
    return (recall_gain * true_positives / predicted).sum()


def _auroc(scores: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Area under the ROC curve by the rank-sum (Mann-Whitney U) formula with average ties."""
    positives = positives.bool()
    n_pos, n_neg = positives.sum(), (~positives).sum()
    if n_pos == 0 or n_neg == 0:
        return torch.tensor(float("nan"), device=scores.device)
    sorted_scores, order = scores.sort()
    # 1-based ranks, averaged over tied scores; float64 keeps rank sums of millions of rows exact
    _, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True, return_counts=True)
    counts = counts.double()
    mean_rank = torch.cumsum(counts, 0) - counts + 1 + (counts - 1) / 2
    ranks = torch.empty_like(scores, dtype=torch.float64)
    ranks[order] = mean_rank[inverse]
    rank_sum = ranks[positives].sum()
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


class MeanAveragePrecision(_Collecting):
    """Multi-label mAP: the mean over classes (with at least one positive) of average precision.

    Each class's AP is scikit-learn's ``average_precision_score`` (tied scores are one threshold);
    a class without positives is left out of the mean.

    Raises:
        ValueError: from ``compute`` when a score is NaN.
    """

    name = "mAP"

    def __init__(self) -> None:
        self.reset()

    def compute(self) -> float:
        gathered = self._gathered()
        if gathered is None:
            return float("nan")
        preds, targets = gathered
        aps = torch.stack([_average_precision(preds[:, c], targets[:, c] > 0.5) for c in range(preds.shape[1])])
        return float(aps.nanmean())


class AUROC(_Collecting):
    """ROC AUC, scikit-learn's ``roc_auc_score``, of the model's outputs (logits).

    * one output column: binary AUC of that logit against targets > 0.5;
    * class-index targets with ``C >= 2`` outputs: the classes' softmax probabilities, one class
      against the rest; two classes give the AUC of class 1, more the macro average (classes
      without positives or without negatives left out);
    * 2-D targets: multi-label, the macro average over columns of each column's logits.

    Raises:
        ValueError: from ``compute`` when a score is NaN (NaN has no rank).
    """

    name = "auroc"

    def __init__(self) -> None:
        self.reset()

    def compute(self) -> float:
        gathered = self._gathered()
        if gathered is None:
            return float("nan")
        preds, targets = gathered
        if preds.ndim == 1 or preds.shape[-1] == 1:
            return float(_auroc(preds.reshape(-1), targets.reshape(-1) > 0.5))
        multi_class = targets.ndim == 1
        if multi_class:  # class indices: one-vs-rest on the probabilities
            # Log-probabilities rank as the probabilities do, and float64 keeps confident outputs
            # from tying at 1.0. Rows equal up to a shift and an order of the classes have equal
            # probabilities; shifting by the row maximum and summing in sorted order gives them
            # bit-identical ones, so those ties stay ties.
            shifted = preds.double() - preds.double().amax(dim=-1, keepdim=True)
            preds = shifted - shifted.sort(dim=-1).values.exp().sum(dim=-1, keepdim=True).log()
            targets = torch.nn.functional.one_hot(targets.long(), preds.shape[-1])
        aucs = torch.stack([_auroc(preds[:, c], targets[:, c] > 0.5) for c in range(preds.shape[1])])
        if multi_class and preds.shape[-1] == 2:
            return float(aucs[1])
        return float(aucs.nanmean())


class MultiLabelF1(Metric):
    """F1 of multi-label outputs: logits thresholded after a sigmoid (``sigmoid(logit) > threshold``).

    ``average="micro"`` pools every class's counts (scikit-learn's ``f1_score(average="micro")``);
    ``"macro"`` is the unweighted mean of the per-class F1s (``average="macro"``), a class that is
    neither a target nor predicted anywhere counting 0 as scikit-learn's default
    ``zero_division`` does. Counts stay on the device until ``compute``.

    Args:
        threshold: one probability in (0, 1), or one per class (tuned thresholds, see
            :func:`epochal.config.thresholds.tune_thresholds`).
        average: ``"micro"`` or ``"macro"``.
        name: the logged name (default ``f1`` / ``f1_macro``).

    Examples:
        >>> metric = MultiLabelF1(average="macro")
        >>> metric.update(torch.tensor([[2.0, -2.0], [2.0, 2.0]]), torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
        >>> metric.compute()  # class 0: F1 1, class 1: one false positive, F1 0
        0.5
    """

    higher_is_better = True

    def __init__(
        self, threshold: float | list[float] | tuple[float, ...] = 0.5, average: str = "micro", name: str | None = None
    ) -> None:
        values = [threshold] if isinstance(threshold, int | float) else list(threshold)
        if not values or not all(0.0 <= float(t) < 1.0 for t in values):
            raise ValueError(f"MultiLabelF1: thresholds must be in [0, 1), got {threshold}")
        if average not in ("micro", "macro"):
            raise ValueError(f"MultiLabelF1: average must be 'micro' or 'macro', got {average!r}")
        self.threshold = threshold if isinstance(threshold, int | float) else tuple(float(t) for t in values)
        self.average = average
        self.name = name or ("f1" if average == "micro" else "f1_macro")
        self.reset()

    def reset(self) -> None:
        self._counts: torch.Tensor | None = None  # (3, C): true positives, false positives, false negatives

    def update(self, preds: torch.Tensor, targets: torch.Tensor) -> None:
        probs = torch.sigmoid(preds.detach().float())
        threshold = self.threshold
        if not isinstance(threshold, float | int):
            if len(threshold) != probs.shape[-1]:
                raise ValueError(f"{self.name}: {len(threshold)} thresholds for {probs.shape[-1]} classes")
            threshold = device_constant(threshold, torch.float32, probs.device)
        predicted = probs > threshold
        actual = targets.detach() > 0.5
        counts = torch.stack([(predicted & actual).sum(0), (predicted & ~actual).sum(0), (~predicted & actual).sum(0)])
        self._counts = counts if self._counts is None else self._counts + counts

    def sync(self, reducer) -> None:
        counts = [torch.zeros((), device=reducer.device) if c is None else c.to(reducer.device)
                  for c in (self._tp, self._fp, self._fn)]
        tp, fp, fn = reducer.sum(torch.stack([c.double() for c in counts]))
        self._tp, self._fp, self._fn = tp, fp, fn

    def compute(self) -> float:
        if self._counts is None:
            return float("nan")
        tp, fp, fn = self._counts.double()
        if self.average == "micro":
            tp, fp, fn = float(tp.sum()), float(fp.sum()), float(fn.sum())
            return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
        denominator = 2 * tp + fp + fn
        per_class = torch.where(denominator > 0, 2 * tp / denominator.clamp(min=1), torch.zeros_like(tp))
        return float(per_class.mean())


METRICS = {
    "accuracy": Accuracy,
    "error_rate": ErrorRate,
    "top5_accuracy": lambda: TopKAccuracy(5),
    "f1": MultiLabelF1,
    "f1_macro": lambda: MultiLabelF1(average="macro"),
    "mAP": MeanAveragePrecision,
    "auroc": AUROC,
}

#: The metrics of a recipe that names none, by the data's kind of labels (see ``epochal.losses.TARGETS``).
DEFAULT_METRICS: dict[str, tuple[str, ...]] = {
    "class_indices": ("accuracy",),
    "multi_hot": ("f1", "f1_macro", "mAP"),
    "values": (),
    "inputs": (),
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
