"""Batched augmentations: shapes, value ranges, determinism under a seed, and known cases."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from epochal.data.augment import (
    AUGMENTATIONS,
    AlternatingFlip,
    BatchContext,
    CenterCrop,
    ColorJitter,
    Compose,
    CutMix,
    Cutout,
    Flip,
    Lighting,
    MixUp,
    Normalize,
    RandomResizedCrop,
    Resize,
    RotateScale,
    Translate,
    build_augmentations,
    eval_transform,
    parse_augmentation,
    predict_tta,
    shift_images,
    tta_views,
)
from epochal.data.augment.color import IMAGENET_EIGVAL, IMAGENET_EIGVEC, lighting_offset
from epochal.data.base import batch_generator

N, C, H, W = 6, 3, 12, 10


def _images(seed=0):
    return torch.rand(N, C, H, W, generator=torch.Generator().manual_seed(seed))


def _ctx(seed=0, epoch=0, index=0, num_classes=4):
    return BatchContext(
        batch_generator(seed, epoch, index),
        epoch=epoch,
        indices=torch.arange(N) + 10,
        seed=seed,
        num_classes=num_classes,
    )


TARGETS = torch.tensor([0, 1, 2, 3, 0, 1])
SPECS = [
    "flip",
    "alternating_flip",
    "translate(2)",
    "random_resized_crop(8, scale=(0.2, 1.0))",
    "rotate_scale(30, scale=(0.8, 1.2))",
    "resize(6)",
    "center_crop(8)",
    "lighting",
    "color_jitter(hue=0.1)",
    "cutout(4)",
    "mixup(0.4)",
    "cutmix",
]


def test_every_registered_augmentation_is_covered():
    assert {parse_augmentation(s).name for s in SPECS} == set(AUGMENTATIONS)


@pytest.mark.parametrize("spec", SPECS)
def test_shapes_ranges_and_determinism(spec):
    augmentation = parse_augmentation(spec)
    images = _images()
    out, targets = augmentation(images, TARGETS, _ctx())
    again, targets_again = augmentation(images, TARGETS, _ctx())
    other, _ = augmentation(images, TARGETS, _ctx(index=1))
    assert out.dtype == torch.float32 and out.shape[:2] == (N, C)
    expected_hw = {"random_resized_crop": (8, 8), "resize": (6, 6), "center_crop": (8, 8)}.get(
        augmentation.name, (H, W)
    )
    assert tuple(out.shape[2:]) == expected_hw
    assert torch.equal(out, again) and torch.equal(targets, targets_again)
    if augmentation.name not in ("resize", "center_crop", "alternating_flip"):
        assert not torch.equal(out, other)  # another batch index draws other parameters
    if augmentation.name != "lighting":  # lighting adds its exact offset, unclamped (as AlexNet)
        assert out.min() >= -1e-6 and out.max() <= 1 + 1e-6
    assert torch.equal(images, _images())  # inputs are not modified in place


def test_flip_known_cases():
    images = _images()
    assert torch.equal(Flip(p=1.0).apply(images, _ctx()), torch.flip(images, dims=[3]))
    assert torch.equal(Flip(p=0.0).apply(images, _ctx()), images)
    out = Flip(p=0.5).apply(images, _ctx())
    for i in range(N):
        assert torch.equal(out[i], images[i]) or torch.equal(out[i], images[i].flip(2))


def test_alternating_flip_alternates_per_image():
    images = torch.rand(200, 1, 2, 3)
    ctx = [
        BatchContext(batch_generator(0, e, 0), epoch=e, indices=torch.arange(200), seed=5) for e in (0, 1, 2)
    ]
    flipped = [(AlternatingFlip().apply(images, c) != images).flatten(1).any(1) for c in ctx]
    assert torch.equal(flipped[0], ~flipped[1]) and torch.equal(flipped[0], flipped[2])
    assert 70 < int(flipped[0].sum()) < 130  # about half
    with pytest.raises(ValueError, match="indices"):
        AlternatingFlip().apply(images, BatchContext(batch_generator(0, 0, 0)))


def test_translate_matches_a_manual_pad_and_crop():
    images = _images()
    dy, dx = torch.tensor([0, 1, -2, 2, 0, -1]), torch.tensor([0, -1, 2, 0, 2, -2])
    out = shift_images(images, dy, dx, mode="zeros")
    padded = F.pad(images, (2, 2, 2, 2))
    for i in range(N):
        y, x = 2 + int(dy[i]), 2 + int(dx[i])
        assert torch.equal(out[i], padded[i, :, y : y + H, x : x + W])
    assert torch.equal(Translate(pad=0).apply(images, _ctx()), images)
    assert torch.equal(out[0], images[0])


def test_random_resized_crop_of_the_whole_image_is_the_identity():
    images = _images()
    full = RandomResizedCrop(size=(H, W), scale=(1.0, 1.0), ratio=(W / H, W / H))
    assert torch.allclose(full.apply(images, _ctx()), images, atol=1e-5)


def test_random_resized_crop_samples_the_requested_area():
    from epochal.data.augment.geometric import _crop_boxes

    boxes = _crop_boxes(2000, 100, 100, (0.25, 0.5), (0.5, 2.0), torch.Generator().manual_seed(0))
    area = boxes[:, 2] * boxes[:, 3] / 10_000
    assert area.min() >= 0.23 and area.max() <= 0.52
    assert (boxes[:, 0] + boxes[:, 2] <= 100).all() and (boxes[:, 1] + boxes[:, 3] <= 100).all()
    ratio = boxes[:, 2] / boxes[:, 3]
    assert ratio.min() >= 0.45 and ratio.max() <= 2.2


def torchvision_fallback(height, width, ratio=(3 / 4, 4 / 3)):
    """``RandomResizedCrop.get_params``' fallback, as torchvision writes it, as ``(x0, y0, w, h)``."""
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:  # whole image
        w = width
        h = height
    i = (height - h) // 2
    j = (width - w) // 2
    return j, i, w, h


