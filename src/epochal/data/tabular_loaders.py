"""``tabular_loaders``: from a CSV file or DataFrame to fitted preprocessing and tensor loaders.

Malformed rows (a different number of fields than the header) are skipped and reported by line
number, or raise with ``strict``; rows without a target are dropped and counted; a file that is
not valid in its encoding (``file_encoding``, UTF-8 by default) is an error naming the line; a
target with a single class is refused. What was skipped or reinterpreted is in
``info["data_report"]`` (:mod:`~epochal.data.report`).
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Sequence

import torch

from epochal.data.base import DataLoaders
from epochal.data.images import _checked_drop_last
from epochal.data.loaders import TensorLoader
from epochal.data.report import DataReport, TableFinding
from epochal.data.splits import random_split, stratified_split
from epochal.data.tabular import DEFAULT_NA_VALUES, TabularPreprocessor, clean_frame, require_pandas
from epochal.data.text_files import check_encoding, encoding_error

__all__ = ["MalformedRowsError", "read_table", "tabular_loaders", "tensor_loader_variant"]


class MalformedRowsError(ValueError):
    """Rows of a CSV file whose field count differs from the header's.

    Attributes:
        lines: 1-based line numbers of the malformed rows.
    """

    def __init__(self, path: str, lines: list[int], expected: int):
        self.lines = lines
        shown = ", ".join(map(str, lines[:20])) + (" ..." if len(lines) > 20 else "")
        super().__init__(
            f"{path}: {len(lines)} malformed row(s) (expected {expected} fields) at line(s) {shown}"
        )


def read_table(
    path: str | os.PathLike,
    na_values: Sequence[str] = DEFAULT_NA_VALUES,
    strict: bool = False,
    file_encoding: str = "utf-8",
) -> tuple[object, list[int]]:
    """Read a CSV with a header row, tolerating spaces after commas and malformed rows.

    Args:
        path: the CSV file.
        na_values: cell values read as missing.
        strict: raise :class:`MalformedRowsError` instead of skipping malformed rows.
        file_encoding: the file's text encoding (``utf-8``; ``cp1252`` for Excel on Windows,
            ``latin-1``); a byte order mark is dropped from the first column name.

    Returns:
        ``(DataFrame, skipped line numbers)``; ``frame.attrs["source"]`` is the path, so the
        preprocessor's warnings name the file.

    Raises:
        FileEncodingError: a line is not valid ``file_encoding`` (the error names the line).
        MalformedRowsError: ``strict`` and some rows have the wrong number of fields.
    """
    pd = require_pandas()
    check_encoding(file_encoding)
    bad, expected = [], 0
    try:
        with open(path, newline="", encoding=file_encoding) as handle:
            reader = csv.reader(handle, skipinitialspace=True)
            for number, row in enumerate(reader, start=1):
                if number == 1:
                    expected = len(row)
                elif row and any(cell.strip() for cell in row) and len(row) != expected:
                    bad.append(number)
    except UnicodeDecodeError as error:
        option = "file_encoding= (in a recipe: data.options.file_encoding)"
        raise encoding_error(path, file_encoding, error, option) from None
    if bad and strict:
        raise MalformedRowsError(str(path), bad, expected)
    frame = pd.read_csv(
        path,
        skiprows=[n - 1 for n in bad],
        skipinitialspace=True,
        na_values=list(na_values),
        keep_default_na=True,
        skip_blank_lines=True,
        encoding=file_encoding,
    )
    frame.columns = [str(c).strip().lstrip("\ufeff") for c in frame.columns]
    frame.attrs["source"] = str(path)
    if bad:
        warnings.warn(f"{path}: skipped {len(bad)} malformed row(s) at line(s) {bad[:20]}", stacklevel=2)
    return frame, bad


def _split(labels: torch.Tensor, classification: bool, valid_pct: float, seed: int):
    if classification:
        return stratified_split(labels.numpy(), valid_pct, seed)
    return random_split(len(labels), valid_pct, seed)


def tabular_loaders(
    data,
    target: str,
    categorical: Sequence[str] | None = None,
    continuous: Sequence[str] | None = None,
    valid_pct: float = 0.2,
    seed: int = 0,
    batch_size: int = 256,
    *,
    valid_data=None,
    task: str = "auto",
    scale: str | None = "standard",
    bins: int = 0,
    encoding: str = "embedding",
    missing_indicator: bool = True,
    na_values: Sequence[str] = DEFAULT_NA_VALUES,
    strict: bool = False,
    balance: str | None = None,
    device: torch.device | str = "cpu",
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = False,
    valid_batch_size: int | None = None,
    file_encoding: str = "utf-8",
) -> DataLoaders:
    """Fit a :class:`~epochal.data.tabular.TabularPreprocessor` on training rows and build loaders.

    Args:
        data: a CSV path or a pandas DataFrame.
        target: the target column.
        categorical: input columns (inferred when None).
        continuous: as for ``categorical``.
        valid_pct: seeded validation share (stratified for classification), unless ``valid_data``.
        seed: seed of the split and the epoch orders.
        batch_size: training batch size per rank.
        valid_data: a separate validation CSV or DataFrame.
        task: see the preprocessor.
        scale: as for ``task``.
        bins: as for ``task``.
        encoding: as for ``task``.
        missing_indicator: as for ``task``.
        na_values: as for ``task``.
        strict: raise on malformed CSV rows instead of skipping them.
        balance: class balancing of the training order.
        device: where the tensors (and so every batch) live.
        rank: this process's share under DDP.
        world_size: the number of processes of that job.
        drop_last: drop the last incomplete training batch.
        valid_batch_size: default four times ``batch_size``.
        file_encoding: text encoding of the CSV files (``utf-8``; ``cp1252``, ``latin-1`` ...).

    Returns:
        :class:`~epochal.data.base.DataLoaders`; batches are ``((categorical, continuous), targets)``
        (one float tensor with ``encoding='onehot'``); ``info`` has ``cardinalities``,
        ``n_continuous``, ``num_classes``, ``preprocessor``, ``task``, ``encoding``,
        ``class_counts`` (training rows per class; None for regression), ``skipped_rows``,
        ``dropped_no_target``, ``train_size``, ``valid_size`` and ``data_report`` (a
        :class:`~epochal.data.report.DataReport` of every skipped row and reinterpreted value).

    Raises:
        ValueError: a classification target with a single class (naming the column and value).
        FileEncodingError: a CSV line that is not valid ``file_encoding``.
    """
    reading = {"na_values": na_values, "strict": strict, "file_encoding": file_encoding}
    frame, skipped, dropped, findings = _read_labelled(data, target, **reading)
    prep = TabularPreprocessor(
        categorical, continuous, target, task, missing_indicator, scale, encoding, na_values, bins
    )
    if valid_data is None:
        train_frame, valid_frame = _split_frame(frame, prep, valid_pct, seed)
    else:
        valid_frame, more_skipped, more_dropped, more_findings = _read_labelled(valid_data, target, **reading)
        skipped, dropped, findings = skipped + more_skipped, dropped + more_dropped, findings + more_findings
        train_frame = frame
        prep.fit_target(_concat(frame[[target]], valid_frame[[target]])[target])
    _check_classes(prep, [frame] if valid_data is None else [frame, valid_frame])
    prep.fit(train_frame, fit_target=False)
    if balance is not None and prep.task != "classification":
        raise ValueError(f"balance={balance!r} needs class labels, but target {target!r} is a {prep.task} target")
    common = {"device": device, "seed": seed, "rank": rank, "world_size": world_size}
    drop_last = _checked_drop_last(drop_last, len(train_frame) // world_size, batch_size)
    train = _tensor_loader(
        prep, train_frame, "train", batch_size, shuffle=True, balance=balance, drop_last=drop_last, **common
    )
    valid = None
    if len(valid_frame):
        valid = _tensor_loader(prep, valid_frame, "valid", valid_batch_size or 4 * batch_size, shuffle=False, **common)
    info = _info(prep, train, len(valid_frame), skipped, dropped)
    info["data_report"] = DataReport(tables=findings + prep.findings)  # reading's, then fitting's and transforming's
    return DataLoaders(train=train, valid=valid, classes=prep.classes, info=info)


def tensor_loader_variant(train: TensorLoader, batch_size: int, balance: str | None = None) -> TensorLoader:
    """A training loader over the same preprocessed rows with another batch size or balancing.

    The variant shares ``train``'s tensors (no copy, no second preprocessing) and its seed, so a
    training phase can batch the table differently.

    Args:
        train: the training loader built by :func:`tabular_loaders`.
        batch_size: rows per batch (per rank).
        balance: class balancing of the training order, or None.
    """
    return TensorLoader(
        train.inputs if train.tuple_inputs else train.inputs[0],
        train.targets,
        batch_size,
        shuffle=True,
        balance=balance,
        device=train.device,
        seed=train.seed,
        rank=train.rank,
        world_size=train.world_size,
        drop_last=_checked_drop_last(train.drop_last, len(train.targets) // train.world_size, batch_size),
        transform=train.transform,
    )


def _read_labelled(data, target: str, **reading) -> tuple[object, list[int], int, list[TableFinding]]:
    """The frame of ``data`` without rows lacking a target, its skipped lines, dropped-row count and findings."""
    frame, skipped = _load(data, **reading)
    source = frame.attrs.get("source", "the DataFrame")
    if target not in frame.columns:
        raise ValueError(f"{source}: target={target!r} is not a column; columns: {list(frame.columns)}")
    frame, dropped = _drop_missing_target(frame, target, reading["na_values"])
    findings = []
    if skipped:
        findings.append(TableFinding("malformed_rows", source, len(skipped), lines=tuple(skipped)))
    if dropped:
        findings.append(TableFinding("dropped_no_target", source, dropped, column=target))
    return frame, skipped, dropped, findings


def _check_classes(prep: TabularPreprocessor, frames: list) -> None:
    """Refuse a classification target with one class: it trains to accuracy 1.0 without learning anything."""
    if prep.task == "classification" and len(prep.classes) < 2:
        source = " and ".join(f.attrs.get("source", "the DataFrame") for f in frames)
        value = f"the single value {prep.classes[0]!r}" if prep.classes else "no values"
        raise ValueError(
            f"{source}: target column {prep.target!r} has {value} in all {sum(map(len, frames))} labelled "
            "rows; classification needs at least two classes (check the file and the target column, or "
            "set task='regression' for a numeric target)"
        )


def _split_frame(frame, prep: TabularPreprocessor, valid_pct: float, seed: int) -> tuple[object, object]:
    """Seeded training and validation rows (stratified for classification); fits the target first."""
    # Classes come from every labelled row, so a class too rare for the training split is kept.
    prep.fit_target(frame[prep.target])
    classification = prep.task == "classification"
    labels = prep.transform_target(frame[prep.target]) if classification else torch.zeros(len(frame))
    train_idx, valid_idx = _split(labels, classification, valid_pct, seed)
    return frame.iloc[train_idx], frame.iloc[valid_idx]


def _tensor_loader(prep: TabularPreprocessor, frame, part: str, batch_size: int, **settings) -> TensorLoader:
    inputs = prep.transform(frame, part=part)
    return TensorLoader(inputs, prep.transform_target(frame[prep.target]), batch_size, **settings)


def _info(prep: TabularPreprocessor, train: TensorLoader, valid_size: int, skipped, dropped: int) -> dict:
    """What a model and the recipe layer need to know about the table (see :func:`tabular_loaders`)."""
    counts = None
    if prep.task == "classification":
        per_class = torch.bincount(train.targets.cpu(), minlength=len(prep.classes))
        counts = {name: int(c) for name, c in zip(prep.classes, per_class)}
    return {
        "cardinalities": prep.cardinalities,
        "n_continuous": prep.n_continuous,
        "num_classes": prep.num_classes,
        "preprocessor": prep,
        "task": prep.task,
        "encoding": prep.encoding,
        "categorical": prep.categorical_columns,
        "continuous": list(prep.continuous),
        "class_counts": counts,
        "skipped_rows": skipped,
        "dropped_no_target": dropped,
        "train_size": len(train.targets),
        "valid_size": valid_size,
    }


def _load(data, na_values, strict: bool, file_encoding: str):
    pd = require_pandas()
    if isinstance(data, pd.DataFrame):
        return data.reset_index(drop=True), []
    if isinstance(data, (str, os.PathLike)):
        return read_table(data, na_values, strict, file_encoding)
    raise TypeError(f"data must be a CSV path or a pandas DataFrame, got {type(data).__name__}")


def _drop_missing_target(frame, target: str, na_values) -> tuple[object, int]:
    present = clean_frame(frame[[target]], na_values)[target].notna()
    dropped = int((~present).sum())
    if dropped:
        source = frame.attrs.get("source", "the DataFrame")
        warnings.warn(f"{source}: dropped {dropped} row(s) without a value in target column {target!r}", stacklevel=4)
    return frame[present.to_numpy()].reset_index(drop=True), dropped


def _concat(*frames):
    return require_pandas().concat(frames, ignore_index=True)
