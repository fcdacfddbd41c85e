"""Checks on real images: the shared CIFAR-10 JPEG training set (realdata, slow) and the bundled mini set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from epochal.data import image_folder_items, image_folder_loaders, pack_image_cache
from epochal.data.decode import load_rgb_array


@pytest.mark.slow
@pytest.mark.realdata
def test_cifar_jpeg_subset_packs_exactly_and_loads(cifar10_jpeg_dir, tmp_path):
    items = image_folder_items(cifar10_jpeg_dir)
    assert len(items) == 50_000 and len(items.classes) == 10
    subset = items.select(np.arange(0, 50_000, 100))
    packed = pack_image_cache(subset, tmp_path / "cache", workers=2, progress=False)
    assert packed.shape == (500, 3, 32, 32) and not packed.skipped
    rows = torch.tensor([0, 123, 499])
    expected = np.stack([load_rgb_array(subset.paths[i]) for i in rows.tolist()])
    assert np.array_equal(packed.gather(rows).numpy(), expected)
    assert np.bincount(packed.targets).tolist() == [50] * 10


def test_bundled_mini_builds_the_default_loaders():
    from epochal.data import get_dataset

    dls = image_folder_loaders(
        get_dataset("cifar10-mini"),
        valid_pct=0.1,
        batch_size=128,
        workers=0,
        progress=False,
        augment=["flip", "translate(2)"],
        normalize="auto",
    )
    assert dls.info["num_classes"] == 10 and dls.info["input_shape"] == (3, 32, 32)
    assert dls.info["train_size"] == 1800 and dls.info["valid_size"] == 200
    labels = torch.cat([y for _, y in dls.valid])
    assert torch.bincount(labels).tolist() == [20] * 10
    mean = torch.tensor(dls.info["normalize"]["mean"])
    assert ((mean > 0.4) & (mean < 0.55)).all()
