"""Tabular preprocessing that is fitted once and stored, so inference applies the same transform.

The recipe follows fastai's tabular pipeline (Howard and Gugger, *fastai: A Layered API for Deep
Learning*, 2020) and entity embeddings (Guo and Berkhahn, *Entity Embeddings of Categorical
Variables*, 2016): fill missing continuous values with the training median and add an
is-missing indicator; map categories to indices with an unknown level at 0; normalise continuous
inputs. The preprocessor supplies cardinalities; embedding sizes are the model's business.

Nothing is reinterpreted silently: an empty column, a column of numbers with some text in it,
text in a number column and categories unseen when fitting are each a warning naming the file
(``frame.attrs["source"]``, set by :func:`~epochal.data.tabular_loaders.read_table`), the column
and the count, and a :class:`~epochal.data.report.TableFinding` in :attr:`TabularPreprocessor.findings`.

Continuous columns are scaled by one rule for all (``standard``, ``minmax``, ``quantile``) or,
with ``auto``, per column: ``quantile`` (ranks mapped to a standard normal, as scikit-learn's
``QuantileTransformer(output_distribution="normal")``) for heavy-tailed or spiky columns, whose
standard scores would squeeze most rows into a sliver (Adult's ``capital_gain``: 92% zeros and a
long tail up to 99,999), ``standard`` for the others.

``bins`` adds the piecewise linear encoding of Gorishniy, Rubachev and Babenko, *On Embeddings for
Numerical Features in Tabular Deep Learning* (NeurIPS 2022): each continuous column is cut at
``bins`` training quantiles and encoded as one value per bin, 1 for the bins below ``x``, 0 above,
and ``x``'s position inside its own bin. An MLP then fits a piecewise linear function of each
column with its first layer, which is what lets it approach gradient-boosted trees on tables like
Adult.

pandas is optional (extra ``tabular``) and imported only when a preprocessor is used.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from epochal.data.report import TableFinding
from epochal.data.tabular_findings import fit_findings, source_of, value_examples
from epochal.utils import atomic_write_text

__all__ = ["DEFAULT_NA_VALUES", "MISSING", "UNKNOWN", "TabularPreprocessor", "clean_frame", "require_pandas"]

#: Cell values read as missing (after stripping spaces), besides empty cells and NaN.
DEFAULT_NA_VALUES: tuple[str, ...] = ("?", "", "NA", "N/A", "NaN", "nan", "None", "null")
#: Category level 0: unseen at fit time (and missing, when no value was missing at fit time).
UNKNOWN = "<unk>"
#: Level of a missing category, present when the training data had missing values there.
MISSING = "<na>"
SCALES: tuple[str | None, ...] = ("standard", "minmax", "quantile", "auto", None)
#: Training quantiles kept per column for ``quantile`` scaling.
N_QUANTILES = 200
#: ``auto`` picks ``quantile`` for a column whose skewness exceeds this (in absolute value) ...
AUTO_SKEW = 1.0
#: ... or whose most frequent value holds more than this share of the rows.
AUTO_MODE_SHARE = 0.5
ENCODINGS: tuple[str, ...] = ("embedding", "onehot")
TASKS: tuple[str, ...] = ("auto", "classification", "regression")


def require_pandas():
    """Import pandas or explain which extra provides it."""
    try:
        import pandas
    except ImportError as error:  # pragma: no cover - pandas is installed in development
        raise ImportError("tabular data needs pandas: pip install 'epochal[tabular]'") from error
    return pandas


def _text(series):
    """Values as clean strings (stripped; integral floats without '.0'); missing stays NaN."""
    pd = require_pandas()
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):

        def fmt(v):
            return str(int(v)) if float(v).is_integer() else repr(float(v))

        return series.map(lambda v: fmt(v) if pd.notna(v) else v)
    return series.map(lambda v: str(v).strip() if pd.notna(v) else v)


def clean_frame(frame, na_values: Sequence[str] = DEFAULT_NA_VALUES):
    """Strip spaces around text cells and turn ``na_values`` into NaN (a copy)."""
    pd = require_pandas()
    out = frame.copy()
    missing = set(na_values)
    for column in out.columns:
        if not pd.api.types.is_numeric_dtype(out[column]):
            stripped = out[column].map(lambda v: v.strip() if isinstance(v, str) else v)
            out[column] = stripped.map(lambda v: float("nan") if isinstance(v, str) and v in missing else v)
    return out


class TabularPreprocessor:
    """Fit on training rows, then turn any frame into model inputs the same way.

    Args:
        categorical: categorical columns; None infers (text, bool and category dtypes).
        continuous: continuous columns; None infers (the remaining numeric columns).
        target: target column (excluded from the inputs).
        task: ``classification``, ``regression`` or ``auto`` (text or few integer values ->
            classification).
        missing_indicator: add a ``<column>_na`` categorical for continuous columns that had
            missing values when fitted.
        scale: ``standard`` (zero mean, unit variance), ``minmax`` (training range to [-1, 1]),
            ``quantile`` (training ranks to a standard normal), ``auto`` (``quantile`` for skewed
            or spiky columns, else ``standard``; the choice is in :attr:`scales`) or None.
        encoding: ``embedding`` gives ``(categorical indices, continuous)``; ``onehot`` gives one
            float tensor of one-hot columns followed by the continuous ones.
        na_values: cell values read as missing.
        bins: quantile bins of the piecewise linear encoding of each continuous column, appended
            after the scaled columns (0: none); columns with fewer distinct values get fewer.

    Examples:
        >>> import pandas as pd
        >>> frame = pd.DataFrame({"color": ["red", "blue", "red"], "size": [1.0, None, 3.0], "y": [0, 1, 0]})
        >>> prep = TabularPreprocessor(target="y").fit(frame)
        >>> prep.cardinalities, prep.continuous
        ([3, 3], ['size'])
    """

    def __init__(
        self,
        categorical: Sequence[str] | None = None,
        continuous: Sequence[str] | None = None,
        target: str | None = None,
        task: str = "auto",
        missing_indicator: bool = True,
        scale: str | None = "standard",
        encoding: str = "embedding",
        na_values: Sequence[str] = DEFAULT_NA_VALUES,
        bins: int = 0,
    ):
        for name, value, valid in (
            ("scale", scale, SCALES),
            ("encoding", encoding, ENCODINGS),
            ("task", task, TASKS),
        ):
            if value not in valid:
                raise ValueError(f"{name}={value!r} is not valid; use one of {valid}")
        self.categorical = None if categorical is None else list(categorical)
        self.continuous = None if continuous is None else list(continuous)
        self.target, self.task = target, task
        self.missing_indicator, self.scale, self.encoding = missing_indicator, scale, encoding
        self.na_values = list(na_values)
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 0 or bins == 1:
            raise ValueError(f"bins={bins!r} is not valid; use 0 (no piecewise linear encoding) or an int >= 2")
        self.bins = bins
        self.vocab: dict[str, list[str]] = {}
        self.stats: dict[str, dict[str, float]] = {}
        self.indicators: list[str] = []
        self.scales: dict[str, str | None] = {}
        self.classes: list[str] | None = None
        self.report: dict[str, dict[str, Any]] = {}
        self.findings: list[TableFinding] = []
        self.fitted = False

    # ----- fitting ---------------------------------------------------------------------------
    def _infer_columns(self, frame) -> None:
        pd = require_pandas()
        inputs = [c for c in frame.columns if c != self.target]
        given = set(self.categorical or []) | set(self.continuous or [])
        unknown = sorted(given - set(inputs))
        if unknown:
            raise ValueError(
                f"columns {unknown} are not in the data (or are the target); available: {inputs}"
            )
        if self.categorical is None:
            rest = [c for c in inputs if c not in set(self.continuous or [])]
            self.categorical = [
                c
                for c in rest
                if self.continuous is not None
                or not pd.api.types.is_numeric_dtype(frame[c])
                or pd.api.types.is_bool_dtype(frame[c])
            ]
        if self.continuous is None:
            self.continuous = [c for c in inputs if c not in set(self.categorical)]
        bad = [c for c in self.continuous if not _mostly_numeric(frame[c])]
        if bad:
            raise ValueError(
                f"{source_of(frame)}: continuous columns {bad} hold text in more than 5% of their values; "
                "list them as categorical"
            )

    def fit(self, frame, fit_target: bool = True) -> TabularPreprocessor:
        """Learn columns, vocabularies, fill values, scaling and target classes from ``frame``.

        Args:
            frame: training rows.
            fit_target: also learn the task and classes from ``frame[target]``; pass False after
                :meth:`fit_target` on more rows (so classes rare in training are kept).
        """
        pd = require_pandas()
        frame = clean_frame(frame, self.na_values)
        inferred = self.categorical is None
        self._infer_columns(frame)
        self.findings = fit_findings(frame, self.categorical, self.continuous, inferred, source_of(frame))
        for column in self.categorical:
            text = _text(frame[column])
            levels = sorted(set(text.dropna()))
            self.vocab[column] = [UNKNOWN] + ([MISSING] if text.isna().any() else []) + levels
        self.indicators = []
        for column in self.continuous:
            values = pd.to_numeric(frame[column], errors="coerce")
            fill = float(values.median()) if values.notna().any() else 0.0
            filled = values.fillna(fill)
            self.stats[column] = {
                "fill": fill,
                "mean": float(filled.mean()),
                "std": float(filled.std(ddof=0)),
                "min": float(filled.min()),
                "max": float(filled.max()),
            }
            self.scales[column] = self._column_scale(filled)
            if self.scales[column] == "quantile":
                levels = [i / (N_QUANTILES - 1) for i in range(N_QUANTILES)]
                self.stats[column]["quantiles"] = [float(q) for q in filled.quantile(levels)]
            if self.bins:
                cuts = filled.quantile([i / self.bins for i in range(self.bins + 1)])
                self.stats[column]["edges"] = sorted({float(q) for q in cuts})
            if self.missing_indicator and values.isna().any():
                self.indicators.append(column)
        if self.target is not None and fit_target:
            self.fit_target(frame[self.target])
        self.fitted = True
        return self

    def _column_scale(self, filled) -> str | None:
        """The scaling of one column: ``scale`` itself, or what ``auto`` picks from its shape."""
        if self.scale != "auto":
            return self.scale
        skew = float(filled.skew()) if len(filled) > 2 else 0.0
        mode_share = float(filled.value_counts(normalize=True).iloc[0]) if len(filled) else 0.0
        spiky = abs(skew) > AUTO_SKEW or mode_share > AUTO_MODE_SHARE
        return "quantile" if spiky and filled.nunique() > 2 else "standard"

    def fit_target(self, series) -> TabularPreprocessor:
        """Learn the task (when ``auto``) and the sorted class labels from target values."""
        pd = require_pandas()
        series = clean_frame(series.to_frame(), self.na_values).iloc[:, 0].dropna()
        if self.task == "auto":
            numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
            few_ints = numeric and bool((series % 1 == 0).all()) and series.nunique() <= 20
            self.task = "classification" if (not numeric or few_ints) else "regression"
        if self.task == "classification":
            self.classes = sorted(set(_target_text(series)))
        return self

    # ----- properties ------------------------------------------------------------------------
    @property
    def categorical_columns(self) -> list[str]:
        """Categorical model inputs: the categorical columns, then the is-missing indicators."""
        return list(self.categorical or []) + [f"{c}_na" for c in self.indicators]

    @property
    def cardinalities(self) -> list[int]:
        """Levels per categorical input, the unknown level included (embedding table sizes)."""
        return [len(self.vocab[c]) for c in self.categorical or []] + [3] * len(self.indicators)

    @property
    def n_continuous(self) -> int:
        """Width of the continuous input: the scaled columns, then their piecewise linear bins."""
        edges = [self.stats[c].get("edges", []) for c in self.continuous or []]
        return len(self.continuous or []) + sum(max(len(e) - 1, 0) for e in edges)

    @property
    def num_classes(self) -> int | None:
        return None if self.classes is None else len(self.classes)

    # ----- transforming ----------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError(
                "TabularPreprocessor is not fitted; call fit(frame) or load a saved state first"
            )

    def transform(self, frame, part: str | None = None):
        """Model inputs for ``frame``: ``(categorical long (N, k), continuous float (N, m))``, or one
        float tensor with ``encoding='onehot'``.

        Unseen categories and text found in continuous columns are counted in :attr:`report`
        (``unseen``, ``coerced``, with a few ``examples`` per column), warned about naming the file,
        and added to :attr:`findings` (tagged with ``part``, e.g. ``valid``).
        """
        pd = require_pandas()
        self._check_fitted()
        missing = [c for c in (self.categorical or []) + (self.continuous or []) if c not in frame.columns]
        if missing:
            raise ValueError(
                f"{source_of(frame)}: columns {missing} are missing from the data; the preprocessor was "
                f"fitted on them (columns here: {list(frame.columns)})"
            )
        source = source_of(frame)
        frame = clean_frame(frame, self.na_values)
        self.report = {"unseen": {}, "coerced": {}, "missing": {}, "examples": {}}
        codes = [self._encode_category(c, _text(frame[c])) for c in self.categorical]
        cont, flags, encoded = [], [], []
        for column in self.continuous:
            raw = frame[column]
            values = pd.to_numeric(raw, errors="coerce")
            text = values.isna() & raw.notna()
            if text.any():
                self.report["coerced"][column] = int(text.sum())
                self.report["examples"][column] = value_examples(raw[text])
            self.report["missing"][column] = int(values.isna().sum())
            if column in self.indicators:
                flags.append(torch.tensor(values.isna().to_numpy(), dtype=torch.long) + 1)
            filled = values.fillna(self.stats[column]["fill"]).to_numpy(dtype="float64")
            cont.append(self._scale(column, filled))
            if len(self.stats[column].get("edges", [])) > 1:
                encoded.append(_piecewise_linear(filled, self.stats[column]["edges"]))
        self._report_transform(source, part)
        cont = [c[:, None] for c in cont] + encoded
        n = len(frame)
        cat = torch.stack(codes + flags, dim=1) if codes or flags else torch.zeros(n, 0, dtype=torch.long)
        con = torch.cat(cont, dim=1).float() if cont else torch.zeros(n, 0)
        if self.encoding == "onehot":
            hot = [
                torch.nn.functional.one_hot(cat[:, i], k).float() for i, k in enumerate(self.cardinalities)
            ]
            return torch.cat(hot + [con], dim=1)
        return cat, con

    def _encode_category(self, column: str, text) -> torch.Tensor:
        vocab = self.vocab[column]
        lookup = {level: i for i, level in enumerate(vocab)}
        na_code = lookup.get(MISSING, 0)
        codes = [na_code if not isinstance(v, str) else lookup.get(v, -1) for v in text]
        unseen = [v for v, c in zip(text, codes) if c < 0]
        if unseen:
            self.report["unseen"][column] = len(unseen)
            self.report["examples"][column] = value_examples(unseen)
        return torch.tensor([max(c, 0) for c in codes], dtype=torch.long)

    def _report_transform(self, source: str, part: str | None) -> None:
        """Warn about (and record) the unseen categories and number-column text of the last transform."""
        where = f"{source} ({part} rows)" if part else source
        kinds = (
            ("unseen", "unseen_categories", f"value(s) of categories not seen when fitting, encoded as {UNKNOWN}"),
            ("coerced", "text_in_numeric", "text value(s) in number columns, read as missing (filled with the median)"),
        )
        for key, kind, what in kinds:
            counts = self.report[key]
            if not counts:
                continue
            listed = ", ".join(f"{c!r}: {n} ({', '.join(self.report['examples'][c])})" for c, n in counts.items())
            warnings.warn(f"{where}: {sum(counts.values())} {what}: {listed}", stacklevel=3)
            self.findings += [
                TableFinding(kind, source, n, column=c, part=part, examples=tuple(self.report["examples"][c]))
                for c, n in counts.items()
            ]

    def _scale(self, column: str, values) -> torch.Tensor:
        stats = self.stats[column]
        x = torch.tensor(values, dtype=torch.float64)
        scale = self.scales.get(column, self.scale)  # states saved before per-column scales: one rule
        if scale == "quantile":
            return _normal_scores(values, stats["quantiles"])
        if scale == "standard":
            return (x - stats["mean"]) / (stats["std"] or 1.0)
        if scale == "minmax":
            span = stats["max"] - stats["min"]
            return 2 * (x - stats["min"]) / span - 1 if span else torch.zeros_like(x)
        return x

    def transform_target(self, series) -> torch.Tensor:
        """Class indices (classification) or float values (regression) for ``series``."""
        pd = require_pandas()
        if self.task == "auto" or (self.task == "classification" and self.classes is None):
            raise RuntimeError("the target is not fitted; call fit(frame) or fit_target(series) first")
        if self.task == "regression":
            values = pd.to_numeric(series, errors="coerce")
            if values.isna().any():
                raise ValueError(
                    f"target {self.target!r} has {int(values.isna().sum())} missing or non-numeric values"
                )
            return torch.as_tensor(values.to_numpy(dtype="float32"))
        lookup = {c: i for i, c in enumerate(self.classes)}
        labels = list(_target_text(series))
        unknown = sorted({label for label in labels if label not in lookup}, key=str)
        if unknown:
            raise ValueError(
                f"target {self.target!r} has labels {unknown[:10]} not seen when fitting; "
                f"known classes: {self.classes}"
            )
        return torch.tensor([lookup[label] for label in labels], dtype=torch.long)

    # ----- storing ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the fitted transform (JSON-serialisable)."""
        self._check_fitted()
        keys = (
            "categorical",
            "continuous",
            "target",
            "task",
            "missing_indicator",
            "scale",
            "encoding",
            "na_values",
            "vocab",
            "stats",
            "indicators",
            "scales",
            "bins",
            "classes",
        )
        return {"version": 1, **{k: getattr(self, k) for k in keys}}

    def load_state_dict(self, state: dict[str, Any]) -> TabularPreprocessor:
        if state.get("version") != 1:
            raise ValueError(f"unknown TabularPreprocessor state version {state.get('version')!r}")
        for key, value in state.items():
            if key != "version":
                setattr(self, key, value)
        self.fitted = True
        return self

    def to_json(self) -> str:
        return json.dumps(self.state_dict(), indent=1)

    @classmethod
    def from_json(cls, text: str) -> TabularPreprocessor:
        return cls().load_state_dict(json.loads(text))

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted state as JSON (atomically)."""
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> TabularPreprocessor:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


def _piecewise_linear(values, edges: Sequence[float]) -> torch.Tensor:
    """Piecewise linear encoding (N, len(edges) - 1): each bin's share of ``x`` above its lower edge."""
    lower = torch.tensor(edges[:-1], dtype=torch.float64)
    width = torch.tensor(edges[1:], dtype=torch.float64) - lower
    x = torch.tensor(np.asarray(values, dtype="float64"))[:, None]  # a copy: pandas arrays may be read-only
    return ((x - lower) / width).clamp(0.0, 1.0)


