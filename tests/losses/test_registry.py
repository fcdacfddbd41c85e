"""The loss registry: every entry builds and trains on its kind of targets; recipe values are checked."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from epochal.losses import LOSSES, LossEntry, balanced_class_weights, register_loss

#: A batch of predictions and targets of each kind a loss may take.
BATCHES = {
    "class_indices": (torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])),
    "multi_hot": (torch.randn(6, 3), torch.tensor([[1, 0, 1], [0, 1, 0]] * 3, dtype=torch.float)),
    "values": (torch.randn(6, 1), torch.randn(6)),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_registered_loss_gives_a_finite_scalar_with_gradients(name):
    entry = LOSSES[name]
    prediction, target = BATCHES[entry.targets]
    prediction.requires_grad_(True)
    loss = entry.build({})(prediction, target)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert prediction.grad is not None and torch.isfinite(prediction.grad).all()


def test_balanced_cross_entropy_weights_the_rare_class():
    loss = LOSSES["cross_entropy"].build({"weight": "balanced"}, classes=["a", "b"], counts=[90, 10], n_samples=100)
    assert loss.weight.tolist() == pytest.approx([100 / 180, 100 / 20])
    prediction, target = torch.zeros(2, 2), torch.tensor([0, 1])
    unweighted = nn.functional.cross_entropy(prediction, target, reduction="none")
    assert loss(prediction, target) == pytest.approx(float((unweighted * loss.weight).sum() / loss.weight.sum()))


def test_bce_pos_weight_balanced_and_weight_as_torch_defines_them():
    entry = LOSSES["bce_with_logits"]
    loss = entry.build({"pos_weight": "balanced", "weight": [1, 2]}, num_classes=2, counts=[10, 40], n_samples=50)
    assert loss.pos_weight.tolist() == pytest.approx([4.0, 0.25]) and loss.weight.tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match=r"'weight': 'balanced' is not defined.*offered by \['pos_weight'\]"):
        entry.check({"weight": "balanced"}, where="")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"reduction": "none"}, r"loss.reduction must be one of \['mean', 'sum'\]"),
        ({"reduce": False}, "loss.reduce is deprecated by torch"),
        ({"size_average": True}, "loss.size_average is deprecated"),
        ({"weight": ["1", "2"]}, r"loss.weight must be a list of weights >= 0, one per class, or 'balanced'"),
        ({"weight": "inverse"}, "loss.weight must be"),
    ],
)
def test_values_no_training_can_use_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LOSSES["cross_entropy"].check(kwargs)


def test_a_loss_for_other_targets_is_refused_naming_the_right_one():
    expected = r"loss compares predictions with multi-label.*one class per sample.*cross_entropy"
    with pytest.raises(ValueError, match=expected):
        LOSSES["bce_with_logits"].build({}, num_classes=3, targets="class_indices")


def test_register_loss_plugs_into_recipes_and_the_old_import_path():
    from epochal.config import ConfigError, load_config
    from epochal.config.builders import LOSSES as builder_losses
    from epochal.config.builders import register_loss as builder_register

    assert builder_losses is LOSSES and builder_register is register_loss

    class Scaled(nn.CrossEntropyLoss):
        def __init__(self, factor: float = 2.0, weight=None):
            super().__init__(weight=weight)
            self.factor = factor

        def forward(self, prediction, target):
            return self.factor * super().forward(prediction, target)

    register_loss("scaled_ce", Scaled, {"weight": balanced_class_weights}, targets="class_indices")
    try:
        assert isinstance(LOSSES["scaled_ce"], LossEntry)
        config = load_config("default", ["loss={name: scaled_ce, factor: 3.0, weight: balanced}"])
        assert config.loss.kwargs == {"factor": 3.0, "weight": "balanced"}
        with pytest.raises(ConfigError, match="'factr' of loss 'scaled_ce'.*did you mean 'factor'"):
            load_config("default", ["loss={name: scaled_ce, factr: 3.0}"])
        built = LOSSES["scaled_ce"].build(config.loss.kwargs, num_classes=2, counts=[1, 3], n_samples=4)
        assert built.factor == 3.0 and built.weight.tolist() == pytest.approx([2.0, 2 / 3])
    finally:
        LOSSES.pop("scaled_ce")
