"""The packed uint8 cache: exact contents, reuse, invalidation, interruption, shards, bad files."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

import epochal.data.packed as packed_module
from epochal.data.decode import load_rgb_array
from epochal.data.folders import image_folder_items
from epochal.data.packed import PackedImages, pack_image_cache


def _expected(items, size=None, fit="crop"):
    return np.stack([load_rgb_array(p, size, fit) for p in items.paths])


def test_pack_holds_the_decoded_pixels_and_manifest(image_tree, tmp_path):
    items = image_folder_items(image_tree)
    packed = pack_image_cache(items, tmp_path / "cache", workers=0, progress=False)
    assert packed.shape == (24, 3, 10, 12)
    everything = packed.gather(torch.arange(24))
    assert np.array_equal(everything.numpy(), _expected(items))
    assert packed.targets.tolist() == items.targets.tolist()
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert manifest["classes"] == ["ant", "bee", "cat"] and manifest["shape"] == [24, 3, 10, 12]
    assert json.loads((tmp_path / "cache" / "classes.json").read_text())["classes"] == items.classes
    assert packed.nbytes == 24 * 3 * 10 * 12 and packed.rows.tolist() == list(range(24))


def test_resized_pack_with_workers_matches_serial(image_tree, tmp_path):
    items = image_folder_items(image_tree)
    serial = pack_image_cache(items, tmp_path / "a", size=(6, 8), fit="pad", workers=0, progress=False)
    parallel = pack_image_cache(items, tmp_path / "b", size=(6, 8), fit="pad", workers=2, progress=False)
    assert serial.shape == (24, 3, 6, 8)
    assert torch.equal(serial.gather(torch.arange(24)), parallel.gather(torch.arange(24)))
    assert np.array_equal(serial.gather(torch.arange(24)).numpy(), _expected(items, (6, 8), "pad"))


def test_valid_cache_is_reused_and_changed_source_invalidates(image_tree, tmp_path, make_image):
    items = image_folder_items(image_tree)
    cache = tmp_path / "cache"
    pack_image_cache(items, cache, workers=0, progress=False)
    shard = cache / "shard-00000.u8"
    first = shard.stat().st_mtime_ns
    os.utime(shard, ns=(first - 10**9, first - 10**9))  # mark it, to see whether it is rewritten
    pack_image_cache(items, cache, workers=0, progress=False)
    assert shard.stat().st_mtime_ns == first - 10**9  # reused
    new_pixels = make_image(image_tree / "ant" / "00.png", seed=999)
    changed = image_folder_items(image_tree)
    repacked = pack_image_cache(changed, cache, workers=0, progress=False)
    assert shard.stat().st_mtime_ns != first - 10**9
    assert np.array_equal(repacked.gather(torch.tensor([0]))[0].numpy().transpose(1, 2, 0), new_pixels)


def test_interrupted_pack_never_looks_complete_and_resumes(image_tree, tmp_path, monkeypatch):
    items = image_folder_items(image_tree)
    cache = tmp_path / "cache"
    real = packed_module._pack_shard

    def crash_on_second(*args, **kwargs):
        if args[2] == 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(packed_module, "_pack_shard", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        pack_image_cache(items, cache, num_shards=2, workers=0, progress=False)
    assert not (cache / "manifest.json").exists()
    assert (cache / "shard-00000.json").exists() and not (cache / "shard-00001.json").exists()
    with pytest.raises(FileNotFoundError, match="no complete packed cache"):
        PackedImages(cache)
    monkeypatch.setattr(packed_module, "_pack_shard", real)
    calls = []
    monkeypatch.setattr(packed_module, "_pack_shard", lambda *a, **k: (calls.append(a[2]), real(*a, **k)))
    packed = pack_image_cache(items, cache, num_shards=2, workers=0, progress=False)
    assert calls == [1]  # the finished shard was kept
    assert np.array_equal(packed.gather(torch.arange(24)).numpy(), _expected(items))


def test_shards_are_packed_and_read_separately(image_tree, tmp_path):
    items = image_folder_items(image_tree)
    cache = tmp_path / "cache"
    assert pack_image_cache(items, cache, num_shards=3, shards=[0], workers=0, progress=False) is None
    packed = pack_image_cache(items, cache, num_shards=3, shards=[1, 2], workers=0, progress=False)
    assert packed is not None and packed.rows.tolist() == list(range(24))
    middle = PackedImages(cache, shards=[1])
    assert middle.rows.tolist() == list(range(8, 16))
    expected = _expected(items)
    assert np.array_equal(middle.gather(torch.tensor([9, 8])).numpy(), expected[[9, 8]])
    outer = PackedImages(cache, shards=[0, 2])
    rows = torch.tensor([17, 3, 20])
    assert np.array_equal(outer.gather(rows).numpy(), expected[[17, 3, 20]])
    resident = outer.to_tensor()
    assert torch.equal(resident[outer.local_rows(rows)], outer.gather(rows))
    with pytest.raises(ValueError, match="shards="):
        PackedImages(cache, shards=[3])


def test_bad_files_are_skipped_and_named(messy_tree, tmp_path):
    root, bad = messy_tree
    items = image_folder_items(root)
    packed = pack_image_cache(items, tmp_path / "cache", size=8, workers=2, progress=False)
    assert set(packed.skipped) == set(bad)
    good = [i for i, p in enumerate(items.paths) if p not in bad]
    assert packed.rows.tolist() == good
    reopened = PackedImages(tmp_path / "cache")
    assert set(reopened.skipped) == set(bad)


def test_native_size_mismatch_is_reported_per_file(image_tree, tmp_path, make_image):
    make_image(image_tree / "ant" / "big.png", 1, size=(20, 20))
    items = image_folder_items(image_tree)
    packed = pack_image_cache(items, None, workers=0, progress=False)
    assert list(packed.skipped) == [str(image_tree / "ant" / "big.png")]
    assert "pass size=" in next(iter(packed.skipped.values()))


def test_temporary_pack_is_removed_with_its_object(image_tree):
    packed = pack_image_cache(image_folder_items(image_tree), None, workers=0, progress=False)
    folder = packed.folder
    assert folder.exists()
    del packed
    import gc

    gc.collect()
    assert not folder.exists()


def test_bad_arguments_are_explained(image_tree, tmp_path):
    items = image_folder_items(image_tree)
    with pytest.raises(ValueError, match="fit="):
        pack_image_cache(items, tmp_path, fit="zoom")
    with pytest.raises(ValueError, match="num_shards"):
        pack_image_cache(items, tmp_path, num_shards=0)
    with pytest.raises(ValueError, match="size="):
        pack_image_cache(items, tmp_path, size=(0, 3))
