"""Integrity of packed caches: sizes checked on open, checksums recorded while packing and verified."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from epochal.data import CorruptCacheError, PackedImages, pack_image_cache, verify_image_cache
from epochal.data.decode import load_rgb_array
from epochal.data.folders import image_folder_items
from epochal.data.packed_checks import CHECKSUM_ROWS


@pytest.fixture
def many_images(tmp_path):
    """300 random 4x5 PNG images in two classes: more than two blocks of CHECKSUM_ROWS rows."""
    rng = np.random.default_rng(0)
    root = tmp_path / "many"
    for i in range(300):
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return root


def _shard_bytes(cache, index: int = 0) -> int:
    return (cache / f"shard-{index:05d}.u8").stat().st_size


def test_checksums_are_recorded_per_shard_and_do_not_depend_on_workers(many_images, tmp_path):
    items = image_folder_items(many_images)
    assert len(items) > 2 * CHECKSUM_ROWS
    pack_image_cache(items, tmp_path / "serial", num_shards=2, workers=0, progress=False)
    pack_image_cache(items, tmp_path / "parallel", num_shards=2, workers=2, progress=False)
    serial = json.loads((tmp_path / "serial" / "manifest.json").read_text())["shards"]
    parallel = json.loads((tmp_path / "parallel" / "manifest.json").read_text())["shards"]
    assert [s["checksum"] for s in serial] == [s["checksum"] for s in parallel]
    assert all(s["checksum"].startswith("sha256:") and s["checksum_rows"] == CHECKSUM_ROWS for s in serial)
    assert serial[0]["checksum"] != serial[1]["checksum"]
    check = verify_image_cache(tmp_path / "parallel")
    assert check.ok and [s.status for s in check.shards] == ["ok", "ok"]


def test_rows_overwritten_in_place_are_found_by_verify(many_images, tmp_path):
    items = image_folder_items(many_images)
    cache = tmp_path / "cache"
    pack_image_cache(items, cache, num_shards=2, workers=0, progress=False)
    shard = cache / "shard-00001.u8"
    data = bytearray(shard.read_bytes())
    data[1000] ^= 0xFF  # one byte of one row: same size, so opening the cache cannot notice
    shard.write_bytes(bytes(data))
    PackedImages(cache)
    check = verify_image_cache(cache)
    assert not check.ok and [s.file for s in check.bad] == ["shard-00001.u8"]
    assert check.shards[0].status == "ok" and "changed" in check.bad[0].detail
    assert check.to_dict()["bad"] == ["shard-00001.u8"]


def test_a_truncated_shard_names_its_file_on_open_and_is_repacked(many_images, tmp_path):
    items = image_folder_items(many_images)
    cache = tmp_path / "cache"
    pack_image_cache(items, cache, workers=0, progress=False)
    shard = cache / "shard-00000.u8"
    full = _shard_bytes(cache)
    with open(shard, "r+b") as handle:
        handle.truncate(full // 3)
    with pytest.raises(CorruptCacheError, match=rf"{shard}.*instead of {full:,}.*truncated.*repack"):
        PackedImages(cache)
    assert verify_image_cache(cache).bad[0].detail.endswith("truncated")
    repacked = pack_image_cache(items, cache, workers=0, progress=False)
    assert _shard_bytes(cache) == full and verify_image_cache(cache).ok
    expected = np.stack([load_rgb_array(p) for p in items.paths])
    assert np.array_equal(repacked.gather(torch.arange(len(items))).numpy(), expected)


def test_a_missing_shard_is_named(many_images, tmp_path):
    cache = tmp_path / "cache"
    pack_image_cache(image_folder_items(many_images), cache, num_shards=2, workers=0, progress=False)
    (cache / "shard-00001.u8").unlink()
    with pytest.raises(CorruptCacheError, match="shard-00001.u8 is missing"):
        PackedImages(cache)
    assert verify_image_cache(cache).bad[0].detail == "is missing"


def test_caches_packed_without_checksums_are_size_checked_only(many_images, tmp_path):
    cache = tmp_path / "cache"
    pack_image_cache(image_folder_items(many_images), cache, workers=0, progress=False)
    manifest = json.loads((cache / "manifest.json").read_text())
    for entry in manifest["shards"]:
        del entry["checksum"], entry["checksum_rows"]
    (cache / "manifest.json").write_text(json.dumps(manifest))
    check = verify_image_cache(cache)
    assert check.ok and check.shards[0].status == "unverified"
    with pytest.raises(FileNotFoundError, match="no complete packed cache"):
        verify_image_cache(tmp_path)
