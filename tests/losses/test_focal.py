"""Focal loss (Lin et al. 2017): against a hand computation, cross-entropy at gamma=0, and from recipes."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from epochal.losses import LOSSES, FocalLoss, SigmoidFocalLoss


def test_softmax_focal_matches_a_hand_computation():
    logits, target = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 3.0]]), torch.tensor([0, 0, 1])
    loss = FocalLoss(alpha=[0.25, 0.75], gamma=2.0, reduction="none")(logits, target)
    expected = []
    for row, t in zip(logits.tolist(), target.tolist()):
        p_t = math.exp(row[t]) / sum(math.exp(v) for v in row)
        expected.append(-[0.25, 0.75][t] * (1 - p_t) ** 2 * math.log(p_t))
    assert loss.tolist() == pytest.approx(expected, rel=1e-5)
    assert FocalLoss(alpha=[0.25, 0.75], gamma=2.0)(logits, target).item() == pytest.approx(sum(expected) / 3, rel=1e-5)


def test_a_single_alpha_weighs_class_one_as_the_paper_does():
    logits, target = torch.randn(8, 2), torch.tensor([0, 1] * 4)
    assert torch.allclose(FocalLoss(alpha=0.25)(logits, target), FocalLoss(alpha=[0.75, 0.25])(logits, target))


@pytest.mark.parametrize("classes", [2, 5])
def test_softmax_focal_at_gamma_zero_is_cross_entropy(classes):
    torch.manual_seed(0)
    logits, target = torch.randn(32, classes) * 3, torch.randint(0, classes, (32,))
    ce = nn.functional.cross_entropy(logits, target)
    assert FocalLoss(gamma=0.0)(logits, target).item() == pytest.approx(ce.item(), rel=1e-6)
    weight = torch.rand(classes) + 0.1
    per_sample = nn.functional.cross_entropy(logits, target, weight=weight, reduction="none")
    focal = FocalLoss(alpha=weight, gamma=0.0)(logits, target)
    assert focal.item() == pytest.approx(per_sample.mean().item(), rel=1e-6)


def test_focusing_shrinks_the_loss_of_easy_examples_more_than_of_hard_ones():
    logits, target = torch.tensor([[4.0, 0.0], [0.0, 0.5]]), torch.tensor([0, 0])  # easy, hard
    ce = nn.functional.cross_entropy(logits, target, reduction="none")
    focal = FocalLoss(gamma=2.0, reduction="none")(logits, target)
    ratio = focal / ce
    assert ratio[0] < 0.001 and ratio[1] > 0.3


def test_sigmoid_focal_matches_a_hand_computation_and_bce_at_gamma_zero():
    logits, target = torch.tensor([[1.5, -0.5], [-2.0, 0.3]]), torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    loss = SigmoidFocalLoss(alpha=0.25, gamma=2.0, reduction="none")(logits, target)
    for (x, y), value in zip(zip(logits.flatten().tolist(), target.flatten().tolist()), loss.flatten().tolist()):
        p = 1 / (1 + math.exp(-x))
        p_t, a_t = (p, 0.25) if y == 1 else (1 - p, 0.75)
        assert value == pytest.approx(-a_t * (1 - p_t) ** 2 * math.log(p_t), rel=1e-5)
    bce = nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert SigmoidFocalLoss(gamma=0.0)(logits, target).item() == pytest.approx(bce.item(), rel=1e-6)


def test_balanced_alpha_from_a_recipe_and_buffers_follow_the_module():
    entry = LOSSES["focal"]
    loss = entry.build({"alpha": "balanced", "gamma": 1.0}, classes=["a", "b"], counts=[75, 25], n_samples=100)
    assert loss.alpha.tolist() == pytest.approx([100 / 150, 100 / 50]) and loss.gamma == 1.0
    assert "alpha" in dict(loss.named_buffers())
    with pytest.raises(ValueError, match="one per class"):
        LOSSES["focal"].check({"alpha": 0.25}, where="loss")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: FocalLoss(gamma=-1.0), "gamma must be a number >= 0"),
        (lambda: FocalLoss(alpha=1.5), r"in \[0, 1\]"),
        (lambda: FocalLoss(alpha=[1.0, -1.0]), "one weight >= 0"),
        (lambda: SigmoidFocalLoss(alpha=2.0), "positive terms"),
        (lambda: FocalLoss(reduction="avg"), "reduction must be one of"),
    ],
)
def test_bad_arguments_are_refused_with_the_reason(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_wrong_shapes_name_the_other_form():
    with pytest.raises(ValueError, match="use SigmoidFocalLoss"):
        FocalLoss()(torch.zeros(2, 2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="use FocalLoss"):
        SigmoidFocalLoss()(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="alpha has 2 weights"):
        FocalLoss(alpha=[1.0, 1.0])(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
