"""Metrics: exact accumulation over batches, directions, known values."""

import math

import pytest
import torch

from epochal.metrics import (
    AUROC,
    Accuracy,
    ErrorRate,
    MeanAveragePrecision,
    MultiLabelF1,
    TopKAccuracy,
    get_metric,
)


def feed(metric, preds, targets, sizes):
    metric.reset()
    start = 0
    for size in sizes:
        metric.update(preds[start:start + size], targets[start:start + size])
        start += size
    return metric.compute()


def test_accuracy_is_exact_over_uneven_batches():
    g = torch.Generator().manual_seed(0)
    preds, targets = torch.randn(103, 5, generator=g), torch.randint(0, 5, (103,), generator=g)
    expected = float((preds.argmax(1) == targets).float().mean())
    # a mean of per-batch means would differ for batch sizes 100 and 3
    assert feed(Accuracy(), preds, targets, [100, 3]) == pytest.approx(expected, abs=1e-7)
    assert feed(ErrorRate(), preds, targets, [50, 53]) == pytest.approx(1 - expected, abs=1e-7)


def test_accuracy_with_soft_targets_uses_argmax():
    preds = torch.tensor([[2.0, 1.0], [0.0, 1.0]])
    soft = torch.tensor([[0.7, 0.3], [0.6, 0.4]])
    assert feed(Accuracy(), preds, soft, [2]) == 0.5


def test_top_k():
    preds = torch.tensor([[0.1, 0.5, 0.4], [0.8, 0.15, 0.05], [0.3, 0.3, 0.4]])
    targets = torch.tensor([2, 2, 0])
    # row 0: 2nd place -> hit; row 1: 3rd -> miss; row 2: one class above, the target ties with
    # another class for the one place left -> 1/2
    assert feed(TopKAccuracy(2), preds, targets, [1, 2]) == pytest.approx(1.5 / 3)
    assert get_metric("top3_accuracy").k == 3


def test_auroc_matches_pair_counting():
    g = torch.Generator().manual_seed(1)
    scores = torch.randint(0, 5, (60,), generator=g).float()  # many ties
    labels = torch.randint(0, 2, (60,), generator=g)
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairs = (pos[:, None] > neg[None, :]).float() + 0.5 * (pos[:, None] == neg[None, :]).float()
    assert feed(AUROC(), scores, labels, [20, 40]) == pytest.approx(float(pairs.mean()), abs=1e-6)


def test_map_known_value():
    preds = torch.tensor([[0.9, 0.1], [0.8, 0.7], [0.1, 0.9]])
    targets = torch.tensor([[1, 0], [0, 1], [1, 1]])
    # class 0: ranking 0.9(+), 0.8(-), 0.1(+) -> AP = (1 + 2/3) / 2; class 1: 0.9(+), 0.7(+), 0.1(-) -> AP = 1
    expected = ((1 + 2 / 3) / 2 + 1) / 2
    assert feed(MeanAveragePrecision(), preds, targets, [2, 1]) == pytest.approx(expected)


def test_multilabel_f1_micro():
    logits = torch.tensor([[5.0, -5.0, 5.0], [-5.0, 5.0, -5.0]])
    targets = torch.tensor([[1, 0, 0], [0, 1, 1]])
    # tp=2 (0,0) (1,1); fp=1 (0,2); fn=1 (1,2) -> f1 = 4 / (4 + 1 + 1)
    assert feed(MultiLabelF1(), logits, targets, [1, 1]) == pytest.approx(4 / 6)


def test_directions_and_registry_errors():
    assert Accuracy.higher_is_better and not ErrorRate.higher_is_better
    with pytest.raises(ValueError, match="did you mean 'accuracy'"):
        get_metric("acuracy")


# ----------------------------------------------------------------------------- against scikit-learn
# bf16/fp16 outputs tie often; integer scores in a small range make ties the rule, not the exception.
sklearn_metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn is in the dev extra")


def tied_scores(seed, shape, levels=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, levels, shape, generator=g).float()


def multi_hot(seed, shape, rate=0.3):
    g = torch.Generator().manual_seed(seed + 1000)
    targets = (torch.rand(shape, generator=g) < rate).long()
    targets[0], targets[1] = 1, 0  # every column has positives and negatives
    return targets


