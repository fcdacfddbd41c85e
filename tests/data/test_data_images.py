"""``image_folder_loaders``: the whole path from a messy folder to exact loaders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from epochal.data.decode import BadImageError
from epochal.data.images import image_folder_loaders
from epochal.data.splits import merge_relabelled, relabel_neutral


def _build(root, **kw):
    settings = {"valid_pct": 0.25, "seed": 0, "batch_size": 4, "workers": 0, "progress": False}
    settings.update(kw)
    return image_folder_loaders(root, **settings)


def test_bad_files_are_skipped_and_reported(messy_tree, tmp_path):
    root, bad = messy_tree
    with pytest.warns(UserWarning, match="skipped 4 image file"):
        dls = _build(root, image_size=8, cache_dir=tmp_path / "cache")
    assert dls.info["skipped_files"] == sorted(bad)
    assert dls.classes == ["ant", "bee", "cat"]
    counts = dls.info["all_class_counts"]
    assert counts == {"ant": 10, "bee": 11, "cat": 11}  # 8 + 2 awkward files (+ one full-size source)
    train_counts = torch.bincount(dls.train.targets.cpu(), minlength=3).tolist()
    assert list(dls.info["class_counts"].values()) == train_counts and sum(train_counts) == dls.info["train_size"]
    assert dls.info["train_size"] + dls.info["valid_size"] == 32
    assert dls.info["input_shape"] == (3, 8, 8) and dls.info["num_classes"] == 3
    x, y = next(iter(dls.train.iter_epoch(0)))
    assert x.shape == (4, 3, 8, 8) and y.dtype == torch.long


def test_strict_mode_fails_with_every_bad_path(messy_tree):
    root, bad = messy_tree
    with pytest.raises(BadImageError) as info:
        _build(root, strict=True, image_size=8)
    assert set(info.value.bad) == set(bad)


def test_validation_is_exact_stratified_and_unaugmented(image_tree):
    dls = _build(image_tree, augment=["flip", "cutout(4)"], normalize=None, valid_batch_size=5)
    labels = torch.cat([y for _, y in dls.valid])
    assert sorted(labels.tolist()) == [0, 0, 1, 1, 2, 2]  # 25% of 8 per class
    first = list(dls.valid)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, list(dls.valid)))
    train_rows = set(dls.train.rows.tolist())
    assert not train_rows & set(dls.valid.rows.tolist())
    assert len(dls.train) == 18 // 4  # drop_last


def test_cache_dir_is_reused(image_tree, tmp_path):
    first = _build(image_tree, cache_dir=tmp_path / "cache")
    folder = first.info["cache_dir"]
    shard = next((tmp_path / "cache").rglob("shard-00000.u8"))
    stamp = shard.stat().st_mtime_ns
    second = _build(image_tree, cache_dir=tmp_path / "cache")
    assert second.info["cache_dir"] == folder and shard.stat().st_mtime_ns == stamp


def test_normalize_auto_uses_training_statistics(image_tree):
    dls = _build(image_tree, normalize="auto", augment=[], batch_size=18, drop_last=False)
    x = torch.cat([b for b, _ in dls.train.iter_epoch(0)])
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-2)


def test_neutral_class_is_kept_out_and_relabelled(image_tree):
    dls = _build(image_tree, neutral_class="bee", valid_pct=0.25)
    assert dls.classes == ["ant", "cat"] and dls.info["num_classes"] == 2
    assert dls.info["class_counts"] == {"ant": 6, "cat": 6}  # the training split, model classes only
    neutral_rows = dls.info["neutral_rows"]
    assert len(neutral_rows) == 8
    assert not set(neutral_rows.tolist()) & (set(dls.train.rows.tolist()) | set(dls.valid.rows.tolist()))
    seen = torch.cat([y for _, y in dls.train.iter_epoch(0)]).unique().tolist()
    assert set(seen) <= {0, 1}
    neutral = dls.info["neutral_loader"]
    assert sum(len(x) for x, _ in neutral) == 8
    probs = torch.tensor([[0.95, 0.05]] * 3 + [[0.5, 0.5]] * 5)
    labels, _confident = relabel_neutral(probs, threshold=0.9)
    train_targets = dls.train.all_targets[dls.train.rows].numpy()
    rows, targets = merge_relabelled(dls.train.rows.numpy(), train_targets, np.asarray(neutral_rows), labels)
    bigger = dls.train.with_rows(rows, row_targets=targets)
    assert len(bigger.rows) == len(dls.train.rows) + 3
    with pytest.raises(ValueError, match="neutral_class='dog'"):
        _build(image_tree, neutral_class="dog")


def test_valid_root_balance_and_csv_multi_label(image_tree, tmp_path, make_image):
    for i in range(3):
        make_image(tmp_path / "val" / "ant" / f"{i}.png", 50 + i)
    dls = _build(image_tree, valid_root=tmp_path / "val", balance="undersample")
    assert dls.info["valid_size"] == 3 and dls.info["train_size"] == 24
    (image_tree / "multi.csv").write_text(
        "path,labels\n"
        + "".join(f"{c}/{i:02d}.png,{c} {'x' if i % 2 else ''}\n" for c in ("ant", "bee") for i in range(8))
    )
    multi = _build(image_tree / "multi.csv", batch_size=5)
    assert multi.info["multi_label"] and multi.classes == ["ant", "bee", "x"]
    _, y = next(iter(multi.train.iter_epoch(0)))
    assert y.dtype == torch.float32 and y.shape == (5, 3)


def test_loader_choice_is_checked(image_tree):
    with pytest.raises(ValueError, match="needs a CUDA device"):
        _build(image_tree, loader="gpu")
    with pytest.raises(ValueError, match="loader='disk'"):
        _build(image_tree, loader="disk")
    with pytest.warns(UserWarning, match="fewer than batch_size=64"):
        small = _build(image_tree, batch_size=64)
    assert len(small.train) == 1 and len(next(iter(small.train))[1]) == 18
    stream = _build(image_tree, loader="stream")
    assert stream.info["residency"] == "stream"
