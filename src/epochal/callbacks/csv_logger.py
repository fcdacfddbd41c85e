"""CSVLogger: the per-epoch history as a CSV file, one row per epoch, for spreadsheets and pandas."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from epochal.callbacks.base import Callback
from epochal.utils import atomic_write_text

__all__ = ["CSVLogger"]


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)  # repr keeps every digit
    return value


class CSVLogger(Callback):
    """Write one row per epoch with every key of the learner's history to a CSV file.

    The columns are the history keys in the order they first appear (``epoch, step, phase, lr``,
    then the logged metrics; ``epoch`` counts from 1, as on the screen); a key that a later epoch
    adds for the first time extends the header and the file is rewritten once, so the header always
    describes every row. Missing values are empty cells. Floats are written with all their digits.

    On a resumed fit the file is rewritten from the restored history, so it continues with one row
    per epoch, a single header and no rows from epochs that ran after the checkpoint. A new fit
    overwrites the file unless ``append=True``, which keeps the rows already there.

    Args:
        path: the CSV file (default: ``<run_dir>/metrics.csv``).
        separator: the field separator.
        append: on a new (not resumed) fit, keep the existing rows and append after them.

    Examples:
        >>> Learner(model, data, callbacks=[CSVLogger("metrics.csv")]).fit(3)
        >>> pandas.read_csv("metrics.csv")["valid/loss"]
    """

    order = 85
    rank_zero_only = True  # in a data-parallel job, rank 0 alone writes and prints

    def __init__(self, path: str | Path | None = None, separator: str = ",", append: bool = False):
        if len(separator) != 1:
            raise ValueError(f"CSVLogger: separator must be one character, got {separator!r}")
        self.path = Path(path) if path is not None else None
        self.separator = separator
        self.append = append
        self.columns: list[str] = []
        self._kept: list[dict[str, Any]] = []
        self._written: int | None = None

    @property
    def file(self) -> Path:
        """The CSV file written to."""
        return self.path if self.path is not None else self.in_run_dir("metrics.csv", "path")

    def before_fit(self) -> None:
        resumed = self.learner.state.step > 0
        self._kept = self._read_rows() if self.append and not resumed else []
        self.columns = []
        self._written = self.learner.history[-1]["epoch"] if self.learner.history else None
        self._rewrite()

    def _read_rows(self) -> list[dict[str, Any]]:
        if not self.file.is_file():
            return []
        with open(self.file, newline="") as handle:
            return list(csv.DictReader(handle, delimiter=self.separator))

    def _rows(self) -> list[dict[str, Any]]:
        return self._kept + list(self.learner.history)

    def _extend_columns(self, record: dict[str, Any]) -> bool:
        new = [key for key in record if key not in self.columns]
        self.columns.extend(new)
        return bool(new)

    def _rewrite(self) -> None:
        """Write every row; atomically when a file is there, whose rows a crash must not lose.

        A fresh fit has no rows yet: a stale file is removed and the first epoch writes the new
        one plainly, so an ordinary fit pays for no ``fsync`` (two cost 10-30 ms on a busy disk).
        """
        rows = self._rows()
        if not rows:
            self.file.unlink(missing_ok=True)
            return
        for row in rows:
            self._extend_columns(row)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, delimiter=self.separator, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
        if self.file.exists():
            atomic_write_text(self.file, buffer.getvalue())
        else:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            self.file.write_text(buffer.getvalue(), encoding="utf-8")

    def after_epoch(self) -> None:
        history = self.learner.history
        if (not history or history[-1]["epoch"] != self.learner.state.epoch_number
                or self._written == history[-1]["epoch"]):
            return  # the epoch was cancelled before it was recorded, or is already written
        record = history[-1]
        self._written = record["epoch"]
        if self._extend_columns(record):
            self._rewrite()  # the header changes: rewrite once so every row matches it
            return
        with open(self.file, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns, delimiter=self.separator, lineterminator="\n")
            writer.writerow({k: _cell(v) for k, v in record.items()})

    def after_cancel_fit(self) -> None:
        self.after_epoch()  # an earlier callback cancelled the fit at the end of an epoch

    @property
    def name(self) -> str:
        return "csv_logger"
