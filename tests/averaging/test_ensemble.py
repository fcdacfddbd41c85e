"""Ensembles: the combination rules, weights (equal, given, fitted on held-out log loss), as a model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from epochal.averaging import Ensemble, combine_outputs, fit_weights, normalise_weights
from epochal.data.base import ArrayLoader
from epochal.learner import Learner


def test_probs_combine_is_the_log_of_the_weighted_mean_probability():
    g = torch.Generator().manual_seed(0)
    outputs = [torch.randn(5, 4, generator=g) for _ in range(3)]
    weights = normalise_weights([1, 2, 1], 3)
    combined = combine_outputs(outputs, weights, "probs")
    expected = sum(w * o.softmax(-1) for w, o in zip(weights.tolist(), outputs))
    torch.testing.assert_close(combined.exp(), expected)
    torch.testing.assert_close(combined.softmax(-1), expected)  # softmax of log-probabilities
    logits = combine_outputs(outputs, weights, "logits")
    torch.testing.assert_close(logits, sum(w * o for w, o in zip(weights, outputs)))
    sigmoid = combine_outputs(outputs, weights, "sigmoid").sigmoid()
    torch.testing.assert_close(sigmoid, sum(w * o.sigmoid() for w, o in zip(weights.tolist(), outputs)))


@pytest.mark.parametrize(("weights", "message"),
                         [([1, 2], "2 weights for 3"), ([1, -1, 1], ">= 0"), ([0, 0, 0], "not all 0")])
def test_bad_weights_are_errors(weights, message):
    with pytest.raises(ValueError, match=message):
        normalise_weights(weights, 3)
    with pytest.raises(ValueError, match="combine"):
        combine_outputs([torch.zeros(2, 2)], torch.ones(1), "vote")


def test_fitted_weights_favour_the_member_that_predicts_the_held_out_labels():
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 3, (200,), generator=g)
    good = F.one_hot(targets, 3).float() * 4 + torch.randn(200, 3, generator=g)
    noise = torch.randn(200, 3, generator=g) * 2
    weights = fit_weights([noise, good, noise.flip(0)], targets)
    assert weights.sum().item() == pytest.approx(1.0)
    assert weights[1] > 0.9
    equal = F.cross_entropy(combine_outputs([noise, good, noise.flip(0)], normalise_weights(None, 3)), targets)
    fitted = F.cross_entropy(combine_outputs([noise, good, noise.flip(0)], weights), targets)
    assert fitted < equal


def test_an_ensemble_is_a_model_the_learner_validates():
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = (x[:, 0] > 0).long()
    valid = ArrayLoader(x, y, batch_size=16)
    right = nn.Linear(4, 2)
    with torch.no_grad():
        right.weight.zero_()
        right.bias.zero_()
        right.weight[1, 0], right.weight[0, 0] = 5.0, -5.0
    wrong = nn.Linear(4, 2)
    ensemble = Ensemble([wrong, right])
    weights = ensemble.fit_weights(valid)
    assert weights[1] > 0.9 and "weights=[" in repr(ensemble)
    metrics = Learner(ensemble, (valid, valid), metrics=["accuracy"], device="cpu").validate()
    alone = Learner(right, (valid, valid), metrics=["accuracy"], device="cpu").validate()
    assert metrics["valid/accuracy"] >= alone["valid/accuracy"] - 1 / 64
    ensemble.set_weights(None)
    assert ensemble.weights.tolist() == [0.5, 0.5]
