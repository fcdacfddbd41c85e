"""Strict recipe values: what a user would write is read as written, anything else is an error naming the key.

The spelling table is the contract: every row was converted silently (or, for ``1e-3``, only by
lax coercion of a string) before recipes became strict. Each refusal must name the key and, for
``--set``, blame the override rather than the recipe file.
"""

from __future__ import annotations

import pytest

from epochal.config import ConfigError, load_config
from epochal.config.safe_yaml import load_yaml

BASE = "default"

#: (YAML text of the value, key, the value it must load as)
ACCEPTED = [
    ("0.1", "optimizer.lr", 0.1),
    ("1e-3", "optimizer.lr", 1e-3),  # YAML 1.1 (PyYAML) reads this as the string '1e-3'
    ("1E-3", "optimizer.lr", 1e-3),
    ("5.0e-4", "optimizer.weight_decay", 5e-4),
    ("1.0e2", "optimizer.lr", 100.0),  # an exponent without a sign: a string in YAML 1.1
    (".5", "optimizer.lr", 0.5),
    ("1", "optimizer.lr", 1.0),  # an int where a float is expected
    ("3", "epochs", 3),
    ("1_000", "trainer.log_every", 1000),
    ("true", "deterministic", True),
    ("yes", "deterministic", True),  # YAML 1.1's own boolean, unquoted
    ("off", "trainer.channels_last", False),
    ("2", "trainer.grad_accum", 2),
    ("null", "trainer.clip_grad_norm", None),
    ("eager", "trainer.compile", "eager"),
    ("true", "trainer.compile", True),
]

#: (YAML text of the value, key, a fragment of the error)
REFUSED = [
    ("'0.1'", "optimizer.lr", "write 0.1 without quotes"),
    ('"1e-3"', "optimizer.lr", "write 1e-3 without quotes"),
    ("'3'", "epochs", "write 3 without quotes"),
    ("3.0", "epochs", "valid integer"),
    ("2.5", "trainer.log_every", "valid integer"),
    ("'yes'", "deterministic", "write true or false without quotes"),
    ("1", "deterministic", "valid boolean"),
    ("true", "trainer.grad_accum", "a boolean where a whole number is expected"),
    ("true", "optimizer.lr", "a boolean where a number is expected"),
    ("'16'", "data.batch_size", "write 16 without quotes"),
    ("010", "data.batch_size", "valid integer"),  # YAML 1.1 reads 8 (octal)
    ("1:30", "epochs", "valid integer"),  # YAML 1.1 reads 90 (sexagesimal)
    (".inf", "optimizer.lr", ".inf is not a finite number"),
    ("-.inf", "optimizer.weight_decay", "-.inf is not a finite number"),
    (".nan", "trainer.clip_grad_norm", ".nan is not a finite number"),
    ("7", "name", "valid string"),
]


def _recipe_file(tmp_path, key: str, text: str):
    section, _, leaf = key.rpartition(".")
    body = f"extends: {BASE}\n" + (f"{section}:\n  {leaf}: {text}\n" if section else f"{leaf}: {text}\n")
    path = tmp_path / "recipe.yaml"
    path.write_text(body)
    return path


def _get(config, key: str):
    value = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


@pytest.mark.parametrize(("text", "key", "expected"), ACCEPTED)
def test_what_a_user_writes_is_read_as_written(tmp_path, text, key, expected):
    from_file = _get(load_config(_recipe_file(tmp_path, key, text)), key)
    from_set = _get(load_config(BASE, [f"{key}={text}"]), key)
    assert from_file == from_set == expected and type(from_file) is type(expected)


@pytest.mark.parametrize(("text", "key", "fragment"), REFUSED)
def test_wrong_types_are_refused_naming_the_key_and_the_override(tmp_path, text, key, fragment):
    path = _recipe_file(tmp_path, key, text)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as info:
        load_config(path)
    assert fragment in str(info.value) and str(info.value).startswith(str(path))
    with pytest.raises(ConfigError) as info:
        load_config(BASE, [f"{key}={text}"])
    assert str(info.value).startswith(f"--set {key}={text}: {key}") and fragment in str(info.value)


def test_a_list_of_strings_takes_strings_only():
    assert load_config(BASE, ["tags=['0.1', x]"]).tags == ["0.1", "x"]
    with pytest.raises(ConfigError, match=r"tags\.0: Input should be a valid string, got 0\.1"):
        load_config(BASE, ["tags=[0.1, x]"])


