"""Fixtures of the data tests: small image folders written by the tests, including bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CLASSES = ("ant", "bee", "cat")


def write_image(
    path: Path, seed: int, size=(12, 10), mode: str = "RGB", fmt: str | None = None
) -> np.ndarray:
    """Write a random image and return the RGB array it decodes to (PNG: exactly)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    if mode != "RGB":
        image = image.convert(mode)
    image.save(path, format=fmt)
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture
def image_tree(tmp_path) -> Path:
    """``root/<class>/<n>.png``: 3 classes x 8 PNG images of 12x10 pixels, all good."""
    root = tmp_path / "images"
    for c, name in enumerate(CLASSES):
        for i in range(8):
            write_image(root / name / f"{i:02d}.png", seed=100 * c + i)
    return root


@pytest.fixture
def messy_tree(image_tree) -> tuple[Path, dict[str, str]]:
    """``image_tree`` plus awkward but valid files (CMYK, grayscale, palette, RGBA, BMP, WebP)
    and really bad ones (corrupt bytes, truncated JPEG and PNG, an empty file).

    Returns:
        (root, {bad path: kind}).
    """
    root = image_tree
    write_image(root / "ant" / "cmyk.jpg", 1, mode="CMYK", fmt="JPEG")
    write_image(root / "ant" / "gray.jpg", 2, mode="L", fmt="JPEG")
    write_image(root / "bee" / "palette.png", 3, mode="P")
    write_image(root / "bee" / "alpha.png", 4, mode="RGBA")
    write_image(root / "cat" / "bitmap.bmp", 5, fmt="BMP")
    write_image(root / "cat" / "web.webp", 6, fmt="WEBP")
    bad = {}
    corrupt = root / "ant" / "corrupt.jpg"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    bad[str(corrupt)] = "corrupt"
    full = root / "bee" / "full.jpg"
    write_image(full, 7, size=(64, 64), fmt="JPEG")
    truncated = root / "bee" / "truncated.jpg"
    truncated.write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])
    bad[str(truncated)] = "truncated"
    full_png = root / "cat" / "full.png"
    write_image(full_png, 8, size=(64, 64))
    truncated_png = root / "cat" / "truncated.png"
    truncated_png.write_bytes(full_png.read_bytes()[: len(full_png.read_bytes()) // 2])
    bad[str(truncated_png)] = "truncated"
    empty = root / "cat" / "empty.png"
    empty.write_bytes(b"")
    bad[str(empty)] = "empty"
    return root, bad


@pytest.fixture
def make_image():
    """The :func:`write_image` helper, for tests that write their own files."""
    return write_image
