"""Shared fixtures of the search tests: tiny generated images, a recipe whose trial takes about a second."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("optuna", reason="the search needs the extra: pip install 'epochal[tune]'")

#: Two epochs of a 3-layer convnet of width 4-8 on 27 training images of 16x16 pixels.
TINY = ["data.image_size=16", "data.batch_size=8", "model.widths=[4,8,8]", "epochs=2",
        "callbacks.progress_bar=null", "trainer.plots=false"]

@pytest.fixture(scope="session")
def tiny_images(tmp_path_factory) -> Path:
    """Three colour classes of twelve noisy 16x16 PNG images."""
    root = tmp_path_factory.mktemp("tiny-images")
    rng = np.random.default_rng(0)
    for name, colour in (("red", (200, 30, 30)), ("green", (30, 200, 30)), ("blue", (30, 30, 200))):
        (root / name).mkdir()
        for i in range(12):
            pixels = np.clip(np.array(colour) + rng.normal(0, 30, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def tiny_overrides(tiny_images) -> list[str]:
    """``--set`` overrides of the default recipe for the tiny images."""
    return [f"data.path={tiny_images}", *TINY]


@pytest.fixture(scope="session")
def check_study():
    """``check_study(result, n_trials, allowed)``: assert that no trial is lost or duplicated and return
    the study's trial rows by number."""
    return _check_study


def _check_study(result: dict, n_trials: int, allowed=("complete", "pruned", "failed")) -> list[dict]:
    import json

    study_dir = Path(result["study_dir"])
    rows = json.loads((study_dir / "study.json").read_text())["trials"]
    assert sorted(r["number"] for r in rows) == list(range(n_trials))
    assert all(r["state"] in allowed for r in rows), [(r["number"], r["state"]) for r in rows]
    folders = sorted(p.name for p in (study_dir / "trials").iterdir())
    assert folders == [f"trial_{n:04d}" for n in range(n_trials)]
    for row in rows:
        record = json.loads((Path(row["run_dir"]) / "trial.json").read_text())
        assert record["number"] == row["number"] and record["state"] == row["state"]
    assert result["trials"] == n_trials
    if result["best_trial"] is not None:
        best_dir = Path(result["best_trial_dir"])
        assert (best_dir / "summary.json").is_file() and (best_dir / "config.yaml").is_file()
        assert Path(result["best_yaml"]).is_file()
    return sorted(rows, key=lambda r: r["number"])