#: (an override of a registry entry's keyword, a fragment of the error): the signature types them.
KEYWORD_REFUSALS = [
    ("callbacks.early_stopping={patience: '3'}", "'patience' of callback 'early_stopping' expects a number"),
    ("callbacks.early_stopping={restore_best_weights: 'yes'}", "expects true or false, got the string 'yes'"),
    ("callbacks.early_stopping={patience: 2.5}", "'patience' of callback 'early_stopping' expects a whole number"),
    ("callbacks.early_stopping={min_delta: .nan}", "callbacks.early_stopping.min_delta: .nan is not a finite"),
    ("optimizer.nesterov='true'", "'nesterov' of optimizer 'sgd' expects true or false"),
    ("optimizer.dampening='0'", "'dampening' of optimizer 'sgd' expects a number"),
    ("optimizer.eps=.inf", "optimizer.eps: .inf is not a finite number"),
    ("loss.label_smoothing='0.1'", "'label_smoothing' of loss 'cross_entropy' expects a number"),
    ("phases.pct_start='0.25'", "'pct_start' of schedule 'one_cycle' expects a number"),
    ("phases.lr_max='0.1'", "'lr_max' of schedule 'one_cycle' expects a number"),
    ("model.scale='0.5'", "'scale' of model 'airbench' expects a number"),
    ("data.options={crop_pct: '0.875'}", "'crop_pct' in data.options (for kind 'image_folder') expects a number"),
    ("data.options={workers: true}", "'workers' in data.options (for kind 'image_folder') expects a number"),
    ("phases=[{epochs: '2', lr: 0.1}]", "phases.0.epochs expects a number, got '2'"),
    ("phases=[{epochs: 2, lr: ['0.1', 0.01]}]", "phases.0.lr.0 expects a number, got '0.1'"),
    ("phases=[{epochs: 2, lr: {slice: [1e-4, '1e-3']}}]", "phases.0.lr.slice.1 expects a number"),
    ("phases=[{epochs: 2, lr: .inf}]", "phases.0.lr: .inf is not a finite number"),
    ("phases=[{epochs: 2, optimizer_kwargs: {nesterov: 'yes'}}]", "phases.0.optimizer_kwargs.nesterov got the string"),
]


@pytest.mark.parametrize(("override", "fragment"), KEYWORD_REFUSALS)
def test_registry_keywords_are_typed_by_their_signature(override, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(BASE, [override])
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"--set {override}"), str(info.value)


def test_registry_keywords_accept_their_own_types():
    config = load_config(BASE, [
        "callbacks.early_stopping={patience: 3, min_delta: 0, restore_best_weights: true, baseline: 0.1}",
        "optimizer.dampening=0",
        "phases.pct_start=0.3",
        "data.options={crop_pct: 1, cache_dir: '2024'}",  # a folder may be named like a number
        "phases.lr_max=1e-2",
    ])
    assert config.callbacks["early_stopping"]["patience"] == 3 and config.data.options["cache_dir"] == "2024"


def test_a_key_given_twice_is_an_error_naming_both_lines(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("extends: default\noptimizer:\n  lr: 0.1\n  momentum: 0.9\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=r"twice\.yaml: not valid YAML \(line 5, column 3\): key 'lr' is given "
                                          r"twice in one mapping, at line 3, column 3 and at line 5, column 3"):
        load_config(path)
    path.write_text("extends: default\nepochs: 2\ntags: [a]\nepochs: 3\n")
    with pytest.raises(ConfigError, match="key 'epochs' is given twice.*line 2.*line 4"):
        load_config(path)
    with pytest.raises(ConfigError, match="--set 'model'.*key 'name' is given twice"):
        load_config(BASE, ["model={name: resnet18, name: airbench}"])


def test_merge_keys_may_still_be_overridden():
    data = load_yaml("base: &b {lr: 0.1, momentum: 0.9}\nfirst:\n  <<: *b\n  lr: 0.2\n")
    assert data["first"] == {"lr": 0.2, "momentum": 0.9}


def test_augment_errors_from_a_set_blame_the_set():
    with pytest.raises(ConfigError) as info:
        load_config(BASE, ["data.augment=[flipp]"])
    assert str(info.value).startswith("--set data.augment=[flipp]: data.augment: unknown augmentation 'flipp'")
    assert "did you mean 'flip'" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config(BASE, ["data_variants={small: {augment: [flipp]}}"])
    assert str(info.value).startswith("--set data_variants={small: {augment: [flipp]}}: data_variants")


def test_python_recipes_are_strict_too():
    with pytest.raises(ConfigError, match=r"config: optimizer\.lr: Input should be a valid number, got '0\.1'"):
        load_config({"extends": BASE, "optimizer": {"lr": "0.1"}})
    with pytest.raises(ConfigError, match=r"config: epochs: \.inf is not a finite number"):
        load_config({"extends": BASE, "epochs": float("inf")})
