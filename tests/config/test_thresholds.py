"""Per-class thresholds: the rule on worked examples, and what is read back from a run folder."""

from __future__ import annotations

import json

import pytest
import torch

from epochal.config.thresholds import labels_above, read_thresholds, tune_thresholds


def test_each_class_gets_the_lowest_threshold_of_its_best_f1():
    probs = torch.tensor(
        [[0.9, 0.8, 0.3], [0.7, 0.6, 0.2], [0.6, 0.6, 0.1], [0.2, 0.4, 0.4], [0.1, 0.1, 0.3]]
    )
    targets = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]])
    thresholds, f1s = tune_thresholds(probs, targets)
    # class 0 (positives 0.9, 0.7, 0.2): t=0 -> 2*3/(5+3)=0.75; t=0.1 -> 6/7; t=0.2 -> 4/5; t=0.6 -> 4/5
    assert thresholds[0] == pytest.approx(0.1) and f1s[0] == pytest.approx(6 / 7)
    # class 1 (positives 0.8 and one of the tied 0.6s): t=0 -> 4/7; t=0.1 -> 4 predicted, 4/6;
    # t=0.4 -> 3 predicted (0.8 and both 0.6s), 4/5; t=0.6 -> 0.8 alone, 2/3
    assert thresholds[1] == pytest.approx(0.4) and f1s[1] == pytest.approx(4 / 5)
    # class 2 has no positive: nothing to tune, it keeps 0.5
    assert thresholds[2] == 0.5 and f1s[2] is None


def test_a_tie_between_different_predictions_goes_to_the_lower_threshold():
    # t=0 predicts all four: F1 = 2*2/(4+2) = 2/3; t=0.5 predicts 0.9 only: F1 = 2*1/(1+2) = 2/3 -> t=0 wins
    probs = torch.tensor([[0.9], [0.5], [0.3], [0.2]])
    targets = torch.tensor([[1], [0], [0], [1]])
    thresholds, f1s = tune_thresholds(probs, targets)
    assert thresholds == [0.0] and f1s == [pytest.approx(2 / 3)]


def test_the_tuned_threshold_reaches_the_best_f1_of_every_cut():
    g = torch.Generator().manual_seed(0)
    probs = torch.randint(0, 6, (80, 4), generator=g).float() / 5  # many ties
    targets = (torch.rand(80, 4, generator=g) < 0.4).long()
    thresholds, f1s = tune_thresholds(probs, targets)
    for c in range(4):
        cuts = [0.0, *probs[:, c].unique().tolist()]
        best = max(2 * int(((probs[:, c] > t) & (targets[:, c] == 1)).sum())
                   / (int((probs[:, c] > t).sum()) + int(targets[:, c].sum())) for t in cuts)
        assert f1s[c] == pytest.approx(best)
        predicted = probs[:, c] > thresholds[c]
        assert 2 * int((predicted & (targets[:, c] == 1)).sum()) / (int(predicted.sum()) + int(targets[:, c].sum())) \
            == pytest.approx(best)


def test_labels_above_are_strictly_above_their_thresholds():
    probs = torch.tensor([[0.5, 0.9, 0.2], [0.6, 0.3, 0.2]])
    assert labels_above(probs, ["a", "b", "c"], [0.5, 0.3, 0.1]) == [["b", "c"], ["a", "c"]]


def test_read_thresholds_orders_by_class_and_refuses_another_runs_file(tmp_path):
    assert read_thresholds(tmp_path, ["a", "b"]) is None
    (tmp_path / "thresholds.json").write_text(json.dumps({"thresholds": {"b": 0.25, "a": 0.75}}))
    assert read_thresholds(tmp_path, ["a", "b"]) == [0.75, 0.25]
    with pytest.raises(ValueError, match=r"thresholds.json does not hold one threshold for each.*\['a', 'c'\]"):
        read_thresholds(tmp_path, ["a", "c"])
