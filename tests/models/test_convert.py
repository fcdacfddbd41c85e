"""Weight converters, on hand-made state dicts that use the real timm / torchvision / pycls key names.

The foreign state dicts are generated from the architecture description alone (stage widths,
group widths, SE widths) and the foreign naming schemes, never from epochal's module tree; a
functional forward pass written against the *foreign* names checks that every tensor lands where it
acts.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from epochal.models import (
    RegNet,
    RegNetParams,
    ResNet,
    convert_state_dict,
    create,
    equivalent_model,
    load_pretrained,
)
from epochal.models.convert import read_state_dict
from epochal.models.resnet import BasicBlock, Bottleneck

PARAMS = RegNetParams(depth=5, w0=16, wa=10.0, wm=2.0, group_width=8, se_ratio=0.25, stem_width=16)
NUM_CLASSES = 6


def _t(*shape: int) -> torch.Tensor:
    return torch.randn(*shape) if shape else torch.tensor(7)


def _bn(prefix: str, c: int) -> dict[str, torch.Tensor]:
    return {f"{prefix}.weight": torch.rand(c) + 0.5, f"{prefix}.bias": torch.randn(c),
            f"{prefix}.running_mean": torch.randn(c) * 0.1, f"{prefix}.running_var": torch.rand(c) + 0.5,
            f"{prefix}.num_batches_tracked": torch.tensor(11)}


def _regnet_blocks(params: RegNetParams):
    """(stage index, block index, w_in, w_out, w_b, groups, se width) from the design-space description."""
    w_in = params.stem_width
    for i, spec in enumerate(params.stages()):
        for j in range(spec.depth):
            se = round(params.se_ratio * w_in)
            yield i, j, w_in, spec.width, spec.bottleneck_width, spec.bottleneck_width // spec.group_width, se
            w_in = spec.width


def torchvision_regnet_sd(params: RegNetParams, num_classes: int) -> dict[str, torch.Tensor]:
    sd = {"stem.0.weight": _t(params.stem_width, 3, 3, 3), **_bn("stem.1", params.stem_width)}
    for i, j, w_in, w_out, w_b, groups, se in _regnet_blocks(params):
        p = f"trunk_output.block{i + 1}.block{i + 1}-{j}"
        if w_in != w_out or j == 0:
            sd |= {f"{p}.proj.0.weight": _t(w_out, w_in, 1, 1), **_bn(f"{p}.proj.1", w_out)}
        sd |= {f"{p}.f.a.0.weight": _t(w_b, w_in, 1, 1), **_bn(f"{p}.f.a.1", w_b)}
        sd |= {f"{p}.f.b.0.weight": _t(w_b, w_b // groups, 3, 3), **_bn(f"{p}.f.b.1", w_b)}
        if se:
            sd |= {f"{p}.f.se.fc1.weight": _t(se, w_b, 1, 1), f"{p}.f.se.fc1.bias": _t(se),
                   f"{p}.f.se.fc2.weight": _t(w_b, se, 1, 1), f"{p}.f.se.fc2.bias": _t(w_b)}
        sd |= {f"{p}.f.c.0.weight": _t(w_out, w_b, 1, 1), **_bn(f"{p}.f.c.1", w_out)}
    last = params.stages()[-1].width
    return sd | {"fc.weight": _t(num_classes, last), "fc.bias": _t(num_classes)}


def _renamed_torchvision_regnet(sd: dict[str, torch.Tensor], renames) -> dict[str, torch.Tensor]:
    """torchvision's RegNet tensors with block keys ``s<i>.b<j>.<rest>`` and ``rest`` prefixes renamed."""
    out = {}
    for key, value in sd.items():
        key = key.replace("stem.0.", "stem.conv.").replace("stem.1.", "stem.bn.")
        parts = key.split(".")
        if parts[0] == "trunk_output":
            stage, block = int(parts[1][5:]), int(parts[2].split("-")[1]) + 1
            rest = ".".join(parts[3:])
            for old, new in renames:
                rest = new + rest[len(old):] if rest.startswith(old + ".") else rest
            key = f"s{stage}.b{block}.{rest}"
        key = "head." + key if key.startswith("fc.") else key
        out[key] = value
    return out


