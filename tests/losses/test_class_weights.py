"""Class weights: scikit-learn's 'balanced' rule, the multi-label positive weight, recipe values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from epochal.losses import balanced_class_weights, balanced_pos_weight, class_weight_tensor

COUNTS = [[30, 10], [5, 50, 45], [1, 1, 98], [7, 7, 7, 7]]


def _sklearn_balanced(counts: list[int]) -> np.ndarray:
    """scikit-learn's compute_class_weight('balanced') when installed, else its documented formula."""
    labels = np.repeat(np.arange(len(counts)), counts)
    try:
        from sklearn.utils.class_weight import compute_class_weight
    except ImportError:
        return len(labels) / (len(counts) * np.bincount(labels))
    return compute_class_weight("balanced", classes=np.arange(len(counts)), y=labels)


@pytest.mark.parametrize("counts", COUNTS)
def test_balanced_class_weights_match_scikit_learn(counts):
    weights = balanced_class_weights(counts)
    assert weights.dtype == torch.float32
    np.testing.assert_allclose(weights.numpy(), _sklearn_balanced(counts), rtol=1e-6)
    # every class then carries the same total weight, n / k
    np.testing.assert_allclose((weights * torch.tensor(counts)).numpy(), sum(counts) / len(counts), rtol=1e-6)


def test_balanced_class_weights_refuse_an_empty_class():
    with pytest.raises(ValueError, match=r"classes \['bee'\] have no training sample"):
        balanced_class_weights([4, 0, 2], classes=["ant", "bee", "cat"])


def test_balanced_pos_weight_is_negatives_over_positives():
    weights = balanced_pos_weight(torch.tensor([10, 50, 1]), n_samples=100)
    assert weights.tolist() == pytest.approx([9.0, 1.0, 99.0])
    with pytest.raises(ValueError, match=r"labels \['b'\] are in no training sample and \['c'\] in every one"):
        balanced_pos_weight([5, 0, 100], 100, classes=["a", "b", "c"])


def test_class_weight_tensor_checks_the_length_against_the_classes():
    weights = class_weight_tensor([1, 2, 0.5], "loss.weight", classes=["a", "b", "c"])
    assert weights.tolist() == [1.0, 2.0, 0.5] and weights.dtype == torch.float32
    with pytest.raises(ValueError, match=r"loss.weight has 2 values but the data has 3 classes \['a', 'b', 'c'\]"):
        class_weight_tensor([1, 2], "loss.weight", classes=["a", "b", "c"])
    with pytest.raises(ValueError, match="loss.weight: class weights must be >= 0"):
        class_weight_tensor([1, -2], "loss.weight", num_classes=2)
    with pytest.raises(ValueError, match="needs the training label counts"):
        class_weight_tensor("balanced", "loss.weight", num_classes=2, balanced=balanced_class_weights)
    balanced = class_weight_tensor(
        "balanced", "loss.weight", num_classes=2, counts=[30, 10], n_samples=40, balanced=balanced_class_weights
    )
    assert balanced.tolist() == pytest.approx([40 / 60, 40 / 20])
