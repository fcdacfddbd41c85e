"""Image decoding with explicit colour handling, fitting to a stored size, and bad-file scanning.

Every image is decoded with Pillow and converted to 8-bit RGB *explicitly*: grayscale (``L``,
``1``, 16-bit ``I;16``/``I``), palette (``P``, with or without transparency), ``RGBA``/``LA``
(alpha-composited over a background colour instead of silently dropping alpha) and ``CMYK`` each
take a defined path. Corrupt or truncated files raise :class:`BadImageError` with the path and the
reason, so callers can report every bad path at once.

This module imports only numpy and Pillow: it runs inside the packing worker processes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFile, ImageOps

from epochal.data.pool import process_pool

__all__ = [
    "FIT_MODES",
    "IMAGE_EXTENSIONS",
    "BadImageError",
    "ScanReport",
    "decode_image",
    "fit_image",
    "load_rgb_array",
    "scan_images",
    "to_rgb",
]

#: File extensions treated as images when a folder is listed, by every command (lower case): the
#: formats Pillow decodes that photos and data sets come in. Files named explicitly (a label CSV's
#: paths, ``epochal predict cat.jfif``) are decoded whatever their extension.
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

#: How an image is brought to the stored size: ``stretch`` to exactly (h, w); ``crop`` scales the
#: shorter side to fit then centre-crops; ``pad`` scales the longer side to fit then centre-pads.
FIT_MODES: tuple[str, ...] = ("stretch", "crop", "pad")

_EXIF_ORIENTATION = 0x0112

# Truncated files must fail loudly instead of decoding as grey bottoms.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class BadImageError(ValueError):
    """One or more image files could not be decoded.

    Attributes:
        bad: mapping from each bad path to the reason it failed.
    """

    def __init__(self, bad: dict[str, str]):
        self.bad = dict(bad)
        lines = "\n".join(f"  {path}: {reason}" for path, reason in sorted(self.bad.items()))
        super().__init__(f"{len(self.bad)} image file(s) could not be decoded:\n{lines}")


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, with a defined rule per mode.

    Args:
        image: a decoded Pillow image.
        background: colour that transparent pixels are composited over (RGBA, LA, P with
            transparency).

    Returns:
        An ``RGB`` image of the same size.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(base, rgba).convert("RGB")
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit grayscale: scale the full range to 8 bits (Pillow's own convert clips instead).
        values = np.asarray(image, dtype=np.float64)
        gray = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if mode == "F":
        gray = np.clip(np.rint(np.asarray(image, dtype=np.float64)), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    # L, 1, CMYK, YCbCr, LAB, HSV, RGBX: Pillow's conversions are the defined ones.
    return image.convert("RGB")


def decode_image(
    path: str | os.PathLike,
    size: tuple[int, int] | None = None,
    fit: str = "crop",
    background: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """Decode one file fully to an RGB image, honouring the EXIF orientation.

    Args:
        path: the image file.
        size: ``(height, width)`` the image will later be fitted to; lets the JPEG decoder skip
            detail it would throw away (DCT scaling). The result is never smaller than needed.
        fit: how it will be fitted (one of :data:`FIT_MODES`), used with ``size``.
        background: colour for transparent pixels.

    Returns:
        The decoded ``RGB`` image.

    Raises:
        BadImageError: the file is missing, not an image, corrupt or truncated.
    """
    try:
        with Image.open(path) as image:
            if size is not None and image.format == "JPEG":
                # A square request stays large enough whatever the EXIF rotation does later.
                side = max(_fit_geometry(image.width, image.height, size, fit))
                image.draft("RGB", (side, side))
            image.load()
            if image.getexif().get(_EXIF_ORIENTATION, 1) != 1:
                image = ImageOps.exif_transpose(image)
            return to_rgb(image, background)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise BadImageError({str(path): f"{type(error).__name__}: {error}"}) from None


def _fit_geometry(width: int, height: int, size: tuple[int, int], fit: str) -> tuple[int, int]:
    """The (width, height) to resize to before cropping or padding to ``size`` (h, w)."""
    out_h, out_w = size
    if fit == "stretch":
        return out_w, out_h
    scale_w, scale_h = out_w / width, out_h / height
    scale = max(scale_w, scale_h) if fit == "crop" else min(scale_w, scale_h)
    return max(1, round(width * scale)), max(1, round(height * scale))


def fit_image(image: Image.Image, size: tuple[int, int] | None, fit: str = "crop") -> np.ndarray:
    """Resize (antialiased bilinear) and centre crop/pad an RGB image to ``size``.

    Args:
        image: an ``RGB`` image.
        size: ``(height, width)`` to store, or None to keep the native size.
        fit: one of :data:`FIT_MODES`.

    Returns:
        A ``uint8`` array of shape ``(3, height, width)``; padding is zero.
    """
    if fit not in FIT_MODES:
        raise ValueError(f"fit={fit!r} is not valid; use one of {FIT_MODES}")
    if size is None:
        return np.ascontiguousarray(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))
    out_h, out_w = size
    new_w, new_h = _fit_geometry(image.width, image.height, size, fit)
    if (new_w, new_h) != image.size:
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.uint8)
    out = np.zeros((out_h, out_w, 3), dtype=np.uint8)
    # Centre crop (source larger) or centre pad (source smaller), independently per axis.
    src_y, dst_y = max(0, (new_h - out_h) // 2), max(0, (out_h - new_h) // 2)
    src_x, dst_x = max(0, (new_w - out_w) // 2), max(0, (out_w - new_w) // 2)
    h, w = min(new_h, out_h), min(new_w, out_w)
    out[dst_y : dst_y + h, dst_x : dst_x + w] = pixels[src_y : src_y + h, src_x : src_x + w]
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def load_rgb_array(
    path: str | os.PathLike, size: tuple[int, int] | None = None, fit: str = "crop"
) -> np.ndarray:
    """Decode ``path`` and fit it to ``size``: a ``(3, h, w)`` uint8 array.

    Raises:
        BadImageError: the file cannot be decoded.
        ValueError: ``fit`` is not one of :data:`FIT_MODES`.
    """
    if fit not in FIT_MODES:
        raise ValueError(f"fit={fit!r} is not valid; use one of {FIT_MODES}")
    return fit_image(decode_image(path, size=size, fit=fit), size, fit)


@dataclass
class ScanReport:
    """Result of :func:`scan_images`: which files decode, and why the others do not."""

    good: list[str] = field(default_factory=list)
    bad: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)


def _scan_chunk(paths: Sequence[str]) -> tuple[dict[str, tuple[int, int]], dict[str, str]]:
    sizes, bad = {}, {}
    for path in paths:
        try:
            image = decode_image(path)
            sizes[path] = (image.height, image.width)
        except BadImageError as error:
            bad.update(error.bad)
    return sizes, bad


def scan_images(paths: Sequence[str | os.PathLike], workers: int = 0, chunk: int = 256) -> ScanReport:
    """Fully decode every file once and report the bad ones (corrupt, truncated, not images).

    A header check (``Image.verify``) misses truncated JPEG data, so this really decodes.

    Args:
        paths: files to check.
        workers: worker processes; 0 decodes in this process.
        chunk: files per task sent to a worker.

    Returns:
        A :class:`ScanReport` with good paths (input order), bad paths with reasons, and sizes.
    """
    names = [str(p) for p in paths]
    chunks = [names[i : i + chunk] for i in range(0, len(names), chunk)]
    report = ScanReport()
    if workers > 0 and len(chunks) > 1:
        with process_pool(workers) as pool:
            results = list(pool.map(_scan_chunk, chunks))
    else:
        results = [_scan_chunk(c) for c in chunks]
    for sizes, bad in results:
        report.sizes.update(sizes)
        report.bad.update(bad)
    report.good = [p for p in names if p in report.sizes]
    return report