def torchvision_to_timm_regnet(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same tensors under timm's names (s1.b1.conv1.conv, .downsample, se.fc1, head.fc)."""
    return _renamed_torchvision_regnet(
        sd,
        (("proj.0", "downsample.conv"), ("proj.1", "downsample.bn"), ("f.a.0", "conv1.conv"),
         ("f.a.1", "conv1.bn"), ("f.b.0", "conv2.conv"), ("f.b.1", "conv2.bn"),
         ("f.c.0", "conv3.conv"), ("f.c.1", "conv3.bn"), ("f.se", "se")),
    )


def torchvision_to_pycls_regnet(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same tensors under pycls' names (s1.b1.f.a, f.a_bn, proj/bn, f.se.f_ex.0/2, head.fc)."""
    return _renamed_torchvision_regnet(
        sd,
        (("proj.0", "proj"), ("proj.1", "bn"), ("f.a.0", "f.a"), ("f.a.1", "f.a_bn"),
         ("f.b.0", "f.b"), ("f.b.1", "f.b_bn"), ("f.c.0", "f.c"), ("f.c.1", "f.c_bn"),
         ("f.se.fc1", "f.se.f_ex.0"), ("f.se.fc2", "f.se.f_ex.2")),
    )


def _bn_eval(x: torch.Tensor, sd: dict, p: str) -> torch.Tensor:
    return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"])


def torchvision_regnet_forward(sd: dict, params: RegNetParams, x: torch.Tensor) -> torch.Tensor:
    """A RegNet forward pass written against torchvision's names (the reference)."""
    x = F.relu(_bn_eval(F.conv2d(x, sd["stem.0.weight"], stride=2, padding=1), sd, "stem.1"))
    for i, j, _w_in, _w_out, _w_b, groups, se in _regnet_blocks(params):
        p = f"trunk_output.block{i + 1}.block{i + 1}-{j}"
        stride = 2 if j == 0 else 1
        y = F.relu(_bn_eval(F.conv2d(x, sd[f"{p}.f.a.0.weight"]), sd, f"{p}.f.a.1"))
        y = F.relu(_bn_eval(F.conv2d(y, sd[f"{p}.f.b.0.weight"], stride=stride, padding=1, groups=groups),
                            sd, f"{p}.f.b.1"))
        if se:
            s = F.relu(F.conv2d(y.mean((2, 3), keepdim=True), sd[f"{p}.f.se.fc1.weight"], sd[f"{p}.f.se.fc1.bias"]))
            y = y * torch.sigmoid(F.conv2d(s, sd[f"{p}.f.se.fc2.weight"], sd[f"{p}.f.se.fc2.bias"]))
        y = _bn_eval(F.conv2d(y, sd[f"{p}.f.c.0.weight"]), sd, f"{p}.f.c.1")
        shortcut = x
        if f"{p}.proj.0.weight" in sd:
            shortcut = _bn_eval(F.conv2d(x, sd[f"{p}.proj.0.weight"], stride=stride), sd, f"{p}.proj.1")
        x = F.relu(y + shortcut)
    return F.linear(x.mean((2, 3)), sd["fc.weight"], sd["fc.bias"])


@pytest.fixture(scope="module")
def tv_regnet() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return torchvision_regnet_sd(PARAMS, NUM_CLASSES)


def _new_regnet() -> RegNet:
    torch.manual_seed(1)
    return RegNet(PARAMS, num_classes=NUM_CLASSES).eval()


def test_torchvision_regnet_keys_land_where_they_act(tv_regnet):
    model = _new_regnet()
    report = load_pretrained(model, tv_regnet, source="torchvision")
    assert report.ok and len(report.loaded) == len(model.state_dict()) == len(tv_regnet)
    block = model.stages[1][0]
    assert torch.equal(block.conv2.conv.weight, tv_regnet["trunk_output.block2.block2-0.f.b.0.weight"])
    assert torch.equal(block.se.reduce.bias, tv_regnet["trunk_output.block2.block2-0.f.se.fc1.bias"])
    assert torch.equal(block.shortcut.bn.running_var, tv_regnet["trunk_output.block2.block2-0.proj.1.running_var"])
    assert torch.equal(model.head.fc.weight, tv_regnet["fc.weight"])
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), torchvision_regnet_forward(tv_regnet, PARAMS, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("source", "rename"), [("timm", torchvision_to_timm_regnet),
                                                 ("pycls", torchvision_to_pycls_regnet)])
def test_timm_and_pycls_regnet_names_give_the_same_model(tv_regnet, source, rename):
    reference = _new_regnet()
    load_pretrained(reference, tv_regnet, source="torchvision")
    foreign = rename(tv_regnet)
    assert "s2.b1.conv2.conv.weight" in foreign if source == "timm" else "s2.b1.f.b_bn.running_var" in foreign
    model = _new_regnet()
    report = load_pretrained(model, foreign, source=source, bgr_to_rgb=False)
    assert report.ok
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_pycls_checkpoint_is_unwrapped_and_flipped_from_bgr(tv_regnet):
    pycls = torchvision_to_pycls_regnet(tv_regnet)
    checkpoint = {"epoch": 99, "model_state": {f"module.{k}": v for k, v in pycls.items()}, "optimizer_state": {}}
    model = _new_regnet()
    report = load_pretrained(model, checkpoint, source="pycls")
    assert report.ok
    assert torch.equal(model.stem.conv.weight, pycls["stem.conv.weight"].flip(1))  # BGR -> RGB


def test_mismatches_are_reported_and_strict_loading_changes_nothing(tv_regnet):
    broken = dict(tv_regnet)
    broken["fc.weight"] = torch.randn(NUM_CLASSES + 1, broken["fc.weight"].shape[1])
    broken["trunk_output.block9.block9-0.f.a.0.weight"] = torch.randn(1)
    del broken["stem.1.running_var"]
    model = _new_regnet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="weights do not fit") as error:
        load_pretrained(model, broken, source="torchvision")
    message = str(error.value)
    assert "stem.bn.running_var" in message
    assert "trunk_output.block9.block9-0.f.a.0.weight -> stages.8.0.conv1.conv.weight" in message
    assert "head.fc.weight: (7, " in message and "skip_classifier=True" in message
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())

    report = load_pretrained(model, broken, source="torchvision", strict=False)
    assert not report.ok
    assert report.missing == ["stem.bn.running_var"]
    assert [k for k, _, _ in report.mismatched] == ["head.fc.weight"]
    assert len(report.unexpected) == 1
    assert torch.equal(model.stem.conv.weight, tv_regnet["stem.0.weight"])


