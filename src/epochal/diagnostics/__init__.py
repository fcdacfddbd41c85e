"""Diagnostics: the sanity check (overfit one batch and its causes) and data checks.

Examples:
    >>> report = learner.overfit_batch()          # or epochal.diagnostics.sanity_check(learner)
    >>> print(report)                             # one line per check; report.passed, report.to_dict()
"""

from epochal.diagnostics.data_checks import (
    data_label_count_check,
    duplicates_check,
    input_normalization_check,
    label_signal_check,
    labels_constant_check,
    sample_hashes,
)
from epochal.diagnostics.overfit import SWEEP_RATES, OverfitRun, train_on_batch
from epochal.diagnostics.report import CHECKS, Check, SanityReport
from epochal.diagnostics.sanity import sanity_check

__all__ = [
    "CHECKS",
    "SWEEP_RATES",
    "Check",
    "OverfitRun",
    "SanityReport",
    "data_label_count_check",
    "duplicates_check",
    "input_normalization_check",
    "label_signal_check",
    "labels_constant_check",
    "sample_hashes",
    "sanity_check",
    "train_on_batch",
]
