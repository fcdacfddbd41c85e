"""Decoding: explicit colour conversion, fitting to a stored size, and bad-file scanning."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from epochal.data.decode import BadImageError, decode_image, fit_image, load_rgb_array, scan_images, to_rgb


def test_grayscale_becomes_three_equal_channels():
    gray = Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4), mode="L")
    rgb = np.asarray(to_rgb(gray))
    assert rgb.shape == (3, 4, 3)
    assert np.array_equal(rgb[..., 0], np.arange(12).reshape(3, 4))
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])


def test_rgba_and_la_are_composited_over_the_background():
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (200, 100, 50, 255)  # opaque: kept
    rgba[0, 1] = (200, 100, 50, 0)  # transparent: background
    out = np.asarray(to_rgb(Image.fromarray(rgba, mode="RGBA"), background=(10, 20, 30)))
    assert tuple(out[0, 0]) == (200, 100, 50)
    assert tuple(out[0, 1]) == (10, 20, 30)
    la = Image.fromarray(np.array([[[80, 0]]], dtype=np.uint8), mode="LA")
    assert tuple(np.asarray(to_rgb(la))[0, 0]) == (255, 255, 255)


def test_palette_with_transparency_and_cmyk_and_16_bit():
    palette = Image.new("P", (2, 1))
    palette.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    palette.putpixel((1, 0), 1)
    palette.info["transparency"] = 0
    out = np.asarray(to_rgb(palette, background=(0, 0, 255)))
    assert tuple(out[0, 0]) == (0, 0, 255) and tuple(out[0, 1]) == (0, 255, 0)
    cmyk = Image.new("CMYK", (1, 1), (0, 255, 255, 0))  # pure red in CMYK
    assert tuple(np.asarray(to_rgb(cmyk))[0, 0]) == (255, 0, 0)
    deep = Image.fromarray(np.array([[0, 65535, 257 * 100]], dtype=np.uint16))
    assert deep.mode.startswith("I;16")
    assert np.asarray(to_rgb(deep))[0, :, 0].tolist() == [0, 255, 100]


def test_every_awkward_file_decodes_to_rgb(messy_tree):
    root, bad = messy_tree
    for path in sorted(root.rglob("*")):
        if path.is_file() and str(path) not in bad:
            image = decode_image(path)
            assert image.mode == "RGB", path
    gray = np.asarray(decode_image(root / "ant" / "gray.jpg"))
    assert np.array_equal(gray[..., 0], gray[..., 2])


@pytest.mark.parametrize("fit, expect", [("stretch", (6, 8)), ("crop", (6, 8)), ("pad", (6, 8))])
def test_fit_image_output_size(fit, expect):
    image = Image.fromarray(np.full((10, 30, 3), 200, dtype=np.uint8))
    out = fit_image(image, (6, 8), fit)
    assert out.shape == (3, *expect) and out.dtype == np.uint8


def test_fit_pad_centres_with_zero_border_and_crop_keeps_centre():
    pixels = np.zeros((4, 8, 3), dtype=np.uint8)
    pixels[:, 2:6] = 255  # a centre band
    image = Image.fromarray(pixels)
    padded = fit_image(image, (8, 8), "pad")  # scale 1: 4x8 padded by 2 rows top and bottom
    assert padded[:, :2].max() == 0 and padded[:, 6:].max() == 0
    assert np.array_equal(padded[:, 2:6].transpose(1, 2, 0), pixels)
    cropped = fit_image(image, (4, 4), "crop")  # scale 1: centre 4 columns
    assert np.array_equal(cropped.transpose(1, 2, 0), pixels[:, 2:6])


def test_native_size_is_exact_and_bad_fit_is_rejected(tmp_path, make_image):
    expected = make_image(tmp_path / "a.png", 3, size=(7, 5))
    assert np.array_equal(load_rgb_array(tmp_path / "a.png").transpose(1, 2, 0), expected)
    with pytest.raises(ValueError, match="fit='squash'"):
        load_rgb_array(tmp_path / "a.png", (4, 4), "squash")


def test_bad_files_raise_with_their_path(messy_tree):
    _, bad = messy_tree
    for path in bad:
        with pytest.raises(BadImageError) as info:
            decode_image(path)
        assert list(info.value.bad) == [path]


@pytest.mark.parametrize("workers", [0, 2])
def test_scan_reports_every_bad_file(messy_tree, workers):
    root, bad = messy_tree
    files = sorted(str(p) for p in root.rglob("*") if p.is_file())
    report = scan_images(files, workers=workers, chunk=4)
    assert set(report.bad) == set(bad)
    assert report.good == [f for f in files if f not in bad]
    assert report.sizes[str(root / "ant" / "00.png")] == (10, 12)
    message = str(BadImageError(report.bad))
    assert all(path in message for path in bad)


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((2, 4, 3), dtype=np.uint8)
    pixels[0, 0] = 255  # top-left marker
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # stored rotated: display needs a 90 degree clockwise turn
    image.save(tmp_path / "rot.png", exif=exif.tobytes())
    decoded = np.asarray(decode_image(tmp_path / "rot.png"))
    assert decoded.shape == (4, 2, 3)
    assert decoded[0, 1].tolist() == [255, 255, 255]  # the marker moved to the top-right corner
