"""A folder of your own images, ``root/<class>/<image>``: epochal packs it once and trains on it.

    python examples/own_image_folder.py        # writes ./runs/<date>_<time>-shapes/
"""

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

import epochal
from epochal import Learner, ModelCheckpoint, ProgressBar


def write_images(root: Path) -> Path:
    """Stands in for your folder: 40 noisy 24x24 PNGs of each of three patterns."""
    rng = np.random.default_rng(0)
    rows, columns = np.indices((24, 24))
    patterns = {"stripes": rows // 3 % 2, "diagonal": (rows + columns) // 3 % 2, "plain": np.zeros((24, 24))}
    for name, pattern in patterns.items():
        (root / name).mkdir(parents=True)
        for i in range(40):
            pixels = 60 + 140 * pattern[..., None] + rng.normal(0, 30, (24, 24, 3))
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(root / name / f"{i:03d}.png")
    return root


with tempfile.TemporaryDirectory() as folder:
    root = write_images(Path(folder) / "shapes")
    epochal.seed_everything(0)
    data = epochal.image_folder_loaders(root, valid_pct=0.25, batch_size=16, augment=["flip"], progress=False)
    model = epochal.create_model("airbench", num_classes=len(data.classes), widths=[16, 32, 32])
    learner = Learner(model, data, optimizer="sgd", metrics=["accuracy"],
                      callbacks=[ProgressBar(), ModelCheckpoint(monitor="valid/accuracy")],
                      run_dir=epochal.create_run_dir("runs", "shapes"), seed=0)
    learner.fit(epochal.one_cycle(4, 0.05))
    metrics = learner.validate()
print(data.classes, f"validation accuracy {metrics['valid/accuracy']:.3f}")
assert data.classes == ["diagonal", "plain", "stripes"] and metrics["valid/accuracy"] > 0.9, metrics
