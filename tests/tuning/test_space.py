"""Search spaces: parsing, errors that name the key, checks against the recipe schema, conditional sampling."""

from __future__ import annotations

import optuna
import pytest

from epochal.config import ConfigError, load_config
from epochal.tuning.space import PARAM_TYPES, Param, SearchSpace, load_space
from epochal.tuning.study import SPACES_DIR

RECIPE = load_config("default").to_dict()

EXAMPLES = {
    "float": {"type": "float", "low": 0.01, "high": 0.5, "log": True},
    "int": {"type": "int", "low": 32, "high": 128, "step": 32},
    "categorical": {"type": "categorical", "choices": [[32, 64, 128], [64, 128, 256]]},
}
KEYS = {"float": "optimizer.lr", "int": "data.batch_size", "categorical": "model.widths"}


def space(params: dict, **extra) -> SearchSpace:
    return SearchSpace.from_mapping({"params": params, **extra}, "space.yaml")


@pytest.mark.parametrize("kind", PARAM_TYPES)
def test_every_type_samples_inside_its_range_and_validates(kind):
    search = space({KEYS[kind]: EXAMPLES[kind]})
    search.check(RECIPE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        values = search.suggest(study.ask())
        value = values[KEYS[kind]]
        if kind == "float":
            assert 0.01 <= value <= 0.5
        elif kind == "int":
            assert value in (32, 64, 96, 128)
        else:
            assert value in ([32, 64, 128], [64, 128, 256])  # the real list, not Optuna's label
        config = search.config(RECIPE, values)
        assert config.to_dict()[KEYS[kind].split(".")[0]][KEYS[kind].split(".")[1]] == value


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"optimizer.lrr": EXAMPLES["float"]}, "params.optimizer.lrr=0.01.*did you mean 'lr'"),
        ({"epoch": {"type": "int", "low": 1, "high": 3}}, "params.epoch=1.*did you mean 'epochs'"),
        ({"data.augmnt": {"type": "categorical", "choices": [["flip"]]}}, "params.data.augmnt.*did you mean 'augment'"),
        ({"model.widhts": EXAMPLES["categorical"]}, "params.model.widhts.*Did you mean 'widths'"),
        ({"optimizer.lr": {"type": "float", "low": 0.0, "high": 0.5}}, "params.optimizer.lr=0.0.*greater than 0"),
    ],
)
def test_check_refuses_keys_and_values_the_recipe_schema_refuses(params, message):
    with pytest.raises(ConfigError, match=message):
        space(params).check(RECIPE)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"type": "flot", "low": 0.1, "high": 1}, "type must be one of"),
        ({"type": "float", "low": 0.1, "high": 1, "lg": True}, "unknown key 'lg'.*did you mean 'log'"),
        ({"type": "float", "low": 1.0, "high": 0.1}, r"low \(1.0\) must be <= high"),
        ({"type": "float", "low": 0.0, "high": 1.0, "log": True}, "log: true needs low > 0"),
        ({"type": "int", "low": 1.5, "high": 4}, "low must be an integer"),
        ({"type": "int", "low": 1, "high": 8, "step": 2, "log": True}, "cannot be combined"),
        ({"type": "categorical", "choices": []}, "non-empty list of choices"),
        ({"type": "categorical", "choices": [1, 1]}, "repeat"),
        ({"type": "float", "low": 0.1}, "needs low and high"),
        ({"low": 0.1, "high": 1}, "needs a type"),
    ],
)
def test_bad_entries_name_the_file_and_the_key(entry, message):
    with pytest.raises(ConfigError, match=rf"space.yaml: params.optimizer.lr: .*{message}"):
        space({"optimizer.lr": entry})


def test_unknown_top_level_key_and_bad_when():
    with pytest.raises(ConfigError, match="unknown key 'param'.*did you mean 'params'"):
        SearchSpace.from_mapping({"param": {}}, "space.yaml")
    with pytest.raises(ConfigError, match="'optimizer.name' is not a parameter defined above"):
        space({"optimizer.momentum": {**EXAMPLES["float"], "when": {"optimizer.name": "sgd"}}})
    with pytest.raises(ConfigError, match="can never be sampled"):
        space({"optimizer.name": {"type": "categorical", "choices": ["sgd"]},
               "optimizer.momentum": {**EXAMPLES["float"], "when": {"optimizer.name": "adam"}}})


CONDITIONAL = {
    "phases": {"type": "categorical", "choices": [{"schedule": "one_cycle"}, {"schedule": "flat_cos"}]},
    "phases.pct_start": {"type": "float", "low": 0.1, "high": 0.4, "when": {"phases": {"schedule": "one_cycle"}}},
    "phases.pct_flat": {"type": "float", "low": 0.5, "high": 0.8, "when": {"phases": {"schedule": "flat_cos"}}},
}


@pytest.mark.parametrize("schedule", ["one_cycle", "flat_cos"])
def test_conditional_parameters_exist_only_for_their_condition(schedule):
    search = space(CONDITIONAL)
    search.check(RECIPE)  # each conditional key is checked with its condition applied
    label = f"{{schedule: {schedule}}}"
    values = search.suggest(optuna.trial.FixedTrial({"phases": label, "phases.pct_start": 0.2,
                                                     "phases.pct_flat": 0.6}))
    own, other = ("phases.pct_start", "phases.pct_flat") if schedule == "one_cycle" else (
        "phases.pct_flat", "phases.pct_start")
    assert own in values and other not in values
    phases = search.config(RECIPE, values).to_dict()["phases"]
    assert phases["schedule"] == schedule and phases[own.split(".")[1]] in (0.2, 0.6)
    assert other.split(".")[1] not in phases  # the section was replaced, then the key set inside it


def test_conditional_on_a_recipe_incompatible_value_is_refused_at_load():
    # adamw takes no 'nesterov', which the default recipe's optimizer section sets
    with pytest.raises(ConfigError, match="params.optimizer.name=adamw.*unknown key 'nesterov'"):
        space({"optimizer.name": {"type": "categorical", "choices": ["sgd", "adamw"]}}).check(RECIPE)


def test_labels_decode_and_grid():
    widths = Param("model.widths", "categorical", choices=([8, 16], [16, 32]))
    assert widths.labels == ["[8, 16]", "[16, 32]"] and widths.decode("[16, 32]") == [16, 32]
    assert Param("x", "categorical", choices=(1, "a", None)).labels == [1, "a", None]
    assert Param("x", "int", low=32, high=128, step=32).grid() == [32, 64, 96, 128]
    assert Param("x", "float", low=0.0, high=0.2, step=0.05).grid() == [0.0, 0.05, 0.1, 0.15, 0.2]
    with pytest.raises(ConfigError, match="needs a step"):
        Param("optimizer.lr", "float", low=0.1, high=1.0).grid()


def test_shipped_space_fits_the_default_recipe():
    search = load_space(SPACES_DIR / "default.yaml")
    search.check(RECIPE)
    assert search.monitor == "valid/accuracy" and search.conditional
    with pytest.raises(ConfigError, match="does not exist"):
        load_space(SPACES_DIR / "nope.yaml")
