"""Splits and the neutral class."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from epochal.data.splits import (
    exclude_class,
    merge_relabelled,
    random_split,
    relabel_neutral,
    stratified_split,
)


def test_stratified_split_keeps_class_shares_and_is_seeded():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    train, valid = stratified_split(labels, 0.2, seed=1)
    assert np.bincount(labels[valid]).tolist() == [10, 6, 4]
    assert sorted(np.concatenate([train, valid]).tolist()) == list(range(100))
    again = stratified_split(labels, 0.2, seed=1)
    assert np.array_equal(valid, again[1])
    assert not np.array_equal(valid, stratified_split(labels, 0.2, seed=2)[1])


def test_random_split_and_multi_label_fallback():
    train, valid = random_split(10, 0.3, seed=0)
    assert len(valid) == 3 and not set(train) & set(valid)
    multi = np.zeros((10, 4))
    assert np.array_equal(stratified_split(multi, 0.3, seed=0)[1], valid)
    with pytest.raises(ValueError, match="valid_pct"):
        random_split(10, 1.0)


def test_exclude_class_renumbers_the_rest():
    kept, neutral, remapped = exclude_class([0, 1, 2, 1, 0], neutral=1, num_classes=3)
    assert kept.tolist() == [0, 2, 4] and neutral.tolist() == [1, 3]
    assert remapped.tolist() == [0, -1, 1, -1, 0]
    with pytest.raises(ValueError, match="out of range"):
        exclude_class([0], neutral=3, num_classes=3)


def test_relabel_with_threshold_and_merge():
    probs = torch.tensor([[0.9, 0.1], [0.55, 0.45], [0.2, 0.8]])
    labels, confident = relabel_neutral(probs, threshold=0.7)
    assert labels.tolist() == [0, -1, 1] and confident.tolist() == [True, False, True]
    positions, merged = merge_relabelled(np.array([0, 4]), np.array([1, 0]), np.array([5, 2, 3]), labels)
    assert positions.tolist() == [0, 3, 4, 5] and merged.tolist() == [1, 1, 0, 0]
    with pytest.raises(ValueError, match="threshold"):
        relabel_neutral(probs, 0.0)
    with pytest.raises(ValueError, match="2 new labels"):
        merge_relabelled(np.array([0]), np.array([0]), np.array([1, 2, 3]), labels[:2])
