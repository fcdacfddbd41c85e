"""Metrics: exact accumulation over batches, directions, known values."""

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
    assert feed(TopKAccuracy(2), preds, targets, [1, 2]) == pytest.approx(2 / 3)
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
