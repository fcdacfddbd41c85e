"""Hyperparameter search with Optuna: search spaces from YAML, the pruning callback, storages, summaries.

Every trial is an ordinary run folder under its study folder; the study lives in a storage that
many worker processes, on one machine or many, share. See ``docs/tuning.md``.

Examples:
    >>> from epochal.tuning import tune
    >>> result = tune("default", "space.yaml", trials=20, workers=2)
    >>> result["best_params"], result["best_yaml"]
"""

from epochal.tuning.pruning import OptunaPruning
from epochal.tuning.space import Param, SearchSpace, load_space
from epochal.tuning.study import tune

__all__ = ["OptunaPruning", "Param", "SearchSpace", "load_space", "tune"]