def repeated_rows(seed, n, classes, distinct=12):
    """Logits drawn from a few distinct rows: many samples tie in every column."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.randn(distinct, classes, generator=g)
    logits = rows[torch.randint(0, distinct, (n,), generator=g)]
    labels = torch.randint(0, classes, (n,), generator=g)
    labels[:classes] = torch.arange(classes)  # every class occurs
    return logits, labels


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("levels", [2, 4, 16])
def test_map_equals_sklearn_average_precision_with_ties(seed, levels):
    preds, targets = tied_scores(seed, (257, 6), levels), multi_hot(seed, (257, 6))
    expected = sklearn_metrics.average_precision_score(targets.numpy(), preds.numpy(), average="macro")
    assert feed(MeanAveragePrecision(), preds, targets, [100, 157]) == pytest.approx(expected, abs=1e-12)


def test_map_treats_tied_scores_as_one_threshold():
    # scores 0.9 (+), 0.5 (+), 0.5 (-), 0.1 (-): thresholds 0.9 -> (R 1/2, P 1), 0.5 -> (R 1, P 2/3),
    # 0.1 -> no new recall; AP = 1/2 * 1 + 1/2 * 2/3, whichever of the tied pair comes first
    preds = torch.tensor([[0.9], [0.5], [0.5], [0.1]])
    for targets in ([[1], [1], [0], [0]], [[1], [0], [1], [0]]):
        assert feed(MeanAveragePrecision(), preds, torch.tensor(targets), [4]) == pytest.approx(0.5 + 1 / 3)


@pytest.mark.parametrize("seed", range(4))
def test_auroc_equals_sklearn_binary_and_multilabel_with_ties(seed):
    scores, labels = tied_scores(seed, (301,)), multi_hot(seed, (301,))
    assert feed(AUROC(), scores, labels, [150, 151]) == pytest.approx(
        sklearn_metrics.roc_auc_score(labels.numpy(), scores.numpy()), abs=1e-12
    )
    preds, targets = tied_scores(seed, (301, 5)), multi_hot(seed, (301, 5))
    assert feed(AUROC(), preds, targets, [300, 1]) == pytest.approx(
        sklearn_metrics.roc_auc_score(targets.numpy(), preds.numpy(), average="macro"), abs=1e-12
    )


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("classes", [2, 3, 7])
def test_auroc_of_class_indices_is_sklearn_one_vs_rest_on_softmax_probabilities(seed, classes):
    logits, labels = repeated_rows(seed, 300, classes)
    probabilities = logits.double().softmax(dim=-1).numpy()
    if classes == 2:  # scikit-learn's binary case: the score of class 1
        expected = sklearn_metrics.roc_auc_score(labels.numpy(), probabilities[:, 1])
    else:
        expected = sklearn_metrics.roc_auc_score(labels.numpy(), probabilities, multi_class="ovr", average="macro")
    assert feed(AUROC(), logits, labels, [128, 172]) == pytest.approx(expected, abs=1e-12)


def test_auroc_one_vs_rest_keeps_ties_of_rows_equal_up_to_shift_and_order():
    # Integer logits: many rows are shifts and reorderings of each other, with equal probabilities.
    # The reference compares the probabilities in 60-digit decimals and counts pairs (a tie: 1/2).
    from decimal import Decimal, getcontext
    from fractions import Fraction

    getcontext().prec = 60
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randint(0, 4, (200, 4), generator=g).float(), torch.randint(0, 4, (200,), generator=g)
    rows = [[int(v) for v in row] for row in logits.tolist()]

    def probability(row, c):
        return (Decimal(row[c]).exp() / sum(Decimal(v).exp() for v in sorted(row))).quantize(Decimal("1e-40"))

    aucs = []
    for c in range(4):
        scores = [probability(row, c) for row in rows]
        pos = [s for s, y in zip(scores, labels.tolist()) if y == c]
        neg = [s for s, y in zip(scores, labels.tolist()) if y != c]
        wins = sum(1 if p > n else Fraction(1, 2) if p == n else 0 for p in pos for n in neg)
        aucs.append(wins / (len(pos) * len(neg)))
    assert feed(AUROC(), logits, labels, [200]) == pytest.approx(float(sum(aucs) / 4), abs=1e-12)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_top_k_without_ties_equals_sklearn(k):
    g = torch.Generator().manual_seed(k)
    preds, labels = torch.randn(200, 6, generator=g), torch.randint(0, 6, (200,), generator=g)
    expected = sklearn_metrics.top_k_accuracy_score(labels.numpy(), preds.numpy(), k=k, labels=range(6))
    assert feed(TopKAccuracy(k), preds, labels, [64, 136]) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_top_k_with_ties_is_sklearn_averaged_over_every_order_of_the_classes(k):
    # scikit-learn puts tied labels with the highest index first; over all 4! orders of the classes
    # each tied class comes first equally often, which is the expected hit epochal counts
    import itertools

    preds = tied_scores(k, (240, 4), levels=3)
    labels = torch.randint(0, 4, (240,), generator=torch.Generator().manual_seed(7))
    orders = [torch.tensor(p) for p in itertools.permutations(range(4))]
    averaged = sum(
        sklearn_metrics.top_k_accuracy_score(
            torch.argsort(order)[labels].numpy(), preds[:, order].numpy(), k=k, labels=range(4)
        )
        for order in orders
    ) / len(orders)
    assert feed(TopKAccuracy(k), preds, labels, [100, 140]) == pytest.approx(averaged, abs=1e-12)


def test_top_k_tie_rule_by_hand():
    preds = torch.tensor([[1.0, 1.0, 1.0, 0.0], [2.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    targets = torch.tensor([0, 1, 3])
    # k=2: row 0 ties 3 classes for 2 places -> 2/3; row 1: one class above, 3 tie for 1 place -> 1/3;
    # row 2: constant outputs, 4 classes tie for 2 places -> 1/2
    assert feed(TopKAccuracy(2), preds, targets, [3]) == pytest.approx((2 / 3 + 1 / 3 + 1 / 2) / 3)
    assert feed(TopKAccuracy(4), preds, targets, [3]) == 1.0


@pytest.mark.parametrize("seed", range(3))
def test_multilabel_f1_equals_sklearn_micro_f1(seed):
    logits, targets = tied_scores(seed, (199, 5), levels=5) - 2, multi_hot(seed, (199, 5))
    predicted = (torch.sigmoid(logits) > 0.5).long()
    expected = sklearn_metrics.f1_score(targets.numpy(), predicted.numpy(), average="micro")
    assert feed(MultiLabelF1(), logits, targets, [99, 100]) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_multilabel_f1_macro_equals_sklearn_macro_f1(seed):
    # logits -2..2: a fifth of the scores sit exactly on the 0.5 threshold (sigmoid(0)), which is not above it
    logits, targets = tied_scores(seed, (199, 6), levels=5) - 2, multi_hot(seed, (199, 6))
    logits[:, 5], targets[:, 5] = -3.0, 0  # a class neither predicted nor a target: 0, as scikit-learn counts it
    predicted = (torch.sigmoid(logits) > 0.5).long()
    expected = sklearn_metrics.f1_score(targets.numpy(), predicted.numpy(), average="macro", zero_division=0)
    assert feed(get_metric("f1_macro"), logits, targets, [99, 100]) == pytest.approx(expected, abs=1e-12)


def test_multilabel_f1_takes_one_threshold_per_class():
    logits = torch.tensor([[0.0, 1.0], [-1.0, 2.0], [1.0, 0.5]])
    targets = torch.tensor([[1, 0], [0, 1], [1, 1]])
    thresholds = [0.4, 0.8]  # sigmoid: column 0 -> 0.5, 0.27, 0.73; column 1 -> 0.73, 0.88, 0.62
    predicted = (torch.sigmoid(logits) > torch.tensor(thresholds)).long()
    for average in ("micro", "macro"):
        expected = sklearn_metrics.f1_score(targets.numpy(), predicted.numpy(), average=average)
        assert feed(MultiLabelF1(thresholds, average=average), logits, targets, [2, 1]) == pytest.approx(expected)
    with pytest.raises(ValueError, match="2 thresholds for 3 classes"):
        MultiLabelF1(thresholds).update(torch.zeros(1, 3), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="average must be 'micro' or 'macro'"):
        MultiLabelF1(average="weighted")


def _every_ranking_case():
    logits, labels = repeated_rows(3, 240, 5)
    scores, binary = tied_scores(3, (240,)), multi_hot(3, (240,))
    multi_scores, multi_targets = tied_scores(3, (240, 4)), multi_hot(3, (240, 4))
    return [
        (MeanAveragePrecision, multi_scores, multi_targets),
        (AUROC, scores, binary),
        (AUROC, multi_scores, multi_targets),
        (AUROC, logits, labels),
        (lambda: TopKAccuracy(2), tied_scores(3, (240, 5), levels=3), labels),
    ]


@pytest.mark.parametrize("case", range(5))
def test_metrics_do_not_depend_on_row_order(case):
    make, preds, targets = _every_ranking_case()[case]
    reference = feed(make(), preds, targets, [240])
    for seed in range(5):
        order = torch.randperm(240, generator=torch.Generator().manual_seed(seed))
        assert feed(make(), preds[order], targets[order], [17, 223]) == pytest.approx(reference, abs=1e-12)


@pytest.mark.parametrize("metric", [AUROC, MeanAveragePrecision])
def test_ranking_metrics_refuse_nan_scores(metric):
    preds, targets = tied_scores(0, (50, 3)), multi_hot(0, (50, 3))
    preds[4, 1] = preds[9, 2] = float("nan")
    with pytest.raises(ValueError, match=rf"{metric.__name__} \('{metric.name}'\): 2 of 150 scores are NaN"):
        feed(metric(), preds, targets, [25, 25])


def test_binary_auroc_refuses_a_nan_score():
    scores, labels = torch.tensor([0.1, float("nan"), 0.7, 0.4]), torch.tensor([0, 1, 1, 0])
    with pytest.raises(ValueError, match=r"AUROC \('auroc'\): 1 of 4 scores are NaN"):
        feed(AUROC(), scores, labels, [4])


def test_ranking_metrics_before_any_update_are_nan():
    assert math.isnan(AUROC().compute()) and math.isnan(MeanAveragePrecision().compute())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (run with -m gpu on a GPU machine)")
def test_update_never_synchronises_with_the_host():
    metrics = [Accuracy(), ErrorRate(), TopKAccuracy(3), MultiLabelF1(), MeanAveragePrecision(), AUROC()]
    preds = torch.randn(64, 5, device="cuda").bfloat16().float()
    labels, multi = torch.randint(0, 5, (64,), device="cuda"), (torch.rand(64, 5, device="cuda") < 0.3).long()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for metric in metrics:
            metric.update(preds, multi if isinstance(metric, MultiLabelF1 | MeanAveragePrecision) else labels)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert all(math.isfinite(metric.compute()) for metric in metrics)
