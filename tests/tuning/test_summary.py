"""Study summaries: importances with and without scikit-learn, best.yaml rebuilt for a trial run elsewhere."""

from __future__ import annotations

import sys

import optuna
import pytest

from epochal.config import load_config
from epochal.tuning.spec import StudySpec
from epochal.tuning.summary import _importances, _write_best


def _study() -> optuna.Study:
    """The objective depends on x only; y is noise-free and irrelevant."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: (t.suggest_float("x", 0, 1) - 0.3) ** 2 + 0 * t.suggest_float("y", 0, 1), n_trials=30)
    return study


def test_importances_use_fanova_with_scikit_learn():
    pytest.importorskip("sklearn")
    importances, method = _importances(_study())
    assert method == "fanova" and set(importances) == {"x", "y"} and importances["x"] > 0.9


def test_importances_fall_back_to_ped_anova_without_scikit_learn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn raises ImportError
    importances, method = _importances(_study())
    assert method == "ped_anova" and importances["x"] > importances["y"]


def test_importances_need_two_complete_trials():
    study = optuna.create_study()
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert _importances(study) == (None, None)


def test_best_yaml_is_rebuilt_from_the_recipe_when_the_trial_ran_elsewhere(tmp_path):
    recipe = load_config("default").to_dict()
    space = {"params": {"optimizer.lr": {"type": "float", "low": 0.01, "high": 0.5}}}
    spec = StudySpec(name="s", study_dir=str(tmp_path), storage="sqlite://", recipe=recipe, space=space,
                     space_source="space.yaml", n_trials=1, monitor="valid/accuracy", direction="maximize")
    best = {"number": 7, "value": 0.8, "params": {"optimizer.lr": 0.123}, "run_dir": "/elsewhere/trial_0007"}
    path = _write_best(spec, spec.space_object(), best)
    assert path.read_text().startswith("# Best trial of study 's': trial 7 (valid/accuracy 0.8)")
    assert load_config(path).optimizer.lr == 0.123
