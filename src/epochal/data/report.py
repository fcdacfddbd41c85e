"""The data report: every file the pipeline skipped and every value it had to reinterpret, with why.

Nothing is dropped or coerced silently. Listing an image folder skips hidden files, files of
other types, dangling symlinks and symlink loops; packing skips files that do not decode; reading
a table skips malformed rows and rows without a target, reads text in number columns as missing,
and meets categories at validation that training never saw. Each of these is a warning when it
happens *and* an entry of one :class:`DataReport`, which ``epochal train`` writes into the run
folder as ``data_report.json``, so the list of what was left out stays next to the result it
shaped.

Examples:
    >>> dls = image_folder_loaders("photos/")
    >>> report = dls.info["data_report"]
    >>> report.skipped_counts()                       # {'hidden': 2, 'undecodable': 1}
    >>> [(s.path, s.reason) for s in report.skipped_files]
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from epochal.utils import write_json_atomic

__all__ = ["SKIP_REASONS", "DataReport", "SkippedFile", "TableFinding", "skipped_summary", "warn_skipped"]

#: Why a path was left out, by reason code (the ``reason`` of a :class:`SkippedFile`).
SKIP_REASONS: dict[str, str] = {
    "hidden": "hidden (its name starts with '.', e.g. .DS_Store or a macOS ._ resource fork)",
    "unsupported_extension": "not an image type that epochal reads (see epochal.data.IMAGE_EXTENSIONS)",
    "dangling_symlink": "a symlink whose target does not exist",
    "symlink_loop": "a symlink that leads back into itself or a folder above it",
    "duplicate_folder": "a symlink to a folder whose images are already listed",
    "not_a_file": "neither a regular file nor a folder (a FIFO, socket or device)",
    "unreadable": "cannot be read (permissions or an I/O error)",
    "outside_class_folder": "directly in the root, not inside a class folder",
    "undecodable": "could not be decoded as an image",
}

#: Reasons that mean a file meant as an image is broken (``strict=True`` refuses them).
BROKEN_REASONS: tuple[str, ...] = ("dangling_symlink", "symlink_loop", "unreadable", "undecodable")

#: The kinds of :class:`TableFinding`, and what each means.
TABLE_FINDINGS: dict[str, str] = {
    "malformed_rows": "rows with a different number of fields than the header, skipped",
    "dropped_no_target": "rows without a value in the target column, dropped",
    "text_in_numeric": "text in a number column, read as missing (filled with the training median)",
    "numbers_as_categories": "a column of numbers with some text in it, read as categories",
    "all_missing": "a column whose every value is missing: it carries no information",
    "unseen_categories": "categories that training never saw, encoded as unknown",
}


@dataclass(frozen=True)
class SkippedFile:
    """One path left out, with a reason code of :data:`SKIP_REASONS` and a detail (the error, the suffix)."""

    path: str
    reason: str
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True)
class TableFinding:
    """Something a table reader or preprocessor did to rows or values (a kind of :data:`TABLE_FINDINGS`).

    Attributes:
        kind: what happened.
        source: the file (or ``DataFrame``) it happened in.
        count: how many rows or values it concerns.
        column: the column, where there is one.
        part: ``train`` or ``valid`` for what preprocessing found, None for what reading found.
        examples: a few of the values concerned (text in a number column, unseen categories).
        lines: 1-based line numbers in the file (malformed rows).
    """

    kind: str
    source: str
    count: int
    column: str | None = None
    part: str | None = None
    examples: tuple[str, ...] = ()
    lines: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "source": self.source, "count": self.count}
        for key in ("column", "part"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.examples:
            out["examples"] = list(self.examples)
        if self.lines:
            out["lines"] = list(self.lines)
        return out


@dataclass
class DataReport:
    """Everything a data pipeline skipped or reinterpreted (see the module docstring).

    Attributes:
        skipped_files: paths left out while listing or packing images, with reasons.
        empty_classes: classes pinned by ``classes=`` that have no images in a folder.
        tables: what reading and preprocessing tables found.
    """

    skipped_files: list[SkippedFile] = field(default_factory=list)
    empty_classes: list[str] = field(default_factory=list)
    tables: list[TableFinding] = field(default_factory=list)

    def skipped_counts(self) -> dict[str, int]:
        """Skipped paths per reason, in the order of :data:`SKIP_REASONS`."""
        counts = Counter(s.reason for s in self.skipped_files)
        return {reason: counts[reason] for reason in SKIP_REASONS if counts[reason]}

    def table_counts(self) -> dict[str, int]:
        """Rows or values concerned per kind of table finding."""
        counts: Counter[str] = Counter()
        for finding in self.tables:
            counts[finding.kind] += finding.count
        return {kind: counts[kind] for kind in TABLE_FINDINGS if counts[kind]}

    def __bool__(self) -> bool:
        return bool(self.skipped_files or self.empty_classes or self.tables)

    def summary(self) -> str:
        """One line: ``3 skipped file(s) (2 hidden, 1 undecodable); table: 2 unseen_categories``."""
        parts = []
        if self.skipped_files:
            reasons = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in self.skipped_counts().items())
            parts.append(f"{len(self.skipped_files)} skipped file(s) ({reasons})")
        if self.empty_classes:
            parts.append(f"classes without images: {self.empty_classes}")
        if self.tables:
            counts = self.table_counts().items()
            parts.append("table: " + ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in counts))
        return "; ".join(parts) if parts else "nothing skipped or reinterpreted"

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as written to ``data_report.json``."""
        return {
            "version": 1,
            "summary": self.summary(),
            "skipped_files": {
                "count": len(self.skipped_files),
                "by_reason": self.skipped_counts(),
                "reasons": {r: SKIP_REASONS[r] for r in self.skipped_counts()},
                "files": [s.to_dict() for s in sorted(self.skipped_files, key=lambda s: (s.path, s.reason))],
            },
            "empty_classes": list(self.empty_classes),
            "tables": [f.to_dict() for f in self.tables],
        }

    def write(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_dict` as JSON, atomically."""
        write_json_atomic(path, self.to_dict(), indent=1)

    @classmethod
    def merge(cls, reports: Iterable[DataReport | None]) -> DataReport:
        """One report holding every entry of ``reports`` (a path skipped twice is listed once)."""
        merged = cls()
        for report in reports:
            if report is None:
                continue
            for skipped in report.skipped_files:
                if skipped not in merged.skipped_files:
                    merged.skipped_files.append(skipped)
            merged.empty_classes += [c for c in report.empty_classes if c not in merged.empty_classes]
            merged.tables += report.tables
        return merged


def undecodable(bad: Mapping[str, str]) -> list[SkippedFile]:
    """:class:`SkippedFile` entries for the files packing could not decode (path -> error)."""
    return [SkippedFile(path, "undecodable", reason) for path, reason in sorted(bad.items())]


def skipped_summary(skipped: Sequence[SkippedFile], examples: int = 3) -> str:
    """``2 hidden (a/.DS_Store, b/._x.jpg), 1 dangling symlink (c/y.jpg)``: counts per reason with examples."""
    by_reason: dict[str, list[str]] = {}
    for entry in skipped:
        by_reason.setdefault(entry.reason, []).append(entry.path)
    parts = []
    for reason, paths in by_reason.items():
        shown = ", ".join(paths[:examples]) + (", ..." if len(paths) > examples else "")
        parts.append(f"{len(paths)} {reason.replace('_', ' ')} ({shown})")
    return ", ".join(parts)


def warn_skipped(skipped: Sequence[SkippedFile], where: str, stacklevel: int = 3) -> None:
    """One warning naming how many paths under ``where`` were skipped, per reason, with examples."""
    if skipped:
        warnings.warn(
            f"{where}: skipped {len(skipped)} path(s): {skipped_summary(skipped)}; every path with its "
            "reason is in ImageItems.skipped (info['data_report']; data_report.json in a run folder)",
            stacklevel=stacklevel + 1,
        )
