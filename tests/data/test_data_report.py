"""Nothing silently dropped: every path an image listing leaves out has a reason in the data report.

Each test here failed on the code before the data report: dangling symlinks, symlink loops and
``.gif``/``.tif`` files vanished without a word, hidden files (``.DS_Store``, ``._x.jpg``) were
listed as images, an empty class folder became a class and a one-class folder trained.
"""

from __future__ import annotations

import json
import os

import pytest
from PIL import Image

from epochal.config.inference import _image_files
from epochal.data import IMAGE_EXTENSIONS, DataReport, SkippedFile
from epochal.data.decode import BadImageError
from epochal.data.folders import find_image_files, image_folder_items
from epochal.data.images import image_folder_loaders


def _build(root, **kw):
    settings = {"valid_pct": 0.25, "seed": 0, "batch_size": 4, "workers": 0, "progress": False, "image_size": 8}
    return image_folder_loaders(root, **{**settings, **kw})


@pytest.fixture
def tricky_tree(image_tree, make_image):
    """``image_tree`` plus one of each thing a listing must leave out, and the formats it must keep."""
    ant = image_tree / "ant"
    make_image(ant / "anim.gif", 1, fmt="GIF")
    make_image(ant / "scan.tif", 2, fmt="TIFF")
    make_image(ant / "scan2.TIFF", 3, fmt="TIFF")
    (ant / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (ant / "._00.png").write_bytes(b"\0\5\26\7")  # a macOS resource fork: not an image
    (ant / ".ipynb_checkpoints").mkdir()
    make_image(ant / ".ipynb_checkpoints" / "copy.png", 4)
    (ant / "notes.txt").write_text("labels were checked by hand")
    os.symlink("does-not-exist.png", ant / "dangling.png")
    os.symlink("self.png", ant / "self.png")  # a link to itself: ELOOP
    os.symlink("..", ant / "parent")  # a folder link back up: a loop if followed
    make_image(image_tree / "outside.png", 5)
    (image_tree / ".DS_Store").write_bytes(b"\0")
    return image_tree


def test_every_left_out_path_has_its_reason(tricky_tree):
    with pytest.warns(UserWarning, match=r"skipped 9 path\(s\)"):
        items = image_folder_items(tricky_tree)
    ant = tricky_tree / "ant"
    reasons = {s.path: s.reason for s in items.skipped}
    assert reasons == {
        str(ant / ".DS_Store"): "hidden",
        str(ant / "._00.png"): "hidden",
        str(ant / ".ipynb_checkpoints"): "hidden",
        str(ant / "notes.txt"): "unsupported_extension",
        str(ant / "dangling.png"): "dangling_symlink",
        str(ant / "self.png"): "symlink_loop",
        str(ant / "parent"): "symlink_loop",
        str(tricky_tree / "outside.png"): "outside_class_folder",
        str(tricky_tree / ".DS_Store"): "hidden",
    }
    ant_files = [p for p in items.paths if p.startswith(str(ant) + os.sep)]
    assert ant_files == sorted([str(ant / f"{i:02d}.png") for i in range(8)] + [
        str(ant / "anim.gif"), str(ant / "scan.tif"), str(ant / "scan2.TIFF")])
    assert items.class_counts() == {"ant": 11, "bee": 8, "cat": 8}


def test_gif_and_tiff_are_packed_like_the_other_formats(tricky_tree, tmp_path):
    with pytest.warns(UserWarning):
        dls = _build(tricky_tree, cache_dir=tmp_path / "cache")
    assert dls.info["skipped_files"] == []  # every listed file decodes, GIF and TIFF included
    assert dls.info["all_class_counts"] == {"ant": 11, "bee": 8, "cat": 8}
    report = dls.info["data_report"]
    assert report.skipped_counts() == {
        "hidden": 4, "unsupported_extension": 1, "dangling_symlink": 1, "symlink_loop": 2, "outside_class_folder": 1}


def test_undecodable_and_listing_skips_share_one_report(messy_tree, tmp_path):
    root, bad = messy_tree
    (root / "bee" / "._alpha.png").write_bytes(b"\0\5\26\7")
    with pytest.warns(UserWarning):
        dls = _build(root, cache_dir=tmp_path / "cache")
    report = dls.info["data_report"]
    assert {s.path for s in report.skipped_files if s.reason == "undecodable"} == set(bad)
    assert [s.path for s in report.skipped_files if s.reason == "hidden"] == [str(root / "bee" / "._alpha.png")]
    assert all(s.detail for s in report.skipped_files if s.reason == "undecodable")  # the decoder's error
    written = tmp_path / "data_report.json"
    report.write(written)
    data = json.loads(written.read_text())
    assert data["skipped_files"]["count"] == 5 and data["skipped_files"]["by_reason"] == {"hidden": 1, "undecodable": 4}
    assert {f["path"] for f in data["skipped_files"]["files"]} == {*bad, str(root / "bee" / "._alpha.png")}


def test_strict_refuses_broken_links_as_it_refuses_undecodable_files(image_tree):
    os.symlink("missing.png", image_tree / "cat" / "gone.png")
    with pytest.raises(BadImageError, match="dangling symlink"), pytest.warns(UserWarning):
        _build(image_tree, strict=True)


def test_an_empty_class_folder_is_an_error_naming_it(image_tree):
    (image_tree / "dog").mkdir()
    (image_tree / "dog" / "readme.txt").write_text("todo")
    with pytest.raises(ValueError, match=r"class folder\(s\) \['dog'\] hold no image files") as info:
        image_folder_items(image_tree)
    assert "1 unsupported extension" in str(info.value)  # what was there instead


def test_pinned_classes_may_miss_a_folder_and_are_reported(image_tree, tmp_path):
    with pytest.warns(UserWarning, match=r"no images of the classes \['dog'\]"):
        dls = _build(image_tree, classes=["ant", "bee", "cat", "dog"], cache_dir=tmp_path / "cache")
    assert dls.info["data_report"].empty_classes == ["dog"]


def test_a_single_class_is_refused_for_training(image_tree, tmp_path):
    single = tmp_path / "single"
    single.mkdir()
    (image_tree / "ant").rename(single / "ant")
    with pytest.raises(ValueError, match=r"1 class\(es\) \['ant'\]: classification needs at least two"):
        _build(single)


def test_a_class_whose_images_all_fail_to_decode_is_refused(image_tree, tmp_path):
    (image_tree / "dog").mkdir()
    (image_tree / "dog" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"\['dog'\] have no decodable images"), pytest.warns(UserWarning):
        _build(image_tree, cache_dir=tmp_path / "cache")


def test_predict_lists_folders_with_the_training_extensions(tricky_tree):
    with pytest.warns(UserWarning, match="predict input"):
        files = _image_files([tricky_tree / "ant"])
    names = sorted(p.name for p in files)
    assert "anim.gif" in names and "scan.tif" in names and "._00.png" not in names and ".DS_Store" not in names
    assert len(names) == 11
    assert {".gif", ".tif", ".tiff"} <= set(IMAGE_EXTENSIONS)


def test_folder_symlinks_are_followed_once(image_tree, tmp_path, make_image):
    extra = tmp_path / "more-cats"
    make_image(extra / "m0.png", 9)
    os.symlink(extra, image_tree / "cat" / "more")
    os.symlink(extra, image_tree / "cat" / "again")
    files, skipped = find_image_files(image_tree / "cat")
    assert str(image_tree / "cat" / "again" / "m0.png") in files and len(files) == 9
    assert [(s.path, s.reason) for s in skipped] == [(str(image_tree / "cat" / "more"), "duplicate_folder")]


def test_report_merge_and_summary():
    first = DataReport(skipped_files=[SkippedFile("a", "hidden")], empty_classes=["x"])
    second = DataReport(skipped_files=[SkippedFile("a", "hidden"), SkippedFile("b", "undecodable", "OSError")])
    merged = DataReport.merge([first, None, second])
    assert [s.path for s in merged.skipped_files] == ["a", "b"] and merged.empty_classes == ["x"]
    assert merged.summary() == "2 skipped file(s) (1 hidden, 1 undecodable); classes without images: ['x']"
    assert not DataReport() and merged


def test_gif_decodes_to_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (6, 4), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "two.gif", save_all=True, append_images=frames[1:])
    from epochal.data.decode import load_rgb_array

    pixels = load_rgb_array(tmp_path / "two.gif")
    assert pixels.shape == (3, 4, 6) and pixels[0].min() > 200 and pixels[2].max() < 50