def test_skip_classifier_for_fine_tuning(tv_regnet):
    model = RegNet(PARAMS, num_classes=3)
    head_before = model.head.fc.weight.clone()
    report = load_pretrained(model, tv_regnet, source="torchvision", skip_classifier=True)
    assert report.ok and sorted(report.skipped) == ["head.fc.bias", "head.fc.weight"]
    assert torch.equal(model.head.fc.weight, head_before)


def test_state_dicts_load_from_pth_and_safetensors_files(tv_regnet, tmp_path):
    from safetensors.torch import save_file

    torch.save({"state_dict": tv_regnet}, tmp_path / "w.pth")
    save_file(tv_regnet, str(tmp_path / "w.safetensors"))
    for path in (tmp_path / "w.pth", tmp_path / "w.safetensors"):
        model = _new_regnet()
        assert load_pretrained(model, path, source="torchvision").ok
        assert torch.equal(model.stem.bn.bias, tv_regnet["stem.1.bias"])


def torchvision_resnet_sd(block: str, depths: tuple[int, ...], num_classes: int) -> dict[str, torch.Tensor]:
    expansion = 4 if block == "bottleneck" else 1
    sd = {"conv1.weight": _t(64, 3, 7, 7), **_bn("bn1", 64)}
    in_ch = 64
    for i, (depth, width) in enumerate(zip(depths, (64, 128, 256, 512))):
        for j in range(depth):
            p, out = f"layer{i + 1}.{j}", width * expansion
            if block == "bottleneck":
                shapes = [(width, in_ch, 1, 1), (width, width, 3, 3), (out, width, 1, 1)]
            else:
                shapes = [(width, in_ch, 3, 3), (out, width, 3, 3)]
            for k, shape in enumerate(shapes, start=1):
                sd |= {f"{p}.conv{k}.weight": _t(*shape), **_bn(f"{p}.bn{k}", shape[0])}
            if j == 0 and (i > 0 or in_ch != out):
                sd |= {f"{p}.downsample.0.weight": _t(out, in_ch, 1, 1), **_bn(f"{p}.downsample.1", out)}
            in_ch = out
    return sd | {"fc.weight": _t(num_classes, in_ch), "fc.bias": _t(num_classes)}


def torchvision_resnet_forward(sd: dict, block: str, depths: tuple[int, ...], x: torch.Tensor) -> torch.Tensor:
    x = F.relu(_bn_eval(F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), sd, "bn1"))
    x = F.max_pool2d(x, 3, 2, 1)
    for i, depth in enumerate(depths):
        for j in range(depth):
            p, stride = f"layer{i + 1}.{j}", 2 if i > 0 and j == 0 else 1
            if block == "bottleneck":
                y = F.relu(_bn_eval(F.conv2d(x, sd[f"{p}.conv1.weight"]), sd, f"{p}.bn1"))
                y = F.relu(_bn_eval(F.conv2d(y, sd[f"{p}.conv2.weight"], stride=stride, padding=1), sd, f"{p}.bn2"))
                y = _bn_eval(F.conv2d(y, sd[f"{p}.conv3.weight"]), sd, f"{p}.bn3")
            else:
                y = F.relu(_bn_eval(F.conv2d(x, sd[f"{p}.conv1.weight"], stride=stride, padding=1), sd, f"{p}.bn1"))
                y = _bn_eval(F.conv2d(y, sd[f"{p}.conv2.weight"], padding=1), sd, f"{p}.bn2")
            if f"{p}.downsample.0.weight" in sd:
                x = _bn_eval(F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=stride), sd, f"{p}.downsample.1")
            x = F.relu(y + x)
    return F.linear(x.mean((2, 3)), sd["fc.weight"], sd["fc.bias"])


