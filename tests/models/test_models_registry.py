"""The registry, and the contract every registered model keeps (forward/backward, layer groups, heads)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from epochal.models import (
    count_macs,
    count_params,
    create,
    example_input,
    get_model_info,
    list_families,
    list_models,
    model_summaries,
)

REFERENCE = json.loads((Path(__file__).parent / "data" / "regnet_reference.json").read_text())["models"]
# The biggest RegNets (over 50 M parameters) take seconds each on a CPU core: slow marker.
HEAVY = {name for name, row in REFERENCE.items() if row["params"] > 50_000_000}
ALL_MODELS = list_models()
CLASSIFIERS = [n for n in ALL_MODELS if get_model_info(n).family != "autoencoder"]


def _build(name: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return create(name, **{**get_model_info(name).example_kwargs, **kwargs})


def _small_size(model: nn.Module) -> tuple[int, ...]:
    size = tuple(model.default_input_size)
    if len(size) == 3 and size[1] > 32:
        return (size[0], 32, 32)  # ImageNet models at a tiny input keep the test fast
    return size


def _params(modules) -> list[int]:
    return [id(p) for m in modules for p in m.parameters()]


def test_registry_lists_all_24_regnets_and_the_classic_families():
    sizes = ("002", "004", "006", "008", "016", "032", "040", "064", "080", "120", "160", "320")
    assert list_models("regnetx_*") == [f"regnetx_{k}" for k in sizes]
    assert len(list_models("regnety_*")) == 12
    assert list_models("resnet*") == ["resnet18", "resnet34", "resnet50"]
    assert set(list_families()) >= {"regnet", "resnet", "preresnet", "vgg", "densenet", "inception",
                                     "separable", "airbench", "tabular", "autoencoder"}
    assert list_models(family="preresnet") == ["preresnet110", "preresnet164"]


def test_unknown_names_and_arguments_raise_with_suggestions():
    with pytest.raises(ValueError, match="Did you mean .*'regnety_004'"):
        create("regnety_04")
    with pytest.raises(ValueError, match="Did you mean 'dropout'"):
        create("resnet18", dropuot=0.1)
    with pytest.raises(ValueError, match="Did you mean 'drop_path_rate'"):
        create("regnety_004", drop_path=0.1)
    with pytest.raises(ValueError, match="unknown family"):
        list_models(family="transformers")
    with pytest.raises(ValueError, match="stem must be one of"):
        create("resnet18", stem="fancy")


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in ALL_MODELS],
)
def test_every_model_runs_forward_and_backward(name):
    model = _build(name, **({"num_classes": 7} if name in CLASSIFIERS else {}))
    x = example_input(model, batch_size=2, input_size=_small_size(model))
    out = model(*x) if isinstance(x, tuple) else model(x)
    if name in CLASSIFIERS:
        assert out.shape == (2, 7)
    else:
        assert out.shape == (2, *model.default_input_size)
    out.float().square().mean().backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert all(p.grad is not None for p in trainable)
    assert torch.isfinite(out).all()
    assert sum(float(p.grad.abs().sum()) for p in trainable) > 0


@pytest.mark.parametrize("name", ALL_MODELS)
def test_layer_groups_partition_parameters_with_head_last(name):
    with torch.device("meta"):
        model = _build(name)
    groups = model.layer_groups()
    assert len(groups) >= 3
    ids = _params(groups)
    assert len(ids) == len(set(ids)), "a parameter sits in two layer groups"
    assert set(ids) == {id(p) for p in model.parameters()}, "a parameter is in no layer group"
    assert groups[-1] is model.head
    assert len(model.default_input_size) in (1, 3)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_reset_classifier_changes_only_the_output_layer(name):
    with torch.device("meta"):
        model = _build(name)
    before = {k: v.shape for k, v in model.state_dict().items() if not k.startswith("head.fc.")}
    model.reset_classifier(5)
    assert model.head.fc.out_features == 5
    assert model.num_classes == 5
    after = {k: v.shape for k, v in model.state_dict().items() if not k.startswith("head.fc.")}
    assert before == after


def test_reset_classifier_zero_gives_features_and_keeps_device_dtype():
    model = create("resnet18", stem="cifar").double()
    model.reset_classifier(3)
    assert model.head.fc.weight.dtype == torch.float64
    model.reset_classifier(0)
    model.eval()
    out = model(torch.randn(2, 3, 32, 32, dtype=torch.float64))
    assert out.shape == (2, 512)


def test_model_summaries_are_meta_device_counts():
    rows = model_summaries("resnet*")
    assert [r["name"] for r in rows] == ["resnet18", "resnet34", "resnet50"]
    # torchvision's documented sizes of the same architectures
    assert [r["params"] for r in rows] == [11_689_512, 21_797_672, 25_557_032]
    assert rows[2]["macs"] == pytest.approx(4.09e9, rel=0.01)
    assert rows[0]["family"] == "resnet" and rows[0]["input_size"] == (3, 224, 224)
    tab = model_summaries("tabular_mlp")[0]
    assert tab["params"] > 0 and tab["input_size"] == (9,)


def test_count_macs_of_a_linear_layer_and_param_counts():
    layer = nn.Linear(10, 4)
    layer.default_input_size = (10,)
    assert count_macs(layer) == 40
    assert count_macs(layer, torch.randn(8, 10)) == 40  # per sample
    assert count_params(layer) == 44
    layer.bias.requires_grad_(False)
    assert count_params(layer, trainable_only=True) == 40


def test_pad_input_channels_keeps_outputs():
    torch.manual_seed(0)
    model = create("resnet18", stem="cifar").eval()
    x = torch.randn(2, 3, 32, 32)
    expected = model(x)
    torch.manual_seed(0)
    padded = create("resnet18", stem="cifar", pad_input_channels=4).eval()
    assert padded.stem.conv.weight.shape[1] == 4
    assert torch.equal(padded.stem.conv.weight[:, 3], torch.zeros_like(padded.stem.conv.weight[:, 3]))
    torch.testing.assert_close(padded(x), expected)
