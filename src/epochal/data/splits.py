"""Seeded train/validation splits and the "neutral" class.

A neutral class (``other``, ``unsure``, ...) holds samples whose label is not trusted: they are
kept out of training and validation, the model is trained on the remaining classes, and later
its confident predictions relabel them (a form of pseudo-labelling, Lee, *Pseudo-Label*, 2013).
This module supplies the data side: excluding the class, keeping the excluded indices, mapping
class indices, and relabelling from predicted probabilities with a confidence threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["exclude_class", "merge_relabelled", "random_split", "relabel_neutral", "stratified_split"]


def _check_pct(valid_pct: float) -> None:
    if not 0.0 <= valid_pct < 1.0:
        raise ValueError(f"valid_pct={valid_pct} must be in [0, 1)")


def random_split(n: int, valid_pct: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of ``range(n)``: (train positions, valid positions), both sorted."""
    _check_pct(valid_pct)
    order = np.random.default_rng(seed).permutation(n)
    n_valid = round(n * valid_pct)
    return np.sort(order[n_valid:]), np.sort(order[:n_valid])


def stratified_split(
    labels: Sequence[int] | np.ndarray, valid_pct: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split keeping each class's share: ``round(count * valid_pct)`` of it go to validation.

    Args:
        labels: class index per sample; multi-hot rows (2-D) fall back to :func:`random_split`.
        valid_pct: fraction for validation, in ``[0, 1)``.
        seed: the split is a pure function of (labels, valid_pct, seed).

    Returns:
        (train positions, valid positions), disjoint, sorted, covering every sample.
    """
    _check_pct(valid_pct)
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return random_split(len(labels), valid_pct, seed)
    rng = np.random.default_rng(seed)
    train, valid = [], []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        members = members[rng.permutation(len(members))]
        n_valid = round(len(members) * valid_pct)
        valid.append(members[:n_valid])
        train.append(members[n_valid:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(valid))


def exclude_class(
    labels: Sequence[int] | np.ndarray, neutral: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Take the ``neutral`` class out and renumber the others contiguously.

    Args:
        labels: class index per sample.
        neutral: the class index to exclude.
        num_classes: classes including the neutral one.

    Returns:
        ``(kept positions, neutral positions, new_labels)`` where ``new_labels`` maps every
        sample to its index among the ``num_classes - 1`` remaining classes (-1 for neutral).
    """
    labels = np.asarray(labels)
    if not 0 <= neutral < num_classes:
        raise ValueError(f"neutral class index {neutral} is out of range for {num_classes} classes")
    mapping = np.full(num_classes, -1, dtype=np.int64)
    mapping[[c for c in range(num_classes) if c != neutral]] = np.arange(num_classes - 1)
    new_labels = mapping[labels]
    return np.flatnonzero(labels != neutral), np.flatnonzero(labels == neutral), new_labels


def relabel_neutral(
    probabilities: torch.Tensor | np.ndarray, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels for neutral samples from the model's class probabilities.

    Args:
        probabilities: ``(N, K)`` probabilities over the training classes (softmax outputs).
        threshold: smallest top probability accepted as a label, in ``(0, 1]``.

    Returns:
        ``(labels, confident)``: the argmax class where the top probability reaches
        ``threshold``, else -1; and the boolean mask of confident samples.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold={threshold} must be in (0, 1]")
    probs = torch.as_tensor(probabilities)
    if probs.ndim != 2:
        raise ValueError(f"probabilities must be (N, classes), got shape {tuple(probs.shape)}")
    top, labels = probs.max(dim=1)
    confident = top >= threshold
    return torch.where(confident, labels, torch.full_like(labels, -1)), confident


def merge_relabelled(
    positions: np.ndarray,
    labels: np.ndarray,
    neutral_positions: np.ndarray,
    new_labels: torch.Tensor | np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Add confidently relabelled neutral samples (label >= 0) to a training set.

    Args:
        positions: data set positions of the current training samples.
        labels: their labels.
        neutral_positions: positions of the neutral samples, in the order they were predicted.
        new_labels: labels from :func:`relabel_neutral` (-1 keeps a sample out).

    Returns:
        ``(positions, labels)`` of the enlarged training set, sorted by position.
    """
    new_labels = np.asarray(torch.as_tensor(new_labels).cpu())
    if len(new_labels) != len(neutral_positions):
        raise ValueError(f"{len(new_labels)} new labels for {len(neutral_positions)} neutral samples")
    take = new_labels >= 0
    all_positions = np.concatenate([np.asarray(positions), np.asarray(neutral_positions)[take]])
    all_labels = np.concatenate([np.asarray(labels), new_labels[take]])
    order = np.argsort(all_positions, kind="stable")
    return all_positions[order], all_labels[order]
