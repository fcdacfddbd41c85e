"""``epochal cache verify``: a good cache passes, a changed shard fails by name, ``--json`` last."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from epochal.cli.main import app
from epochal.data import pack_image_cache
from epochal.data.folders import image_folder_items


def _cache(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(12):
        folder = tmp_path / "img" / str(i % 3)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    pack_image_cache(image_folder_items(tmp_path / "img"), tmp_path / "cache", num_shards=2, workers=0, progress=False)
    return tmp_path / "cache"


def test_cache_verify_passes_then_names_the_changed_shard(tmp_path):
    cache = _cache(tmp_path)
    runner = CliRunner()
    good = runner.invoke(app, ["cache", "verify", str(cache), "--json"])
    assert good.exit_code == 0, good.output
    report = json.loads(good.stdout.strip().splitlines()[-1])
    assert report["ok"] is True and report["bad"] == [] and len(report["shards"]) == 2
    text = runner.invoke(app, ["cache", "verify", str(cache)])
    assert text.exit_code == 0 and "2 of 2 shard(s) good" in text.stdout

    shard = cache / "shard-00000.u8"
    data = bytearray(shard.read_bytes())
    data[5] ^= 1
    shard.write_bytes(bytes(data))
    bad = runner.invoke(app, ["cache", "verify", str(cache), "--json"])
    assert bad.exit_code == 1
    report = json.loads(bad.stdout.strip().splitlines()[-1])
    assert report["ok"] is False and report["bad"] == ["shard-00000.u8"]
    assert "error:" in bad.stderr and "shard-00000.u8" in bad.stderr and "repack" in bad.stderr


def test_cache_verify_of_a_folder_without_cache_is_one_error_line(tmp_path):
    result = CliRunner().invoke(app, ["cache", "verify", str(tmp_path), "--json"])
    assert result.exit_code == 1
    assert "no complete packed cache" in json.loads(result.stdout.strip().splitlines()[-1])["error"]