@pytest.mark.parametrize(("block", "cls"), [("basic", BasicBlock), ("bottleneck", Bottleneck)])
@pytest.mark.parametrize("source", ["torchvision", "timm"])
def test_resnet_from_torchvision_and_timm_names(block, cls, source):
    torch.manual_seed(0)
    depths = (1, 2, 1, 1)
    sd = torchvision_resnet_sd(block, depths, NUM_CLASSES)
    model = ResNet(cls, depths, num_classes=NUM_CLASSES).eval()
    report = load_pretrained(model, sd, source=source)
    assert report.ok and len(report.loaded) == len(sd)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), torchvision_resnet_forward(sd, block, depths, x), atol=1e-4, rtol=1e-4)


def torchvision_densenet_sd(depths: tuple[int, ...], growth: int, num_classes: int, legacy: bool) -> dict:
    sd = {"features.conv0.weight": _t(2 * growth, 3, 7, 7), **_bn("features.norm0", 2 * growth)}
    ch = 2 * growth
    for i, depth in enumerate(depths, start=1):
        for j in range(1, depth + 1):
            p = f"features.denseblock{i}.denselayer{j}"
            names = ("norm.1", "conv.1", "norm.2", "conv.2") if legacy else ("norm1", "conv1", "norm2", "conv2")
            n1, c1, n2, c2 = names
            sd |= {**_bn(f"{p}.{n1}", ch), f"{p}.{c1}.weight": _t(4 * growth, ch, 1, 1),
                   **_bn(f"{p}.{n2}", 4 * growth), f"{p}.{c2}.weight": _t(growth, 4 * growth, 3, 3)}
            ch += growth
        if i < len(depths):
            sd |= {**_bn(f"features.transition{i}.norm", ch),
                   f"features.transition{i}.conv.weight": _t(ch // 2, ch, 1, 1)}
            ch //= 2
    head = {"classifier.weight": _t(num_classes, ch), "classifier.bias": _t(num_classes)}
    return sd | _bn("features.norm5", ch) | head


@pytest.mark.parametrize("legacy", [False, True])
def test_densenet121_from_torchvision_names(legacy):
    with torch.device("meta"):
        model = create("densenet121")
    reference = torchvision_densenet_sd((6, 12, 24, 16), 32, 1000, legacy)
    sd = {k: torch.empty(v.shape, device="meta") for k, v in reference.items()}
    converted, report = convert_state_dict(sd, model, source="torchvision")
    assert report.ok and len(converted) == len(model.state_dict())
    assert "stages.3.block.layers.15.conv2.weight" in converted and "head.norm.0.running_var" in converted


def test_equivalent_model_names():
    assert equivalent_model("torchvision", "regnet_y_800mf") == ("regnety_008", {"group_rounding": "torchvision"})
    assert equivalent_model("pycls", "RegNetX-1.6GF") == ("regnetx_016", {})
    assert equivalent_model("timm", "regnety_320") == ("regnety_320", {})
    assert equivalent_model("timm", "resnet50") == ("resnet50", {})
    with pytest.raises(ValueError, match="no epochal equivalent"):
        equivalent_model("torchvision", "vit_b_16")
    with pytest.raises(ValueError, match="source must be one of"):
        equivalent_model("keras", "resnet50")


def test_unsupported_family_is_a_clear_error():
    with pytest.raises(ValueError, match="no converter for family 'vgg'"):
        load_pretrained(create("vgg16_bn_cifar"), {}, source="torchvision")


def test_read_state_dict_refuses_pickled_code_with_the_conversion_hint(tmp_path):
    from torch import nn

    torch.save(nn.Linear(2, 2), tmp_path / "module.pth")
    with pytest.raises(ValueError, match="can run any code.*convert_trusted_checkpoint") as info:
        read_state_dict(tmp_path / "module.pth")
    assert "weights_only=False" not in str(info.value)
