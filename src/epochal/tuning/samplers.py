"""Optuna samplers and pruners by name, their arguments checked against the Optuna classes.

Samplers (how the next trial's parameters are chosen):

* ``tpe``: the Tree-structured Parzen Estimator (Bergstra et al., *Algorithms for Hyper-Parameter
  Optimization*, NeurIPS 2011), Bayesian optimisation that handles conditional parameters; the default.
* ``cmaes``: CMA-ES (Hansen, *The CMA Evolution Strategy: A Tutorial*, 2016) for continuous
  parameters; categoricals are sampled at random beside it.
* ``random``: independent uniform sampling (Bergstra & Bengio, *Random Search for
  Hyper-Parameter Optimization*, JMLR 2012), the baseline to beat.
* ``grid``: every combination of the parameters' grids (floats need a ``step``).

Pruners (which trials stop early, from the per-epoch values reported by
:class:`~epochal.tuning.pruning.OptunaPruning`):

* ``median``: stop a trial whose best value so far is worse than the median of earlier trials at the
  same epoch (the median stopping rule of Golovin et al., *Google Vizier*, KDD 2017); the default.
* ``successive_halving``: asynchronous successive halving (Li et al., *A System for Massively Parallel
  Hyperparameter Tuning*, MLSys 2020).
* ``hyperband``: Hyperband (Li et al., JMLR 2018), several successive-halving brackets.
* ``percentile``: the median rule at another percentile (``percentile: 25.0`` keeps the top quarter).
* ``threshold``: stop a trial whose value leaves ``[lower, upper]`` or is NaN (a diverging run).
* ``none``: never prune.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from epochal.config.errors import ConfigError, check_kwargs
from epochal.tuning._optuna import require_optuna
from epochal.utils import unknown_name_error

__all__ = ["PRUNERS", "SAMPLERS", "build_pruner", "build_sampler"]

#: Sampler names -> Optuna class names.
SAMPLERS = {"tpe": "TPESampler", "cmaes": "CmaEsSampler", "random": "RandomSampler", "grid": "GridSampler"}
#: Pruner names -> Optuna class names.
PRUNERS = {
    "median": "MedianPruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "hyperband": "HyperbandPruner",
    "percentile": "PercentilePruner",
    "threshold": "ThresholdPruner",
    "none": "NopPruner",
}


def _arguments(spec: Mapping[str, Any] | str | None, default: str) -> tuple[str, dict[str, Any]]:
    if spec is None:
        return default, {}
    if isinstance(spec, str):
        return spec, {}
    arguments = dict(spec)
    return str(arguments.pop("name", default)), arguments


def build_sampler(spec: Mapping[str, Any] | str | None, space, seed: int | None = None):
    """The Optuna sampler ``spec`` names (``"tpe"`` or ``{"name": "tpe", "n_startup_trials": 5}``).

    Args:
        spec: a name in :data:`SAMPLERS` or a mapping with ``name`` and the sampler's arguments.
        space: the :class:`~epochal.tuning.space.SearchSpace` (the grid sampler's grid; TPE models
            conditional parameters jointly when the space has any).
        seed: the sampler's seed unless ``spec`` gives one.

    Raises:
        ConfigError: for an unknown name or argument (with the closest one), or a float without a
            step under the grid sampler.
    """
    optuna = require_optuna()
    name, arguments = _arguments(spec, "tpe")
    if name not in SAMPLERS:
        raise ConfigError(f"sampler: {unknown_name_error('sampler', name, SAMPLERS)}")
    cls = getattr(optuna.samplers, SAMPLERS[name])
    if name == "grid":
        arguments.setdefault("search_space", space.grid())
    if name == "tpe" and space.conditional:
        arguments.setdefault("multivariate", True)
        arguments.setdefault("group", True)  # one joint model per set of co-occurring parameters
    arguments.setdefault("seed", seed)
    try:
        check_kwargs(cls.__init__, arguments, f"of sampler {name!r} (optuna.samplers.{cls.__name__})")
    except ValueError as exc:
        raise ConfigError(f"sampler: {exc}") from None
    if name == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError as exc:
            raise ImportError("the cmaes sampler needs the cmaes package: pip install 'epochal[tune]'") from exc
    try:
        return _quietly(optuna, lambda: cls(**arguments))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"sampler {name!r}: {exc}") from None


def build_pruner(spec: Mapping[str, Any] | str | None):
    """The Optuna pruner ``spec`` names (``"median"`` or ``{"name": "hyperband", "min_resource": 1}``).

    Raises:
        ConfigError: for an unknown name or argument, with the closest one.
    """
    optuna = require_optuna()
    name, arguments = _arguments(spec, "median")
    if name not in PRUNERS:
        raise ConfigError(f"pruner: {unknown_name_error('pruner', name, PRUNERS)}")
    cls = getattr(optuna.pruners, PRUNERS[name])
    try:
        check_kwargs(cls.__init__, arguments, f"of pruner {name!r} (optuna.pruners.{cls.__name__})")
    except ValueError as exc:
        raise ConfigError(f"pruner: {exc}") from None
    try:
        return _quietly(optuna, lambda: cls(**arguments))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"pruner {name!r}: {exc}") from None


def _quietly(optuna, make):
    """Build without Optuna's ExperimentalWarning: the options epochal sets on purpose are tested here."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return make()
