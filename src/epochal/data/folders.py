"""Listing labelled images: class-folder layout or a CSV of ``path,label`` / ``path,labels``.

Class names are sorted, so their indices are stable across machines and runs, and they are saved
next to every packed cache (:func:`save_classes`) so inference maps outputs back to names.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import stat
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from epochal.data.decode import IMAGE_EXTENSIONS
from epochal.data.report import SkippedFile, skipped_summary, warn_skipped
from epochal.data.text_files import encoding_error
from epochal.utils import write_json_atomic

__all__ = [
    "ImageItems",
    "find_image_files",
    "image_folder_items",
    "label_csv_items",
    "list_images",
    "load_classes",
    "save_classes",
    "unlabelled_items",
]

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
        skipped: paths left out while listing, with reasons (see :mod:`~epochal.data.report`).
        empty_classes: classes (pinned by ``classes=``) that have no images here.
    """

    paths: list[str]
    targets: np.ndarray
    classes: list[str]
    root: str
    skipped: list[SkippedFile] = field(default_factory=list)
    empty_classes: list[str] = field(default_factory=list)

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


def _stat_problem(path: str, is_link: bool) -> tuple[os.stat_result | None, SkippedFile | None]:
    """``os.stat`` of ``path`` (following links), or why it cannot be listed."""
    try:
        return os.stat(path), None
    except OSError as error:
        if error.errno == errno.ELOOP:
            return None, SkippedFile(path, "symlink_loop", f"it resolves through itself ({error.strerror})")
        if is_link and error.errno == errno.ENOENT:
            return None, SkippedFile(path, "dangling_symlink", f"it points to {os.readlink(path)!r}")
        return None, SkippedFile(path, "unreadable", f"{type(error).__name__}: {error.strerror}")


def _listable(folder: str | os.PathLike, skipped: list[SkippedFile]) -> list[tuple[os.DirEntry, os.stat_result]]:
    """The entries of ``folder`` in name order with their ``os.stat`` (links followed); hidden ones
    and ones that cannot be listed go to ``skipped`` with their reason. ``OSError`` when ``folder``
    itself cannot be read."""
    listable = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith("."):
            skipped.append(SkippedFile(entry.path, "hidden"))
            continue
        info, problem = _stat_problem(entry.path, entry.is_symlink())
        if problem is not None:
            skipped.append(problem)
        else:
            listable.append((entry, info))
    return listable


def find_image_files(
    folder: str | os.PathLike, extensions: Sequence[str] = IMAGE_EXTENSIONS
) -> tuple[list[str], list[SkippedFile]]:
    """Every image file below ``folder`` (any depth, symlinks followed), and every path left out.

    Hidden entries (``.DS_Store``, macOS ``._x.jpg`` forks, ``.ipynb_checkpoints/``), files of other
    types, dangling symlinks, symlink loops and anything unreadable are left out and returned with
    their reason (:data:`~epochal.data.report.SKIP_REASONS`); a hidden folder is one entry, not
    one per file inside it.

    Args:
        folder: the folder to list.
        extensions: file extensions counted as images (case-insensitive).

    Returns:
        ``(paths, skipped)``: image paths sorted as strings, and the :class:`SkippedFile` entries.
    """
    exts = {e.lower() for e in extensions}
    files: list[str] = []
    skipped: list[SkippedFile] = []
    seen_folders = {os.path.realpath(folder)}
    stack = [(str(folder), (os.path.realpath(folder),))]
    while stack:
        current, ancestors = stack.pop()
        below = []
        try:
            entries = _listable(current, skipped)
        except OSError as error:
            skipped.append(SkippedFile(current, "unreadable", f"{type(error).__name__}: {error.strerror}"))
            continue
        for entry, info in entries:
            if stat.S_ISDIR(info.st_mode):
                real = os.path.realpath(entry.path)
                if any(a == real or a.startswith(real + os.sep) for a in ancestors):  # back to itself or above
                    skipped.append(SkippedFile(entry.path, "symlink_loop", f"it leads back to {real}"))
                elif real in seen_folders:
                    skipped.append(SkippedFile(entry.path, "duplicate_folder", f"{real} is listed already"))
                else:
                    seen_folders.add(real)
                    below.append((entry.path, (*ancestors, real)))
            elif os.path.splitext(entry.name)[1].lower() not in exts:
                skipped.append(SkippedFile(entry.path, "unsupported_extension", os.path.splitext(entry.name)[1]))
            elif not stat.S_ISREG(info.st_mode):
                skipped.append(SkippedFile(entry.path, "not_a_file"))
            else:
                files.append(entry.path)
        stack += reversed(below)  # depth first in name order: the first link to a folder is the one listed
    return sorted(files), skipped


def _class_folders(root_path: Path, root: str) -> tuple[list[str], list[SkippedFile]]:
    """The class folder names directly under the root, and the other entries there (skipped)."""
    folders, skipped = [], []
    for entry, info in _listable(root_path, skipped):
        if stat.S_ISDIR(info.st_mode):
            folders.append(entry.name)
        else:
            skipped.append(SkippedFile(entry.path, "outside_class_folder", f"root={root!r} holds one folder per class"))
    return folders, skipped


