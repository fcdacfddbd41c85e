"""``--tta`` view names: parsing, refusal of unknown names, and the logits they average."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from epochal.config.tta import TTA_VIEWS, TTASpec, parse_tta, tta_model


@pytest.mark.parametrize(
    ("value", "spec"),
    [
        (True, TTASpec(True, 0)),
        ("flip", TTASpec(True, 0)),
        ("translate", TTASpec(False, 1)),
        ("flip,translate", TTASpec(True, 1)),
        (["translate", "flip"], TTASpec(True, 1)),
        (False, None),
        (None, None),
    ],
)
def test_parse_tta(value, spec):
    assert parse_tta(value) == spec


def test_an_unknown_view_is_refused_with_the_valid_names():
    with pytest.raises(ValueError, match=r"\['flop'\] are not valid.*\['flip', 'translate'\]"):
        parse_tta("flip,flop")
    assert set(TTA_VIEWS) == {"flip", "translate"}


def _by_hand(model: nn.Module, images: torch.Tensor, flip: bool, translate: bool) -> torch.Tensor:
    """The mean of the logits over the views, made without epochal: mirror, then one-pixel reflect shifts."""
    bases = [images, images.flip(3)] if flip else [images]
    views = list(bases)
    if translate:
        h, w = images.shape[2:]
        for base in bases:
            padded = F.pad(base, (1, 1, 1, 1), mode="reflect")
            views += [padded[:, :, :h, :w], padded[:, :, 2:, 2:]]  # shifted down-right and up-left
    return torch.stack([model(v) for v in views]).mean(0)


@pytest.mark.parametrize("views", ["flip", "translate", "flip,translate"])
def test_tta_model_averages_the_named_views(views):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))  # sees position and side
    images = torch.randn(2, 3, 8, 8)
    spec = parse_tta(views)
    with torch.no_grad():
        got = tta_model(model, views)(images)
        expected = _by_hand(model, images, spec.flip, spec.translate > 0)
        plain = model(images)
    assert torch.allclose(got, expected, atol=1e-6)
    assert not torch.allclose(got, plain, atol=1e-3)
    assert tta_model(model, None) is model
