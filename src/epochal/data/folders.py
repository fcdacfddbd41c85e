"""Listing labelled images: class-folder layout or a CSV of ``path,label`` / ``path,labels``.

Class names are sorted, so their indices are stable across machines and runs, and they are saved
next to every packed cache (:func:`save_classes`) so inference maps outputs back to names.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from epochal.data.decode import IMAGE_EXTENSIONS
from epochal.utils import write_json_atomic

__all__ = ["ImageItems", "image_folder_items", "label_csv_items", "load_classes", "save_classes"]

#: Separators accepted between labels of one image in a multi-label CSV ``labels`` column.
LABEL_SEPARATORS: tuple[str, ...] = (";", "|", " ")


@dataclass
class ImageItems:
    """Image files with their targets and the class list.

    Attributes:
        paths: absolute file paths, in a stable (sorted) order.
        targets: ``int64`` class indices of shape ``(n,)``, or for multi-label a ``uint8``
            multi-hot array of shape ``(n, num_classes)``.
        classes: class names; ``targets`` index into it.
        root: the folder the paths are relative to (used for cache fingerprints and reports).
    """

    paths: list[str]
    targets: np.ndarray
    classes: list[str]
    root: str

    @property
    def multi_label(self) -> bool:
        """Whether targets are multi-hot rows rather than class indices."""
        return self.targets.ndim == 2

    def __len__(self) -> int:
        return len(self.paths)

    def class_counts(self) -> dict[str, int]:
        """Images per class (for multi-label: images carrying each label)."""
        if self.multi_label:
            counts = self.targets.sum(axis=0)
        else:
            counts = np.bincount(self.targets, minlength=len(self.classes))
        return {name: int(c) for name, c in zip(self.classes, counts)}

    def select(self, keep: Sequence[int]) -> ImageItems:
        """The items at positions ``keep``, same classes."""
        keep = list(keep)
        return ImageItems([self.paths[i] for i in keep], self.targets[keep], self.classes, self.root)


def _check_classes(found: Sequence[str], classes: Sequence[str] | None, where: str) -> list[str]:
    if classes is None:
        return sorted(found)
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise ValueError(f"{where} has classes {unknown} that are not in classes={list(classes)}")
    return list(classes)


def image_folder_items(
    root: str | os.PathLike,
    classes: Sequence[str] | None = None,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
) -> ImageItems:
    """List ``root/<class>/<image>`` files (any depth below the class folder).

    Args:
        root: the folder holding one sub-folder per class.
        classes: pin the class list and order (e.g. from :func:`load_classes`); by default the
            sorted sub-folder names.
        extensions: file extensions counted as images (case-insensitive).

    Returns:
        The :class:`ImageItems`, paths sorted by class then file path.
    """
    root_path = Path(root).expanduser().resolve()
    if not root_path.is_dir():
        raise FileNotFoundError(f"image folder root={str(root)!r} is not a directory")
    folders = sorted(p.name for p in root_path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ValueError(f"root={str(root)!r} has no class sub-folders (expected root/<class>/<image>)")
    class_list = _check_classes(folders, classes, f"root={str(root)!r}")
    exts = tuple(e.lower() for e in extensions)
    paths, targets = [], []
    for index, name in enumerate(class_list):
        folder = root_path / name
        if not folder.is_dir():
            continue
        files = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in exts and p.is_file())
        paths.extend(files)
        targets.extend([index] * len(files))
    if not paths:
        raise ValueError(f"root={str(root)!r} has no image files with extensions {exts}")
    return ImageItems(paths, np.asarray(targets, dtype=np.int64), class_list, str(root_path))


def _split_labels(text: str) -> list[str]:
    for sep in LABEL_SEPARATORS:
        if sep in text:
            return [part.strip() for part in text.split(sep) if part.strip()]
    return [text.strip()] if text.strip() else []


def _read_csv_rows(csv_path: Path) -> tuple[list[str], list[list[str]], bool]:
    """Return (paths, label lists, multi_label) from a CSV with an optional header."""
    with open(csv_path, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    if not rows:
        raise ValueError(f"label CSV {str(csv_path)!r} is empty")
    header = [cell.strip().lower() for cell in rows[0]]
    multi = False
    label_col = 1
    if header and header[0] == "path":
        if "labels" in header:
            label_col, multi = header.index("labels"), True
        elif "label" in header:
            label_col = header.index("label")
        else:
            raise ValueError(
                f"label CSV {str(csv_path)!r} header {rows[0]} needs a 'label' or 'labels' column"
            )
        rows = rows[1:]
    paths, labels = [], []
    for line, row in enumerate(rows, start=2 if header and header[0] == "path" else 1):
        if len(row) <= label_col:
            raise ValueError(f"label CSV {str(csv_path)!r} line {line}: expected path and label, got {row}")
        paths.append(row[0].strip())
        labels.append(_split_labels(row[label_col]) if multi else [row[label_col].strip()])
    return paths, labels, multi


def label_csv_items(
    csv_path: str | os.PathLike, root: str | os.PathLike | None = None, classes: Sequence[str] | None = None
) -> ImageItems:
    """List images from a CSV of ``path,label`` (single label) or ``path,labels`` (multi-label).

    A header row starting with ``path`` is optional for single labels and required for
    ``labels``; labels of one image are separated by ``;``, ``|`` or spaces. Relative paths are
    taken from ``root`` (default: the CSV's folder).

    Args:
        csv_path: the CSV file.
        root: folder that relative paths start from.
        classes: pin the class list and order; by default the sorted distinct labels.

    Returns:
        :class:`ImageItems` in CSV order; multi-label targets are multi-hot ``uint8`` rows.
    """
    csv_file = Path(csv_path).expanduser().resolve()
    base = Path(root).expanduser().resolve() if root is not None else csv_file.parent
    paths, labels, multi = _read_csv_rows(csv_file)
    found = sorted({name for names in labels for name in names})
    class_list = _check_classes(found, classes, f"label CSV {str(csv_path)!r}")
    lookup = {name: i for i, name in enumerate(class_list)}
    full = [str((base / p).resolve()) if not os.path.isabs(p) else p for p in paths]
    if multi:
        targets = np.zeros((len(full), len(class_list)), dtype=np.uint8)
        for row, names in enumerate(labels):
            targets[row, [lookup[n] for n in names]] = 1
    else:
        targets = np.asarray([lookup[names[0]] for names in labels], dtype=np.int64)
    return ImageItems(full, targets, class_list, str(base))


def save_classes(path: str | os.PathLike, classes: Sequence[str]) -> None:
    """Write the class list (index order) as JSON, atomically."""
    write_json_atomic(path, {"classes": list(classes)}, indent=1)


def load_classes(path: str | os.PathLike) -> list[str]:
    """Read a class list written by :func:`save_classes`."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
        raise ValueError(f"{str(path)!r} is not a class list written by save_classes")  # noqa: TRY004
    return [str(c) for c in data["classes"]]