def image_folder_items(
    root: str | os.PathLike,
    classes: Sequence[str] | None = None,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
) -> ImageItems:
    """List ``root/<class>/<image>`` files (any depth below the class folder, symlinks followed).

    Every path left out (hidden files, other file types, broken symlinks ...) is kept in
    ``ImageItems.skipped`` with its reason and summarised in one warning. A class folder without
    images is an error when the classes are found from the folders (the model would get a class
    it never sees); with ``classes=`` pinned (evaluation data, a separate validation folder) a
    missing or empty class is allowed, listed in ``ImageItems.empty_classes`` and warned about.

    Args:
        root: the folder holding one sub-folder per class.
        classes: pin the class list and order (e.g. from :func:`load_classes`); by default the
            sorted sub-folder names.
        extensions: file extensions counted as images (case-insensitive); by default
            :data:`~epochal.data.decode.IMAGE_EXTENSIONS`, the list every command uses.

    Returns:
        The :class:`ImageItems`, paths sorted by class then file path.

    Raises:
        ValueError: no class folders, no images, or (classes not pinned) class folders without images.
    """
    root_path = Path(root).expanduser().resolve()
    if not root_path.is_dir():
        raise FileNotFoundError(f"image folder root={str(root)!r} is not a directory")
    folders, skipped = _class_folders(root_path, str(root))
    if not folders:
        raise ValueError(
            f"root={str(root)!r} has no class sub-folders (expected root/<class>/<image>); for images without "
            "labels, to train a model that reconstructs its input (an autoencoder), set data.options.unlabelled: true"
        )
    class_list = _check_classes(folders, classes, f"root={str(root)!r}")
    paths, targets, empty = [], [], []
    for index, name in enumerate(class_list):
        files, left_out = find_image_files(root_path / name, extensions) if name in folders else ([], [])
        skipped += left_out
        if not files:
            empty.append(name)
        paths.extend(files)
        targets.extend([index] * len(files))
    if not paths:
        raise ValueError(
            f"root={str(root)!r} has no image files with extensions {tuple(extensions)}"
            + (f"; skipped {skipped_summary(skipped)}" if skipped else "")
        )
    if empty and classes is None:
        raise ValueError(
            f"root={str(root)!r}: class folder(s) {empty} hold no image files, so the model would get classes "
            "it never sees; add images or remove the folders"
            + (f" (skipped {skipped_summary(skipped)})" if skipped else "")
        )
    warn_skipped(skipped, f"image folder {str(root)!r}")
    if empty:
        warnings.warn(f"image folder {str(root)!r} has no images of the classes {empty}", stacklevel=2)
    return ImageItems(
        paths, np.asarray(targets, dtype=np.int64), class_list, str(root_path), skipped=skipped, empty_classes=empty
    )


def unlabelled_items(root: str | os.PathLike, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> ImageItems:
    """Every image file below ``root``, at any depth, without labels: sub-folders are not classes.

    For models that reconstruct their input (an autoencoder): the items have no classes and
    all-zero targets, which the loaders replace by the images themselves. Paths left out are
    kept in ``ImageItems.skipped`` and summarised in one warning, as for labelled folders.

    Args:
        root: the folder to list.
        extensions: file extensions counted as images (case-insensitive).

    Raises:
        FileNotFoundError: ``root`` is not a directory.
        ValueError: no image files below it.
    """
    root_path = Path(root).expanduser().resolve()
    if not root_path.is_dir():
        raise FileNotFoundError(f"image folder root={str(root)!r} is not a directory")
    paths, skipped = find_image_files(root_path, extensions)
    if not paths:
        raise ValueError(
            f"root={str(root)!r} has no image files with extensions {tuple(extensions)} at any depth"
            + (f"; skipped {skipped_summary(skipped)}" if skipped else "")
        )
    warn_skipped(skipped, f"image folder {str(root)!r}")
    return ImageItems(paths, np.zeros(len(paths), dtype=np.int64), [], str(root_path), skipped=skipped)


def _split_labels(text: str) -> list[str]:
    for sep in LABEL_SEPARATORS:
        if sep in text:
            return [part.strip() for part in text.split(sep) if part.strip()]
    return [text.strip()] if text.strip() else []


def _read_csv_rows(csv_path: Path) -> tuple[list[str], list[list[str]], bool]:
    """Return (paths, label lists, multi_label) from a CSV with an optional header."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:  # -sig: a BOM is not part of "path"
            rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    except UnicodeDecodeError as error:
        raise encoding_error(csv_path, "utf-8", error, option=None) from None
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


def list_images(root: str | os.PathLike, classes: Sequence[str] | None = None) -> ImageItems:
    """The labelled images of an image-folder root, or of a ``.csv`` label file (paths relative to its folder)."""
    if str(root).lower().endswith(".csv"):
        return label_csv_items(root, classes=classes)
    return image_folder_items(root, classes=classes)


def save_classes(path: str | os.PathLike, classes: Sequence[str]) -> None:
    """Write the class list (index order) as JSON, atomically."""
    write_json_atomic(path, {"classes": list(classes)}, indent=1)


def load_classes(path: str | os.PathLike) -> list[str]:
    """Read a class list written by :func:`save_classes`."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
        raise ValueError(f"{str(path)!r} is not a class list written by save_classes")  # noqa: TRY004
    return [str(c) for c in data["classes"]]
