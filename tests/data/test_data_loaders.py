"""Loaders: exact resume, equal results for every residency, DDP shares, resizing, tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from epochal.data.augment import Normalize
from epochal.data.base import EpochLoader
from epochal.data.folders import image_folder_items
from epochal.data.loaders import ImageLoader, TensorLoader
from epochal.data.packed import pack_image_cache

IMAGES = torch.randint(0, 256, (50, 3, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
TARGETS = torch.arange(50) % 5
AUGMENT = ["flip", "translate(2)", "random_resized_crop(10, scale=(0.5, 1))", "cutout(3)", "mixup(0.4)"]


def _loader(**kw):
    settings = {"batch_size": 8, "augment": AUGMENT, "normalize": Normalize(), "seed": 3, "num_classes": 5}
    settings.update(kw)
    return ImageLoader(IMAGES, TARGETS, **settings)


def _same(a, b):
    return all(torch.equal(x, y) and torch.equal(s, t) for (x, s), (y, t) in zip(a, b)) and len(a) == len(b)


def test_resume_mid_epoch_reproduces_the_remaining_batches():
    loader = _loader()
    assert isinstance(loader, EpochLoader)
    full = list(loader.iter_epoch(2))
    assert len(full) == len(loader) == 7
    assert _same(full[4:], list(_loader().iter_epoch(2, start=4)))
    assert not torch.equal(full[0][0], next(iter(loader.iter_epoch(3)))[0])
    x, y = full[0]
    assert x.shape == (8, 3, 10, 10) and y.shape == (8, 5) and x.dtype == torch.float32
    with pytest.raises(ValueError, match="start=9"):
        list(loader.iter_epoch(0, start=9))


def test_streaming_and_resident_give_identical_batches(image_tree):
    packed = pack_image_cache(image_folder_items(image_tree), None, workers=0, progress=False)
    common = {"batch_size": 5, "augment": ["flip", "translate(1)"], "normalize": Normalize(), "seed": 1}
    resident = ImageLoader(packed, packed.targets, residency="device", **common)
    stream = ImageLoader(packed, packed.targets, residency="stream", prefetch=2, **common)
    assert resident.residency == "device" and stream.residency == "stream"
    assert _same(list(resident.iter_epoch(1)), list(stream.iter_epoch(1)))
    assert _same(list(resident.iter_epoch(1, start=3)), list(stream.iter_epoch(1, start=3)))
    first = next(iter(stream.iter_epoch(0)))  # abandoning a streaming epoch early is fine
    assert first[0].shape == (5, 3, 10, 12)


def test_sequential_loader_is_exact_across_ranks():
    shares = [
        ImageLoader(IMAGES, TARGETS, batch_size=7, shuffle=False, rank=r, world_size=3) for r in range(3)
    ]
    seen = torch.cat([y for loader in shares for _, y in loader])
    assert len(seen) == 50
    rows = [loader.rows[loader.sampler.indices(0)] for loader in shares]
    assert sorted(torch.cat(rows).tolist()) == list(range(50))
    pixels = torch.cat([x for x, _ in shares[0]])
    assert torch.allclose(pixels * 255, IMAGES[0::3].float(), atol=1e-4)


def test_training_ranks_get_disjoint_shares_and_different_augmentation():
    loaders = [_loader(augment=["flip"], rank=r, world_size=2, normalize=None) for r in range(2)]
    rows = [loader.rows[loader.sampler.indices(0)] for loader in loaders]
    assert not set(rows[0].tolist()) & set(rows[1].tolist())
    assert len(loaders[0]) == len(loaders[1])


def test_balanced_loader_draws_balanced_batches():
    targets = torch.tensor([0] * 40 + [1] * 10)
    loader = ImageLoader(IMAGES, targets, batch_size=10, balance="oversample")
    labels = torch.cat([y for _, y in loader.iter_epoch(0)])
    assert torch.bincount(labels).tolist() == [40, 40]


def test_progressive_resizing_and_output_shape():
    loader = _loader(augment=["flip"], image_size=None)
    assert loader.output_shape() == (3, 12, 12)
    loader.set_image_size(6)
    assert next(iter(loader.iter_epoch(0)))[0].shape == (8, 3, 6, 6)
    cropper = _loader(augment=["random_resized_crop(10)"])
    cropper.set_image_size((8, 6))
    assert cropper.output_shape() == (3, 8, 6)


def test_with_rows_and_relabelled_targets():
    loader = _loader(augment=[], normalize=None, shuffle=False, batch_size=4)
    small = loader.with_rows([3, 7, 9], row_targets=[4, 4, 4])
    ((x, y),) = list(small.iter_epoch(0))
    assert y.tolist() == [4, 4, 4]
    assert torch.allclose(x * 255, IMAGES[[3, 7, 9]].float(), atol=1e-4)
    with pytest.raises(ValueError, match="row_targets"):
        loader.with_rows([1, 2], row_targets=[0])
    with pytest.raises(ValueError, match="negative"):
        ImageLoader(IMAGES, TARGETS - 1, rows=[0, 1, 5])


def test_sample_images_is_a_seeded_unaugmented_normalised_choice_of_rows():
    loader = _loader(rows=list(range(10, 40)))
    norm = Normalize()
    picked = loader.sample_images(12, seed=1)
    assert picked.shape == (12, 3, 12, 12) and torch.equal(picked, loader.sample_images(12, seed=1))
    assert not torch.equal(picked, loader.sample_images(12, seed=2))
    originals = [i for i in range(10, 40) if any(torch.allclose(norm.from_uint8(IMAGES[i]), p) for p in picked)]
    assert len(originals) == 12  # each is one of the loader's rows, unchanged but for normalisation
    assert len(loader.sample_images(100)) == 30  # all rows when there are fewer
    with pytest.raises(ValueError, match="count=0"):
        loader.sample_images(0)


def test_multi_label_targets_are_float_rows():
    hot = (torch.rand(50, 4, generator=torch.Generator().manual_seed(1)) > 0.5).to(torch.uint8)
    loader = ImageLoader(IMAGES, hot, batch_size=16, shuffle=False)
    _x, y = next(iter(loader))
    assert y.dtype == torch.float32 and torch.equal(y, hot[:16].float())
    assert loader.num_classes == 4


def test_channels_last_and_bad_arguments():
    loader = _loader(channels_last=True)
    x, _ = next(iter(loader))
    assert x.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="residency="):
        _loader(residency="disk")
    with pytest.raises(ValueError, match="batch_size=0"):
        _loader(batch_size=0)


def test_tensor_loader_with_tuple_inputs_resumes_exactly():
    cat = torch.randint(0, 4, (30, 2))
    cont = torch.randn(30, 3)
    y = torch.arange(30) % 3
    loader = TensorLoader((cat, cont), y, batch_size=8, seed=5, drop_last=True)
    assert len(loader) == 3
    full = list(loader.iter_epoch(1))
    rest = list(loader.iter_epoch(1, start=1))
    assert all(torch.equal(a[0][0], b[0][0]) and torch.equal(a[1], b[1]) for a, b in zip(full[1:], rest))
    (c, x), t = full[0]
    rows = [int(np.flatnonzero((cont == x[i]).all(1).numpy())[0]) for i in range(8)]
    assert torch.equal(c, cat[rows]) and torch.equal(t, y[rows])
    sequential = TensorLoader(cont, y, batch_size=30, shuffle=False)
    assert torch.equal(next(iter(sequential))[0], cont)
    with pytest.raises(ValueError, match="same length"):
        TensorLoader(cont, y[:5])


def test_uint8_fast_path_equals_the_float_path():
    fast = ImageLoader(
        IMAGES, TARGETS, batch_size=16, augment=["flip", "translate(2)"], normalize=Normalize(), seed=4
    )
    # A no-op colour step forces the float path for the same parameters.
    slow = ImageLoader(
        IMAGES,
        TARGETS,
        batch_size=16,
        augment=["flip", "translate(2)", "color_jitter(0, 0, 0)"],
        normalize=Normalize(),
        seed=4,
    )
    for (a, y), (b, z) in zip(fast.iter_epoch(1), slow.iter_epoch(1)):
        assert torch.allclose(a, b, atol=1e-5) and torch.equal(y, z)


def test_device_none_means_cpu():
    assert ImageLoader(IMAGES, TARGETS, device=None).device == torch.device("cpu")
    assert TensorLoader(torch.zeros(3, 2), torch.zeros(3), device=None).device == torch.device("cpu")


@pytest.mark.parametrize("balance", [None, "oversample"])
def test_batch_positions_are_the_samples_each_batch_holds(balance):
    loader = ImageLoader(IMAGES, TARGETS, batch_size=8, augment=None, seed=4, balance=balance)
    for epoch in (0, 3):
        for index, (images, targets) in enumerate(loader.iter_epoch(epoch)):
            positions = loader.batch_positions(epoch, index)
            assert torch.equal(targets, loader.targets[positions])
            assert torch.allclose(images, IMAGES[loader.rows[positions]].float() / 255)
    tensors = TensorLoader(torch.arange(20.0)[:, None], torch.arange(20), batch_size=6, seed=1)
    for index, (x, _) in enumerate(tensors.iter_epoch(2)):
        assert torch.equal(x[:, 0].long(), tensors.batch_positions(2, index))


def test_fingerprints_change_with_what_the_inputs_depend_on():
    base = dict(batch_size=8, augment=None, seed=3)
    fingerprint = ImageLoader(IMAGES, TARGETS, **base).fingerprint()
    assert fingerprint == ImageLoader(IMAGES, TARGETS, **base).fingerprint()
    other_pixels = IMAGES.clone()
    other_pixels[0, 0, 0, 0] ^= 1
    changed = [
        ImageLoader(other_pixels, TARGETS, **base),
        ImageLoader(IMAGES, TARGETS, rows=list(range(40)), **base),
        ImageLoader(IMAGES, TARGETS, **{**base, "augment": ["flip"]}),
        ImageLoader(IMAGES, TARGETS, **{**base, "seed": 4}),
        ImageLoader(IMAGES, TARGETS, image_size=8, **base),
        ImageLoader(IMAGES, TARGETS, normalize=Normalize(), **base),
    ]
    assert len({fingerprint, *(loader.fingerprint() for loader in changed)}) == 7
    assert not ImageLoader(IMAGES, TARGETS, **base).augmented and changed[2].augmented
    inputs, labels = torch.randn(10, 3), torch.arange(10)
    assert TensorLoader(inputs, labels).fingerprint() == TensorLoader(inputs.clone(), labels).fingerprint()
    assert TensorLoader(inputs, labels).fingerprint() != TensorLoader(inputs + 1, labels).fingerprint()
    assert TensorLoader(inputs, labels, transform=lambda x, y, g: (x, y)).augmented