def _normal_scores(values, quantiles: Sequence[float]) -> torch.Tensor:
    """Standard-normal scores of ``values`` from their rank among the training ``quantiles``.

    Runs of tied quantiles (a value most rows share) get the middle of their rank range: the
    mean of interpolating upwards and downwards, as scikit-learn's ``QuantileTransformer`` does.
    Ranks are clipped to [1e-7, 1 - 1e-7], so values outside the training range stay finite.
    """
    q = np.asarray(quantiles, dtype="float64")
    ranks = np.linspace(0.0, 1.0, len(q))
    x = np.asarray(values, dtype="float64")
    rank = 0.5 * (np.interp(x, q, ranks) - np.interp(-x, -q[::-1], -ranks[::-1]))
    rank = torch.from_numpy(np.clip(rank, 1e-7, 1 - 1e-7))
    return math.sqrt(2.0) * torch.erfinv(2 * rank - 1)


def _target_text(series):
    """Target labels as text, tolerating stray spaces and a trailing period (``>50K.``)."""
    return _text(series).map(
        lambda v: v.rstrip(".").strip() if isinstance(v, str) and not _is_number(v) else v
    )


def _is_number(text: str) -> bool:
    try:
        return not math.isnan(float(text))
    except ValueError:
        return False


def _mostly_numeric(series) -> bool:
    """True when the non-missing values are numbers (a few stray strings are tolerated)."""
    pd = require_pandas()
    present = series.dropna()
    if len(present) == 0 or pd.api.types.is_numeric_dtype(present):
        return True
    parsed = pd.to_numeric(present, errors="coerce")
    return parsed.notna().mean() >= 0.95
