"""Listing labelled images: class folders, label CSVs, stable saved class lists."""

from __future__ import annotations

import numpy as np
import pytest

from epochal.data.folders import image_folder_items, label_csv_items, load_classes, save_classes


def test_folder_items_are_sorted_and_labelled(image_tree):
    items = image_folder_items(image_tree)
    assert items.classes == ["ant", "bee", "cat"]
    assert len(items) == 24
    assert items.paths == sorted(items.paths)
    assert items.targets.tolist() == [0] * 8 + [1] * 8 + [2] * 8
    assert items.class_counts() == {"ant": 8, "bee": 8, "cat": 8}
    assert not items.multi_label


def test_pinned_classes_keep_their_order_and_reject_unknown(image_tree):
    items = image_folder_items(image_tree, classes=["cat", "bee", "ant", "dog"])
    assert items.targets[items.paths.index(str(image_tree / "cat" / "00.png"))] == 0
    assert items.class_counts()["dog"] == 0
    with pytest.raises(ValueError, match=r"\['cat'\]"):
        image_folder_items(image_tree, classes=["ant", "bee"])


def test_missing_or_empty_roots_are_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        image_folder_items(tmp_path / "nope")
    (tmp_path / "a").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        image_folder_items(tmp_path)


def test_single_label_csv_with_and_without_header(image_tree):
    (image_tree / "labels.csv").write_text("path,label\nant/00.png,x\nbee/01.png,y\ncat/02.png,x\n")
    items = label_csv_items(image_tree / "labels.csv")
    assert items.classes == ["x", "y"] and items.targets.tolist() == [0, 1, 0]
    assert items.paths[1] == str(image_tree / "bee" / "01.png")
    (image_tree / "plain.csv").write_text("ant/00.png, y\n")
    assert label_csv_items(image_tree / "plain.csv").classes == ["y"]


def test_multi_label_csv_gives_multi_hot_rows(image_tree):
    (image_tree / "multi.csv").write_text("path,labels\nant/00.png,sky;tree\nbee/01.png,tree\ncat/02.png,\n")
    items = label_csv_items(image_tree / "multi.csv")
    assert items.multi_label and items.classes == ["sky", "tree"]
    assert np.array_equal(items.targets, [[1, 1], [0, 1], [0, 0]])
    assert items.class_counts() == {"sky": 1, "tree": 2}


def test_malformed_csv_names_the_line(tmp_path):
    (tmp_path / "bad.csv").write_text("path,label\na.png,x\nb.png\n")
    with pytest.raises(ValueError, match="line 3"):
        label_csv_items(tmp_path / "bad.csv")


def test_classes_round_trip(tmp_path):
    save_classes(tmp_path / "classes.json", ["b", "a"])
    assert load_classes(tmp_path / "classes.json") == ["b", "a"]
    (tmp_path / "other.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a class list"):
        load_classes(tmp_path / "other.json")
