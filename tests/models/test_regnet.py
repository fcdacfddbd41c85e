"""RegNet: the design-space rule, the 24 presets against the reference sizes, and the options."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from epochal.models import (
    PRESETS,
    RegNet,
    RegNetParams,
    count_macs,
    count_params,
    create,
    quantized_linear_widths,
)

REFERENCE = json.loads((Path(__file__).parent / "data" / "regnet_reference.json").read_text())["models"]


def test_reference_covers_exactly_the_24_presets():
    assert sorted(REFERENCE) == sorted(PRESETS)
    assert len(PRESETS) == 24


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_preset_params_exact_and_macs_within_0_001_percent(name):
    # docs/models.md promises 0.001 %: the reference's GMACs are printed to 6 decimals, and the
    # largest difference (regnetx_004) is 1.1e-6 relative, well inside 1e-5.
    with torch.device("meta"):
        model = create(name)
    assert count_params(model) == REFERENCE[name]["params"]
    macs = count_macs(model, input_size=(3, 224, 224))
    assert macs / 1e9 == pytest.approx(REFERENCE[name]["gmac_224"], rel=1e-5)


@pytest.mark.parametrize(
    ("name", "widths", "depths"),
    [
        # Stage widths and depths published with the paper's models (pycls model zoo).
        ("regnetx_002", [24, 56, 152, 368], [1, 1, 4, 7]),
        ("regnetx_004", [32, 64, 160, 384], [1, 2, 7, 12]),
        ("regnety_004", [48, 104, 208, 440], [1, 3, 6, 6]),
        ("regnety_008", [64, 128, 320, 768], [1, 3, 8, 2]),
        ("regnety_032", [72, 216, 576, 1512], [2, 5, 13, 1]),
    ],
)
def test_quantized_linear_rule_gives_the_papers_stages(name, widths, depths):
    stages = PRESETS[name].stages()
    assert [s.width for s in stages] == widths
    assert [s.depth for s in stages] == depths
    assert sum(depths) == PRESETS[name].depth


def test_block_widths_are_quantised_piecewise_constant_and_group_compatible():
    widths = quantized_linear_widths(depth=13, w0=24, wa=36.44, wm=2.49)
    assert widths == [24, 56, 152, 152, 152, 152, 368, 368, 368, 368, 368, 368, 368]
    for params in PRESETS.values():
        ws = params.block_widths()
        assert all(w % 8 == 0 for w in ws)
        assert ws == sorted(ws)
        for s in params.stages():
            assert s.bottleneck_width % s.group_width == 0
            assert s.width % 8 == 0


def test_torchvision_rounding_differs_only_where_torchvision_does():
    tv = replace(PRESETS["regnety_008"], group_rounding="torchvision").stages()
    assert [s.width for s in tv] == [64, 144, 320, 784]
    same = replace(PRESETS["regnety_004"], group_rounding="torchvision").stages()
    assert same == PRESETS["regnety_004"].stages()


def test_any_regnet_from_d_w0_wa_wm_g():
    params = RegNetParams(depth=6, w0=16, wa=12.0, wm=2.0, group_width=8, se_ratio=0.25, stem_width=16)
    model = RegNet(params, num_classes=5, stem="cifar")
    assert [s.width for s in model.stage_specs] == [16, 32, 64]
    assert [len(stage) for stage in model.stages] == [s.depth for s in model.stage_specs]
    assert model.default_input_size == (3, 32, 32)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    # the same point through the registry: override a preset's design-space fields
    overridden = create("regnety_002", depth=6, w0=16, wa=12.0, wm=2.0, group_width=8, stem_width=16, num_classes=5)
    assert count_params(overridden) == count_params(RegNet(params, num_classes=5))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("wm", 1.0, "wm must be > 1"), ("w0", 20, "multiple of quantum"), ("wa", -1.0, "wa must be >= 0"),
     ("se_ratio", 1.5, "se_ratio"), ("group_rounding", "numpy", "group_rounding")],
)
def test_invalid_design_points_are_rejected(field, value, message):
    with pytest.raises(ValueError, match=message):
        replace(PRESETS["regnetx_002"], **{field: value})


def test_y_blocks_have_se_sized_from_the_block_input_and_x_blocks_none():
    y = create("regnety_002")
    first = y.stages[0][0]
    assert first.se.reduce.out_channels == round(0.25 * 32)  # the stem's 32 channels enter the block
    assert y.stages[1][0].se.reduce.out_channels == round(0.25 * 24)
    x = create("regnetx_002")
    assert not any(type(m).__name__ == "SqueezeExcite" for m in x.modules())


def test_zero_init_last_makes_residual_branches_start_at_zero():
    model = create("regnetx_002", num_classes=10)
    gammas = [block.conv3.bn.weight for stage in model.stages for block in stage]
    assert all(torch.count_nonzero(g) == 0 for g in gammas)
    plain = create("regnetx_002", num_classes=10, zero_init_last=False)
    assert all(torch.all(block.conv3.bn.weight == 1) for stage in plain.stages for block in stage)


def test_stochastic_depth_rates_rise_linearly_and_act_only_in_training():
    model = create("regnetx_002", num_classes=10, drop_path_rate=0.2, stem="cifar", zero_init_last=False)
    rates = [block.drop_path.rate for stage in model.stages for block in stage]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.2)
    assert rates == sorted(rates)
    x = torch.randn(4, 3, 32, 32)
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    model.train()
    torch.manual_seed(0)
    a = model(x)
    torch.manual_seed(1)
    b = model(x)
    assert not torch.allclose(a, b)


def test_cifar_stem_keeps_resolution_and_imagenet_stem_halves_it():
    cifar = create("regnety_002", stem="cifar")
    imagenet = create("regnety_002")
    x = torch.randn(1, 3, 32, 32)
    assert cifar.stem(x).shape[-1] == 32
    assert imagenet.stem(x).shape[-1] == 16
    assert cifar.forward_features(x).shape[-1] == 2  # four stride-2 stages


@pytest.mark.realdata
def test_bundled_reference_matches_the_shared_one(shared_dir):
    shared = json.loads((shared_dir / "reference" / "regnet_reference.json").read_text())["models"]
    assert shared == REFERENCE
