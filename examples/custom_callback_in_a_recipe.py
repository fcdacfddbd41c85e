"""Plugging your own callback into YAML recipes, then comparing two runs.

``register_callback("name", Class)`` makes ``callbacks: {name: {...}}`` work in any recipe, with
its arguments checked against the class's signature when the recipe is loaded (a typo is an
error naming the closest argument). The two runs differ only in the learning rate;
:func:`epochal.runs.registry.compare_runs` shows exactly that difference.
Run: ``python examples/custom_callback_in_a_recipe.py``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from epochal.callbacks.base import Callback
from epochal.config import ConfigError, load_config
from epochal.config.builders import register_callback
from epochal.config.experiment import train
from epochal.runs.registry import compare_runs, list_runs


class CountBatches(Callback):
    """Counts training batches and writes the count next to the run's metrics."""

    def __init__(self, filename: str = "batches.txt"):
        self.filename = filename
        self.count = 0

    def after_batch(self) -> None:
        if self.learner.training:
            self.count += 1

    def after_fit(self) -> None:
        (self.learner.run_dir / self.filename).write_text(str(self.count))


def make_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for name, colour in {"dark": (40, 40, 40), "light": (210, 210, 210)}.items():
        (root / name).mkdir(parents=True)
        for i in range(16):
            pixels = np.clip(np.array(colour) + rng.normal(0, 40, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def main(workdir: Path) -> dict:
    register_callback("count_batches", CountBatches)
    data = make_folder(workdir / "data")
    base = [
        f"data.path={data}",
        "data.image_size=16",
        "data.batch_size=8",
        "model.widths=[8,16,16]",
        "epochs=2",
        "callbacks.progress_bar=null",
        "callbacks.count_batches.filename=n.txt",
    ]
    try:
        load_config("default", [*base, "callbacks.count_batches.filenme=x"])
    except ConfigError as error:
        assert "did you mean 'filename'" in str(error)
    runs = [
        train(load_config("default", [*base, f"optimizer.lr={lr}"]), out=workdir / "runs", progress=False)
        for lr in (0.2, 0.05)
    ]
    for run in runs:  # 26 training images (80%) in batches of 8 with drop_last: 3 batches x 2 epochs
        assert (Path(run["run_dir"]) / "n.txt").read_text() == "6"
    table = compare_runs([r["run_dir"] for r in runs])
    print(table["config"], table["metrics"])
    assert table["config"] == {"optimizer.lr": [0.2, 0.05]}
    assert len(list_runs(workdir / "runs", sort="accuracy")) == 2
    return table


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(folder))
