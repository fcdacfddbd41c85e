"""Feature extraction under torchrun: the ranks share the extraction, the cache is one process's, shares train."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from ddp_helpers import torchrun
from PIL import Image

from epochal.config import load_config
from epochal.config.experiment import train


def _colour_folder(root: Path, n: int = 13) -> Path:
    """Three colours of ``n`` noisy 16x16 images (39: the splits do not divide evenly by 2)."""
    rng = np.random.default_rng(0)
    for name, colour in {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            pixels = np.clip(np.array(colour) + rng.normal(0, 30, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def _overrides(images: Path, cache: Path) -> list[str]:
    return [f"data.path={images}", f"data.options.cache_dir={cache}", "data.image_size=16", "data.batch_size=4",
            "data.valid_pct=0.3", "model.widths=[8,16]", "model.latent_dim=8", "epochs=2", "trainer.device=cpu",
            "trainer.plots=false", "callbacks.progress_bar=null", "data.options.progress=false"]


def _cached(cache: Path) -> dict[int, dict[str, torch.Tensor]]:
    """The cached splits by their number of rows."""
    files = sorted((cache / "features").glob("*.pt"))
    payloads = [torch.load(f, weights_only=True)["tensors"] for f in files]
    return {len(p["targets"]): p for p in payloads}


def test_two_ranks_extract_one_cache_of_every_row_and_train_on_shares(tmp_path):
    images = _colour_folder(tmp_path / "images")
    overrides = _overrides(images, tmp_path / "cache-ddp")
    out = tmp_path / "runs"
    # a random frozen encoder: the features are still a pure function of weights and images
    torchrun("-m", "epochal", "train", "encoder-classifier", "--out", str(out), "--json",
             *(a for o in overrides for a in ("--set", o)))
    (run,) = out.iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["distributed"]["world_size"] == 2
    ddp = _cached(tmp_path / "cache-ddp")
    assert sorted(ddp) == [12, 27]  # one file per split, every row once (27 train, 12 valid)
    # 27 training rows cut to 26, 13 per rank, batches of 4 with drop_last: 3 steps per epoch
    assert summary["steps"] == 6
    # one process computes the same features, and reads the cache the two ranks wrote as its own
    single = load_config("encoder-classifier", _overrides(images, tmp_path / "cache-one"))
    train(single, out=tmp_path / "one", progress=False)
    one = _cached(tmp_path / "cache-one")
    for n in (12, 27):
        torch.testing.assert_close(ddp[n]["features"], one[n]["features"], rtol=1e-5, atol=1e-6)
        assert torch.equal(ddp[n]["targets"], one[n]["targets"])
    written = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache-ddp" / "features").glob("*.pt")}
    train(load_config("encoder-classifier", overrides), out=tmp_path / "again", progress=False)
    assert {p: p.stat().st_mtime_ns for p in written} == written  # read, not written again
    assert sorted(p.name for p in (tmp_path / "cache-ddp" / "features").glob("*.pt")) == sorted(
        p.name for p in (tmp_path / "cache-one" / "features").glob("*.pt"))  # the same keys
