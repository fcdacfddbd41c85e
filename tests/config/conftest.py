"""Tiny generated data sets for the recipe tests: an image folder, multi-label images, two tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

COLOURS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}


def colour_folder(root: Path, colours: dict[str, tuple[int, int, int]], n: int = 12, side: int = 16) -> Path:
    """``root/<colour>/<i>.png``: ``n`` noisy images of each colour."""
    rng = np.random.default_rng(0)
    for name, colour in colours.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            pixels = np.clip(np.array(colour) + rng.normal(0, 30, (side, side, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def multi_label_csv(images: Path, path: Path) -> Path:
    """A ``path,labels`` CSV over ``images``: each image's colour, plus ``bright`` for every third one."""
    lines = ["path,labels"]
    for i, file in enumerate(sorted(images.rglob("*.png"))):
        labels = [file.parent.name] + (["bright"] if i % 3 == 0 else [])
        lines.append(f"{file},{' '.join(labels)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def table_csv(path: Path, n: int = 120, regression: bool = False) -> Path:
    """``colour,size,weight,y``: ``y`` is ``yes``/``no`` (from colour and size) or a number."""
    rng = np.random.default_rng(0)
    colour = rng.choice(["red", "green", "blue"], n)
    size = rng.normal(0, 1, n)
    weight = rng.normal(0, 1, n)
    if regression:
        target = [f"{2 * s + w:.3f}" for s, w in zip(size, weight)]
    else:
        target = np.where((colour == "red") | (size > 0.5), "yes", "no")
    rows = [f"{c},{s:.3f},{w:.3f},{y}" for c, s, w, y in zip(colour, size, weight, target)]
    path.write_text("\n".join(["colour,size,weight,y", *rows]) + "\n")
    return path


@pytest.fixture(scope="session")
def make_colour_folder():
    """:func:`colour_folder`, for tests that need folders of their own colours and sizes."""
    return colour_folder


@pytest.fixture(scope="session")
def tiny_images(tmp_path_factory) -> Path:
    """3 colours x 8 images of 16x16 pixels."""
    return colour_folder(tmp_path_factory.mktemp("tiny-images"), COLOURS, n=8)


@pytest.fixture(scope="session")
def tiny_multi_label(tiny_images, tmp_path_factory) -> Path:
    return multi_label_csv(tiny_images, tmp_path_factory.mktemp("tiny-multi") / "labels.csv")


@pytest.fixture(scope="session")
def tiny_table(tmp_path_factory) -> Path:
    return table_csv(tmp_path_factory.mktemp("tiny-table") / "table.csv")


@pytest.fixture(scope="session")
def tiny_regression_table(tmp_path_factory) -> Path:
    return table_csv(tmp_path_factory.mktemp("tiny-regression") / "table.csv", regression=True)
