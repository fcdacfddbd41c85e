"""What fitting a tabular preprocessor finds in a table and reports instead of reinterpreting silently.

:class:`~epochal.data.tabular.TabularPreprocessor` calls :func:`fit_findings` when it fits: an
empty column and a column of numbers with some text in it (inferred as categorical) are each a
warning naming the file, the column and the count, and a :class:`~epochal.data.report.TableFinding`
for the data report.
"""

from __future__ import annotations

import warnings

from epochal.data.report import TableFinding

__all__ = ["fit_findings", "source_of", "value_examples"]


def source_of(frame) -> str:
    """The file a frame was read from (``read_table`` records it), or a generic name."""
    return str(frame.attrs.get("source") or "the DataFrame")


def value_examples(values, limit: int = 3) -> list[str]:
    """Up to ``limit`` distinct values, as text, for messages and the data report."""
    distinct = list(dict.fromkeys(str(v) for v in values))
    return distinct[:limit] + (["..."] if len(distinct) > limit else [])


def fit_findings(frame, categorical, continuous, inferred: bool, source: str) -> list[TableFinding]:
    """Warn about (and record) empty columns and, where columns were inferred, numbers read as categories."""
    from epochal.data.tabular import require_pandas  # tabular imports this module

    pd = require_pandas()
    findings = []
    for column in [*categorical, *continuous]:
        if len(frame) and frame[column].isna().all():
            findings.append(TableFinding("all_missing", source, len(frame), column=column))
            warnings.warn(
                f"{source}: column {column!r} is empty (all {len(frame)} values missing), so it carries no "
                "information; drop it from the inputs or check na_values",
                stacklevel=3,
            )
    for column in categorical if inferred else []:
        present = frame[column].dropna()
        if pd.api.types.is_numeric_dtype(present) or pd.api.types.is_bool_dtype(present):
            continue
        parsed = pd.to_numeric(present, errors="coerce")
        text = present[parsed.isna()]
        if len(present) and parsed.notna().mean() >= 0.5 and len(text):
            examples = value_examples(text)
            findings.append(TableFinding("numbers_as_categories", source, len(text), column, examples=tuple(examples)))
            warnings.warn(
                f"{source}: column {column!r} holds numbers and {len(text)} text value(s) ({', '.join(examples)}), "
                "so it is read as categories; list it in continuous= to read it as numbers (the text then "
                "becomes missing)",
                stacklevel=3,
            )
    return findings
