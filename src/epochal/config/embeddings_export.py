"""The categorical embeddings a tabular run learnt, written out for reuse (``epochal export --format embeddings``).

Entity embeddings (Guo & Berkhahn, *Entity Embeddings of Categorical Variables*, 2016) place
similar categories near each other; the paper reuses them as features for other models (a
gradient-boosted tree on the embedding coordinates instead of one-hot columns). Each categorical
input of the run's :class:`~epochal.models.tabular.TabularMLP` gets a CSV ``<column>.csv`` with
one row per category: its name (the vocabulary of the run's preprocessor, the unknown level
first; an is-missing indicator ``<column>_na`` has ``<unk>``, ``present``, ``missing``) and its
vector ``dim_0 .. dim_{k-1}``. ``index.json`` lists the columns, their files and sizes.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

from epochal.config.errors import ConfigError
from epochal.utils import atomic_write_text

__all__ = ["embedding_tables", "export_embeddings"]

#: Level names of an is-missing indicator input, in index order.
INDICATOR_LEVELS = ("present", "missing")


def embedding_tables(model, preprocessor) -> dict[str, tuple[list[str], list[list[float]]]]:
    """``{column: (category names, vectors)}`` of every categorical input of a tabular ``model``."""
    from epochal.data.tabular import UNKNOWN

    embeddings = getattr(model, "embeddings", None)
    if embeddings is None or len(embeddings) == 0:
        reason = "one-hot encoded (encoding: onehot) and so" if getattr(model, "onehot", False) else ""
        raise ConfigError(
            f"the run's model ({type(model).__name__}) is {reason} without categorical embeddings; "
            "export --format embeddings is for tabular runs with categorical columns"
        )
    columns = preprocessor.categorical_columns
    levels = [preprocessor.vocab[c] for c in preprocessor.categorical or []]
    levels += [[UNKNOWN, *INDICATOR_LEVELS] for _ in preprocessor.indicators]
    tables = {}
    for column, names, table in zip(columns, levels, embeddings, strict=True):
        weight = table.weight.detach().float().cpu()
        if weight.shape[0] != len(names):
            raise ConfigError(f"column {column!r}: {weight.shape[0]} embedding rows for {len(names)} categories")
        tables[column] = ([str(n) for n in names], weight.tolist())
    return tables


def _file_name(column: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]", "_", column) or "column"
    name, k = f"{base}.csv", 1
    while name in taken:  # two columns that differ only in unusual characters
        name, k = f"{base}_{k}.csv", k + 1
    taken.add(name)
    return name


def _csv_text(names: list[str], vectors: list[list[float]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["category", *(f"dim_{i}" for i in range(len(vectors[0]) if vectors else 0))])
    writer.writerows([name, *(f"{v:.8g}" for v in vector)] for name, vector in zip(names, vectors))
    return buffer.getvalue()


def export_embeddings(target: str | Path, out: str | Path | None = None, which: str | None = None) -> dict[str, Any]:
    """Write a tabular run's categorical embeddings, one CSV per column, into the folder ``out``.

    Args:
        target: a run folder or a checkpoint inside one.
        out: a new (or empty) folder; default ``<run>/embeddings``.
        which: ``best`` or ``last`` checkpoint (default: the run's final weights).

    Returns:
        ``{"path", "format", "bytes", "checkpoint", "columns": {column: {"file", "categories", "dim"}}}``.
    """
    from epochal.config.inference import locate_run, restore_model
    from epochal.data import TabularPreprocessor

    model, config, info, checkpoint = restore_model(target, which)
    if config.data.kind != "tabular" or "preprocessor" not in info:
        raise ConfigError(f"{target} is not a tabular run; export --format embeddings needs one")
    tables = embedding_tables(model, TabularPreprocessor().load_state_dict(info["preprocessor"]))
    folder = Path(out) if out is not None else locate_run(target, which)[0] / "embeddings"
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConfigError(f"--out {folder} already exists and is not an empty folder; give a new folder")
    taken: set[str] = set()
    index = {}
    for column, (names, vectors) in tables.items():
        file = _file_name(column, taken)
        atomic_write_text(folder / file, _csv_text(names, vectors))
        index[column] = {"file": file, "categories": len(names), "dim": len(vectors[0]) if vectors else 0}
    atomic_write_text(folder / "index.json", json.dumps({"checkpoint": str(checkpoint), "columns": index}, indent=2))
    size = sum(p.stat().st_size for p in folder.iterdir())
    return {"path": str(folder), "format": "embeddings", "bytes": size, "checkpoint": str(checkpoint),
            "columns": index}