@pytest.mark.parametrize(("height", "width", "expected"), [
    # wide: h = 32, w = round(32 * 4/3) = round(42.67) = 43, x0 = (200 - 43) // 2 = 78
    (32, 200, (78, 0, 43, 32)),
    # tall: w = 32, h = round(32 / (3/4)) = 43, y0 = (200 - 43) // 2 = 78
    (200, 32, (0, 78, 32, 43)),
    # w = round(31 * 4/3) = round(41.33) = 41, x0 = (333 - 41) // 2 = 146
    (31, 333, (146, 0, 41, 31)),
    # h = round(7 / 0.75) = round(9.33) = 9, y0 = (100 - 9) // 2 = 45
    (100, 7, (0, 45, 7, 9)),
    # 97 / 64 = 1.52 > 4/3: w = round(64 * 4/3) = round(85.33) = 85, x0 = (97 - 85) // 2 = 6
    (64, 97, (6, 0, 85, 64)),
])
def test_random_resized_crop_fallback_is_torchvisions_centred_box(height, width, expected):
    from epochal.data.augment.geometric import _crop_boxes

    # With scale 1 every candidate has the image's area, so its short side exceeds the image's short
    # side (e.g. 32 x 200: h = sqrt(6400 / a) >= sqrt(6400 * 3/4) = 69 > 32): all ten tries fail.
    assert torchvision_fallback(height, width) == expected
    boxes = _crop_boxes(64, height, width, (1.0, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(1))
    assert {tuple(int(v) for v in box) for box in boxes} == {expected}


def test_random_resized_crop_whole_image_fallback():
    from epochal.data.augment.geometric import _crop_boxes

    # a square in the allowed range: every box, found or fallen back, is the whole image
    boxes = _crop_boxes(200, 50, 50, (1.0, 1.0), (0.5, 2.0), torch.Generator().manual_seed(2))
    assert {tuple(int(v) for v in box) for box in boxes} == {torchvision_fallback(50, 50, (0.5, 2.0))}


def test_random_resized_crop_resamples_the_centred_fallback_box():
    images = torch.rand(3, 3, 32, 200, generator=torch.Generator().manual_seed(0))
    crop = RandomResizedCrop(size=(32, 43), scale=(1.0, 1.0))
    # output size = box size: bilinear sampling lands on pixel centres, so the crop is exact
    assert torch.allclose(crop.apply(images, _ctx()), images[:, :, :, 78:121], atol=1e-5)


def test_random_resized_crop_fallback_share_and_found_boxes_stay_uniform():
    from epochal.data.augment.geometric import _crop_boxes

    boxes = _crop_boxes(4000, 32, 200, (0.08, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(0))
    fallback = (boxes == torch.tensor([78.0, 0.0, 43.0, 32.0])).all(dim=1)
    # about 37% of 32 x 200 crops find no box in ten tries (3.7 standard deviations either side)
    assert 0.34 < fallback.float().mean() < 0.41
    found = boxes[~fallback]
    assert (found[:, 0] + found[:, 2] <= 200).all() and (found[:, 1] + found[:, 3] <= 32).all()
    ratio = found[:, 2] / found[:, 3]
    assert ratio.min() >= 0.7 and ratio.max() <= 1.4
    # found boxes sit uniformly at random: the left edge's fraction of its free range has mean 1/2
    assert (found[:, 0] / (200 - found[:, 2])).mean() == pytest.approx(0.5, abs=0.03)
    shorter = found[found[:, 3] < 32]
    assert (shorter[:, 1] / (32 - shorter[:, 3])).mean() == pytest.approx(0.5, abs=0.04)


def test_rotate_scale_identity_and_constant_images():
    images = _images()
    assert torch.allclose(RotateScale(degrees=0.0, scale=(1.0, 1.0)).apply(images, _ctx()), images, atol=1e-5)
    constant = torch.full((N, C, H, W), 0.3)
    assert torch.allclose(RotateScale(degrees=45.0).apply(constant, _ctx()), constant, atol=1e-6)


def test_rotate_by_180_degrees_is_a_double_flip():
    images = torch.rand(2, 3, 8, 8)
    half_turn = RotateScale(degrees=180.0)
    ctx = BatchContext(torch.Generator())
    ctx.uniform = lambda n, low, high: torch.full((n,), float(high))  # pin the drawn angle to 180
    out = half_turn.apply(images, ctx)
    assert torch.allclose(out, images.flip(2).flip(3), atol=1e-5)


def test_lighting_adds_exactly_the_computed_offset():
    images = _images()
    out = Lighting(alphastd=0.1).apply(images, _ctx(seed=3))
    alpha = torch.randn(N, 3, generator=batch_generator(3, 0, 0)) * 0.1
    offset = lighting_offset(alpha, torch.tensor(IMAGENET_EIGVAL), torch.tensor(IMAGENET_EIGVEC))
    expected_c0 = sum(IMAGENET_EIGVEC[0][j] * alpha[:, j] * IMAGENET_EIGVAL[j] for j in range(3))
    assert torch.allclose(offset[:, 0], expected_c0, atol=1e-7)
    assert torch.allclose(out - images, offset[:, :, None, None].expand_as(images), atol=1e-6)


def test_color_jitter_identity_gray_invariance_and_brightness():
    images = _images()
    assert torch.allclose(ColorJitter(0, 0, 0, 0).apply(images, _ctx()), images, atol=1e-6)
    gray = torch.rand(N, 1, H, W).expand(N, 3, H, W).contiguous()
    out = ColorJitter(brightness=0, contrast=0, saturation=0.9, hue=0.4).apply(gray, _ctx())
    assert torch.allclose(out, gray, atol=1e-5)
    dark = torch.full((N, C, H, W), 0.25)
    out = ColorJitter(brightness=0.5, contrast=0, saturation=0).apply(dark, _ctx())
    factors = 0.5 + torch.rand(N, generator=batch_generator(0, 0, 0))
    assert torch.allclose(out[:, 0, 0, 0], 0.25 * factors, atol=1e-6)


def test_cutout_fills_one_square_per_image():
    images = torch.zeros(N, C, 20, 20)
    out = Cutout(size=4, fill=1.0).apply(images, _ctx())
    filled = (out[:, 0] == 1).flatten(1).sum(1)
    assert (filled <= 16).all() and (filled >= 4).all()
    assert (out[:, 0] == out[:, 2]).all()
    assert torch.equal(Cutout(size=4, p=0.0).apply(images, _ctx()), images)


def test_mixup_preserves_batch_sums_and_makes_soft_targets():
    images = _images()
    out, targets = MixUp(alpha=0.4)(images, TARGETS, _ctx())
    assert targets.shape == (N, 4) and targets.dtype == torch.float32
    assert torch.allclose(targets.sum(1), torch.ones(N))
    assert torch.allclose(targets.sum(0), F.one_hot(TARGETS, 4).float().sum(0), atol=1e-6)
    assert torch.allclose(out.sum(0), images.sum(0), atol=1e-5)
    same = torch.rand(1, C, H, W).expand(N, C, H, W)
    assert torch.allclose(MixUp()(same, TARGETS, _ctx())[0], same)
    skipped, soft = MixUp(p=0.0)(images, TARGETS, _ctx())
    assert torch.equal(skipped, images) and torch.equal(soft, F.one_hot(TARGETS, 4).float())
    with pytest.raises(ValueError, match="num_classes"):
        MixUp()(images, TARGETS, BatchContext(batch_generator(0, 0, 0)))


def test_cutmix_targets_follow_the_pasted_area():
    images = torch.arange(N, dtype=torch.float32).view(N, 1, 1, 1).expand(N, C, 16, 16) / 10
    labels = torch.arange(N)  # one class per sample: a target's own weight is its kept area
    for seed in range(5):
        out, targets = CutMix(alpha=1.0)(images, labels, _ctx(seed=seed, num_classes=N))
        assert torch.allclose(targets.sum(0), torch.ones(N), atol=1e-6)
        for i in range(N):
            own = (out[i, 0] == images[i, 0, 0, 0]).float().mean()
            assert math.isclose(float(targets[i, i]), float(own), abs_tol=1e-6)


def test_specs_parse_build_and_round_trip():
    pipeline = build_augmentations(["flip", {"name": "translate", "pad": 3}, "cutout(size=5, fill=0.0)"])
    assert [a.name for a in pipeline] == ["flip", "translate", "cutout"]
    spec = json.loads(json.dumps(pipeline.to_spec()))
    rebuilt = Compose(spec)
    images = _images()
    assert torch.equal(pipeline(images, TARGETS, _ctx())[0], rebuilt(images, TARGETS, _ctx())[0])
    assert parse_augmentation("random_resized_crop(32, scale=[0.35, 1])").scale == (0.35, 1)
    assert len(build_augmentations(None)) == 0 and len(build_augmentations("flip")) == 1


@pytest.mark.parametrize(
    "spec, message",
    [
        ("flipp", "did you mean 'flip'"),
        ({"pad": 2}, "'name'"),
        ("translate(padd=2)", "did you mean 'pad'"),
        ("translate(2, 'reflect', 3)", "at most 2"),
        ("flip(p=lambda: 1)", "name\\(value"),
        (3, "str, dict"),
        ("flip(p=1.5)", "probability"),
        ("translate(mode='wrap')", "mode="),
    ],
)
def test_bad_specs_are_explained(spec, message):
    with pytest.raises((ValueError, TypeError), match=message):
        parse_augmentation(spec)


def test_progressive_size_reaches_the_crops():
    pipeline = build_augmentations(["flip", "random_resized_crop(8)"])
    assert pipeline.set_image_size(6)
    assert pipeline(_images(), TARGETS, _ctx())[0].shape[2:] == (6, 6)
    assert not build_augmentations(["flip"]).set_image_size(6)


def test_normalize_and_inverse():
    images = _images()
    norm = Normalize((0.5, 0.4, 0.3), (0.2, 0.1, 0.5))
    out = norm(images)
    assert torch.allclose(out[:, 1], (images[:, 1] - 0.4) / 0.1, atol=1e-5)
    assert torch.allclose(norm.inverse(out), images, atol=1e-6)
    with pytest.raises(ValueError, match="std > 0"):
        Normalize((0.5,), (0.0,))


def test_eval_transform_resizes_the_shorter_side_and_centre_crops():
    images = _images()
    out, _ = eval_transform(8, crop_pct=0.8)(images, None, _ctx())  # shorter side 10 -> 10, crop 8
    assert out.shape[2:] == (8, 8)
    assert torch.allclose(out, images[:, :, 2:10, 1:9], atol=1e-6)
    crop = CenterCrop(4).apply(images, _ctx())
    assert torch.equal(crop, images[:, :, 4:8, 3:7])
    assert Resize(5, shorter_side=True).output_size(12, 10) == (6, 5)
    assert len(eval_transform(None)) == 0


def test_tta_views_and_prediction():
    images = _images()
    views = tta_views(images, flip=True, translate=1)
    assert len(views) == 6 and torch.equal(views[1], images.flip(3))
    assert torch.equal(views[2][:, :, :-1, :-1], images[:, :, 1:, 1:])
    assert len(tta_views(images, flip=False)) == 1
    mean = predict_tta(lambda x: x.mean(dim=(1, 2, 3))[:, None], images, flip=True)
    assert torch.allclose(mean[:, 0], images.mean(dim=(1, 2, 3)))


def test_tta_with_airbench_weights():
    """translate_weight=0.5: the image and its mirror 1/4 each, the four shifted views 1/8 each."""
    images = _images()
    corner = lambda x: x[:, :1, 0, 0]  # noqa: E731 - a "model" that tells the views apart
    views = tta_views(images, flip=True, translate=1)
    expected = sum(w * corner(v) for w, v in zip([1 / 4, 1 / 4, 1 / 8, 1 / 8, 1 / 8, 1 / 8], views))
    torch.testing.assert_close(predict_tta(corner, images, flip=True, translate=1, translate_weight=0.5), expected)
    equal = predict_tta(corner, images, flip=True, translate=1)
    torch.testing.assert_close(equal, sum(corner(v) for v in views) / 6)
    plain = predict_tta(corner, images, flip=False, translate=0, translate_weight=0.5)
    assert torch.equal(plain, corner(images))
    with pytest.raises(ValueError, match="translate_weight=2"):
        predict_tta(corner, images, translate=1, translate_weight=2)


def test_tta_never_keeps_an_output_across_calls():
    """A model compiled with CUDA graphs writes every call's output into one tensor: each view's
    output must be used before the next call (stacking them gave six copies of the last)."""
    images = _images()

    class OneBuffer:
        out = None

        def __call__(self, x):
            value = x[:, :1, 0, 0].to(torch.bfloat16)
            self.out = value.clone() if self.out is None else self.out.copy_(value)
            return self.out

    views = tta_views(images, flip=True, translate=1)
    weights = [1 / 4, 1 / 4, 1 / 8, 1 / 8, 1 / 8, 1 / 8]
    expected = sum(w * v[:, :1, 0, 0].to(torch.bfloat16).float() for w, v in zip(weights, views))
    out = predict_tta(OneBuffer(), images, flip=True, translate=1, translate_weight=0.5)
    torch.testing.assert_close(out.float(), expected)
    assert out.dtype == torch.float32  # bf16 outputs are summed in float32


def test_tta_views_without_flip_shift_the_image_itself_both_ways():
    images = _images()
    views = tta_views(images, flip=False, translate=1)
    assert len(views) == 3 and torch.equal(views[0], images)
    assert torch.equal(views[1][:, :, :-1, :-1], images[:, :, 1:, 1:])
    assert torch.equal(views[2][:, :, 1:, 1:], images[:, :, :-1, :-1])  # not the shifted view shifted back


@pytest.mark.parametrize(
    "mode, torch_mode", [("reflect", "reflect"), ("replicate", "replicate"), ("zeros", "constant")]
)
def test_shift_matches_torch_padding_for_every_border(mode, torch_mode):
    images = _images()
    dy, dx = torch.tensor([3, -3, 0, 1, -2, 2]), torch.tensor([-3, 3, 1, 0, 2, -2])
    out = shift_images(images, dy, dx, mode=mode)
    padded = F.pad(images, (3, 3, 3, 3), mode=torch_mode)
    for i in range(N):
        y, x = 3 + int(dy[i]), 3 + int(dx[i])
        assert torch.equal(out[i], padded[i, :, y : y + H, x : x + W])


def test_fused_pixel_moves_equal_one_by_one_and_work_on_uint8():
    pipeline = Compose(
        ["flip", "translate(3, mode='zeros')", "center_crop(7)", "alternating_flip", "translate(1)"]
    )
    images = _images()
    fused, _ = pipeline(images, TARGETS, _ctx())
    ctx = _ctx()
    one_by_one = images
    for augmentation in pipeline:
        one_by_one = augmentation.apply(one_by_one, ctx)
    assert fused.shape == (N, C, 7, 7) and torch.equal(fused, one_by_one)
    as_bytes = (images * 255).round().to(torch.uint8)
    moved, _ = pipeline(as_bytes, TARGETS, _ctx())
    assert moved.dtype == torch.uint8 and torch.equal(
        moved.float() / 255, pipeline(as_bytes.float() / 255, TARGETS, _ctx())[0]
    )
    moves, rest = Compose(["flip", "translate", "cutout", "flip"]).split_pixel_moves()
    assert [a.name for a in moves] == ["flip", "translate"] and [a.name for a in rest] == ["cutout", "flip"]


def test_remap_sends_only_the_row_and_column_maps_to_the_device(monkeypatch):
    """At 224 px the flat (N, H*W) index is 100 MB per batch of 256; built on the host it capped the
    GPU loader near 2,500 img/s. Only the (N, H') and (N, W') maps may cross to the device."""
    import importlib

    remap_module = importlib.import_module("epochal.data.augment.remap")  # the package re-exports remap()
    sent = []

    def recording(tensor, device):
        sent.append(tensor.numel())
        return tensor.to(device)

    monkeypatch.setattr(remap_module, "host_to_device", recording)
    images = torch.rand(4, 3, 20, 30)
    flipped = remap_module.Flip(p=1.0)(images, None, BatchContext(torch.Generator().manual_seed(0)))[0]
    assert torch.equal(flipped, images.flip(3))
    assert sent and max(sent) <= 4 * 30  # the column map, not 4 x 20 x 30 indices
