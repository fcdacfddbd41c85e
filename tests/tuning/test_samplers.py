"""Samplers and pruners by name: every registered one builds, seeds reproduce, bad names and arguments are refused."""

from __future__ import annotations

import optuna
import pytest

from epochal.config import ConfigError
from epochal.tuning.samplers import PRUNERS, SAMPLERS, build_pruner, build_sampler
from epochal.tuning.space import SearchSpace

SPACE = SearchSpace.from_mapping({"params": {
    "optimizer.lr": {"type": "float", "low": 0.01, "high": 0.5, "step": 0.01},
    "data.batch_size": {"type": "int", "low": 8, "high": 32, "step": 8},
}})


def _sample(sampler, n: int = 6) -> list[dict]:
    study = optuna.create_study(sampler=sampler)
    for _ in range(n):
        trial = study.ask()
        values = SPACE.suggest(trial)
        study.tell(trial, values["optimizer.lr"] * values["data.batch_size"])
    return [t.params for t in study.trials]


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_builds_and_its_seed_reproduces(name):
    sampler = build_sampler(name, SPACE, seed=3)
    assert type(sampler).__name__ == SAMPLERS[name]
    first, again = _sample(sampler), _sample(build_sampler(name, SPACE, seed=3))
    assert first == again
    assert all(0.01 <= p["optimizer.lr"] <= 0.5 and p["data.batch_size"] in (8, 16, 24, 32) for p in first)


def test_grid_sampler_visits_the_grid_without_repeats():
    small = SearchSpace.from_mapping({"params": {"data.batch_size": {"type": "int", "low": 8, "high": 32, "step": 8}}})
    study = optuna.create_study(sampler=build_sampler("grid", small, seed=0))
    study.optimize(lambda trial: small.suggest(trial)["data.batch_size"], n_trials=10)  # stops after the grid
    assert sorted(t.params["data.batch_size"] for t in study.trials) == [8, 16, 24, 32]


def test_sampler_arguments_are_passed_and_checked():
    assert build_sampler({"name": "tpe", "n_startup_trials": 3}, SPACE)._n_startup_trials == 3
    with pytest.raises(ConfigError, match="unknown sampler 'tpr'.*did you mean 'tpe'"):
        build_sampler("tpr", SPACE)
    with pytest.raises(ConfigError, match="n_startup_trial.*did you mean 'n_startup_trials'"):
        build_sampler({"name": "tpe", "n_startup_trial": 3}, SPACE)


ARGUMENTS = {"percentile": {"percentile": 25.0}, "threshold": {"lower": 0.1}}


@pytest.mark.parametrize("name", sorted(PRUNERS))
def test_every_pruner_builds(name):
    assert type(build_pruner({"name": name, **ARGUMENTS.get(name, {})})).__name__ == PRUNERS[name]


def test_median_pruner_prunes_a_trial_below_the_median():
    study = optuna.create_study(direction="maximize", pruner=build_pruner({"name": "median", "n_startup_trials": 2}))
    for value in (0.8, 0.9):
        trial = study.ask()
        trial.report(value, 0)
        study.tell(trial, value)
    low, high = study.ask(), study.ask()
    low.report(0.1, 0)
    high.report(0.95, 0)
    assert low.should_prune() and not high.should_prune()


def test_pruner_errors():
    with pytest.raises(ConfigError, match="unknown pruner 'hyperbnad'.*did you mean 'hyperband'"):
        build_pruner("hyperbnad")
    with pytest.raises(ConfigError, match="n_warmup_step.*did you mean 'n_warmup_steps'"):
        build_pruner({"name": "median", "n_warmup_step": 1})
    with pytest.raises(ConfigError, match="pruner 'threshold'"):
        build_pruner("threshold")  # needs lower or upper
