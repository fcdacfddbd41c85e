"""Optional: transplant randomly initialised timm / torchvision models and require identical outputs.

Skipped (with the reason) when timm or torchvision cannot be imported. Runs on CPU in float32.
"""

from __future__ import annotations

import importlib

import pytest
import torch
from torch import nn

from epochal.models import create, equivalent_model, load_pretrained


def _import_or_skip(name: str):
    try:
        return importlib.import_module(name)
    except Exception as error:  # noqa: BLE001  (a broken optional install skips this optional check)
        pytest.skip(f"{name} is not importable ({type(error).__name__}: {error}); pip install {name}")


def _randomise_norms(model: nn.Module) -> None:
    """Random BatchNorm parameters and statistics, so the check also covers them (and undoes zero-init)."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
                m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)


def _check_transplant(foreign: nn.Module, source: str, foreign_name: str, size: int = 96) -> None:
    torch.manual_seed(0)
    _randomise_norms(foreign)
    foreign.eval()
    name, kwargs = equivalent_model(source, foreign_name)
    ours = create(name, **kwargs).eval()
    report = load_pretrained(ours, foreign.state_dict(), source=source)
    assert report.ok, report.summary()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected, actual = foreign(x), ours(x)
    assert actual.dtype == torch.float32
    assert (actual - expected).abs().max().item() < 1e-5


@pytest.mark.parametrize("name", ["regnetx_002", "regnety_004", "resnet18", "resnet50", "densenet121"])
def test_timm_models_transplant_exactly(name):
    timm = _import_or_skip("timm")
    _check_transplant(timm.create_model(name, pretrained=False), "timm", name)


@pytest.mark.parametrize(
    "name", ["regnet_x_400mf", "regnet_y_400mf", "regnet_y_800mf", "resnet18", "resnet50", "densenet121"]
)
def test_torchvision_models_transplant_exactly(name):
    torchvision = _import_or_skip("torchvision")
    _check_transplant(getattr(torchvision.models, name)(weights=None), "torchvision", name)
