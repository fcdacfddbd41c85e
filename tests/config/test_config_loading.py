"""Recipes: loading, extends, overrides and validation errors that name the key and suggest a fix."""

from __future__ import annotations

import pytest
import yaml

from epochal.config import ConfigError, list_recipes, load_config, resolve_recipe
from epochal.config.overrides import apply_overrides, deep_merge, parse_override

SHIPPED = ["cifar10", "default", "finetune", "regnet-imagenet", "tabular-adult"]


def write(path, data) -> str:
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return str(path)


def test_shipped_recipes_are_listed_and_valid():
    assert set(SHIPPED) <= set(list_recipes())
    for name in list_recipes():
        config = load_config(name)
        assert config.name == name
        assert config.to_dict()["name"] == name


def test_default_recipe_values():
    config = load_config("default")
    assert config.data.path == "cifar10-mini" and config.model.name
    assert config.phases.schedule == "one_cycle" and config.epochs >= 1
    assert "model_checkpoint" in config.callbacks


def test_unknown_top_level_key_names_it_and_suggests(tmp_path):
    path = write(tmp_path / "r.yaml", {"extends": "default", "epohcs": 3})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "r.yaml" in message and "'epohcs'" in message and "did you mean 'epochs'" in message
    assert "valid keys" in message


def test_unknown_nested_keys_name_the_section(tmp_path):
    with pytest.raises(ConfigError, match=r"optimizer.*'weight_decya'.*did you mean 'weight_decay'"):
        load_config("default", ["optimizer.weight_decya=0.1"])
    with pytest.raises(ConfigError, match=r"data.*'batch_szie'.*did you mean 'batch_size'"):
        load_config("default", ["data.batch_szie=8"])
    with pytest.raises(ConfigError, match=r"unknown callback 'early_stoping'.*did you mean 'early_stopping'"):
        load_config("default", ["callbacks.early_stoping.patience=2"])
    with pytest.raises(
        ConfigError, match=r"callbacks.*'patinece' of callback 'early_stopping'.*did you mean 'patience'"
    ):
        load_config("default", ["callbacks.early_stopping.patinece=2"])
    with pytest.raises(ConfigError, match=r"phases.*'pct_strat' of schedule 'one_cycle'.*did you mean 'pct_start'"):
        load_config("default", ["phases.pct_strat=0.3"])
    with pytest.raises(
        ConfigError, match=r"loss.*'label_smoothnig' of loss 'cross_entropy'.*did you mean 'label_smoothing'"
    ):
        load_config("default", ["loss.label_smoothnig=0.1"])


def test_bad_values_name_the_key_and_allowed_values():
    expected = r"trainer.precision.*'fp32', 'bf16', 'fp16' or 'auto'.*'bf61'.*did you mean 'bf16'"
    with pytest.raises(ConfigError, match=expected):
        load_config("default", ["trainer.precision=bf61"])
    with pytest.raises(ConfigError, match=r"epochs: Input should be greater than or equal to 1.*got 0"):
        load_config("default", ["epochs=0"])
    with pytest.raises(ConfigError, match=r"optimizer.lr: .*greater than 0"):
        load_config("default", ["optimizer.lr=-1"])
    with pytest.raises(ConfigError, match=r"unknown model 'regnety_0166'.*did you mean 'regnety_016'"):
        load_config("default", ["model.name=regnety_0166"])
    with pytest.raises(ConfigError, match=r"unknown optimizer 'sdg'.*did you mean 'sgd'"):
        load_config("default", ["optimizer.name=sdg"])
    with pytest.raises(ConfigError, match=r"unknown metric 'acuracy'.*did you mean 'accuracy'"):
        load_config("default", ["metrics=[acuracy]"])
    with pytest.raises(ConfigError, match=r"unknown schedule 'one_cylce'.*did you mean 'one_cycle'"):
        load_config("default", ["phases.schedule=one_cylce"])


def test_overrides_are_yaml_scalars():
    config = load_config(
        "default",
        [
            "optimizer.lr=0.05",
            "epochs=2",
            "tags=[a, b]",
            "data.image_size=16",
            "model={name: regnety_016}",
            "callbacks.progress_bar=null",
        ],
    )
    assert config.optimizer.lr == 0.05 and isinstance(config.optimizer.lr, float)
    assert config.epochs == 2 and config.tags == ["a", "b"] and config.data.image_size == 16
    assert config.model.name == "regnety_016" and config.callbacks["progress_bar"] is None
    assert parse_override("a.b=1e-3") == (["a", "b"], "1e-3") or parse_override("a.b=0.001")[1] == 0.001
    assert parse_override("name=my run") == (["name"], "my run")
    assert parse_override("x=") == (["x"], None)


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config("default", ["optimizer.lr"])
    with pytest.raises(ConfigError, match="empty part"):
        load_config("default", ["optimizer..lr=1"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"a": 1}, ["a.b=2"])
    assert apply_overrides({"p": [{"lr": 1}, {"lr": 2}]}, ["p.1.lr=3"]) == {"p": [{"lr": 1}, {"lr": 3}]}
    with pytest.raises(ConfigError, match="out of range"):
        apply_overrides({"p": [1]}, ["p.3=0"])


def test_shortcuts_apply_after_overrides():
    config = load_config("default", ["epochs=5"], epochs=2, data__path="somewhere", trainer__device=None)
    assert config.epochs == 2 and config.data.path == "somewhere" and config.trainer.device is None


def test_extends_chain_merges_mappings_and_replaces_lists(tmp_path):
    base = write(tmp_path / "base.yaml", {"extends": "default", "tags": ["base"], "optimizer": {"lr": 0.3}})
    write(
        tmp_path / "child.yaml",
        {"extends": "base.yaml", "optimizer": {"weight_decay": 0.01}, "tags": ["child"], "name": "kid"},
    )
    config = load_config(tmp_path / "child.yaml")
    default = load_config("default")
    assert config.optimizer.lr == 0.3 and config.optimizer.weight_decay == 0.01
    assert config.optimizer.name == default.optimizer.name  # inherited through two levels
    assert config.tags == ["child"] and config.name == "kid"
    assert "extends" not in resolve_recipe(base)


def test_finetune_extends_default():
    finetune, default = load_config("finetune"), load_config("default")
    assert finetune.data == default.data and finetune.model.name == default.model.name
    assert isinstance(finetune.phases, list) and finetune.phases[0]["freeze"] is True


def test_extends_errors(tmp_path):
    write(tmp_path / "a.yaml", {"extends": "b.yaml"})
    write(tmp_path / "b.yaml", {"extends": "a.yaml"})
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")
    write(tmp_path / "c.yaml", {"extends": "defualt"})
    with pytest.raises(ConfigError, match=r"c.yaml: extends 'defualt'.*did you mean 'default'"):
        load_config(tmp_path / "c.yaml")


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = write(tmp_path / "bad.yaml", "epochs: [1,\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML \(line"):
        load_config(bad)
    listy = write(tmp_path / "list.yaml", "- 1\n- 2\n")
    with pytest.raises(ConfigError, match="list.yaml: a recipe must be a YAML mapping"):
        load_config(listy)
    with pytest.raises(ConfigError, match=r"unknown recipe 'defaul'.*did you mean 'default'"):
        load_config("defaul")


def test_yaml_is_loaded_safely(tmp_path):
    evil = write(tmp_path / "evil.yaml", "seed: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(evil)


def test_deep_merge_does_not_mutate():
    base = {"a": {"b": 1, "c": [1]}}
    merged = deep_merge(base, {"a": {"c": [2]}})
    assert merged == {"a": {"b": 1, "c": [2]}} and base == {"a": {"b": 1, "c": [1]}}


def test_tabular_needs_a_target_and_phase_lists_are_checked():
    with pytest.raises(ConfigError, match="needs data.target"):
        load_config("tabular-adult", ["data.target=null"])
    with pytest.raises(ConfigError, match=r"phases.0.*'lrr'"):
        load_config("finetune", ["phases.0.lrr=0.1"])
    with pytest.raises(ConfigError, match=r"phases.1.freeze"):
        load_config("finetune", ["phases.1.freeze=sometimes"])


def test_resolved_config_round_trips(tmp_path):
    config = load_config("regnet-imagenet", ["model.name=regnety_016"])
    dumped = config.to_dict()
    path = write(tmp_path / "saved.yaml", dumped)
    assert load_config(path).to_dict() == dumped


def test_errors_from_overrides_name_the_override_not_the_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config("default", ["trainer.epochs=1"])
    assert str(info.value).startswith("--set trainer.epochs=1: trainer: unknown key 'epochs'")
    with pytest.raises(ConfigError) as info:
        load_config("default", ["optimizer.lr=abc"])
    assert str(info.value).startswith("--set optimizer.lr=abc: optimizer.lr:")
    with pytest.raises(ConfigError) as info:
        load_config("default", epochs=0)
    assert str(info.value).startswith("epochs=0: epochs:")
    # A mistake in the file is still blamed on the file, even when an override touches the section.
    path = write(tmp_path / "r.yaml", {"extends": "default", "trainer": {"precison": "bf16"}})
    with pytest.raises(ConfigError) as info:
        load_config(path, ["trainer.precision=fp32"])
    assert str(info.value).startswith(f"{path}: trainer: unknown key 'precison'")
    with pytest.raises(ConfigError) as info:
        load_config("default", ["callbacks.early_stoping.patience=2"])
    assert str(info.value).startswith("--set callbacks.early_stoping.patience=2: callbacks: unknown callback")


def test_model_arguments_are_checked_when_the_recipe_loads():
    with pytest.raises(ConfigError) as info:
        load_config("default", ["model.nme=3"])
    message = str(info.value)
    assert message.startswith("--set model.nme=3: model: model 'airbench' takes no argument 'nme'")
    assert "belong to another model" not in message  # a typo gets no advice about other models
    with pytest.raises(ConfigError) as info:
        load_config("default", ["model.name=resnet18"])
    message = str(info.value)
    assert message.startswith("--set model.name=resnet18: model: model 'resnet18' takes no argument 'widths'")
    assert "set model={name: resnet18}" in message
    assert load_config("default", ["model={name: resnet18, stem: cifar}"]).model.kwargs == {"stem": "cifar"}


def test_keys_that_would_crash_after_loading_are_refused_when_loading():
    with pytest.raises(ConfigError, match=r"--set model.name=regnety_016.*'widths'.*set model=\{name: regnety_016\}"):
        load_config("default", ["model.name=regnety_016"])  # widths belong to the recipe's airbench
    with pytest.raises(ConfigError, match=r"model 'regnetx_002' cannot be built.*wa must be >= 0"):
        load_config("default", ["model={name: regnetx_002, wa: -3}"])
    with pytest.raises(ConfigError, match=r"model 'inception_resnet_cifar' cannot be built.*must exceed"):
        load_config("default", ["model={name: inception_resnet_cifar, widths: [8, 8, 8]}"])
    with pytest.raises(ConfigError, match=r"'num_classes' is set from the data's classes"):
        load_config("default", ["model.num_classes=5"])
    with pytest.raises(ConfigError, match=r"init_bias 'priors'.*'airbench' has an output layer without one"):
        load_config("default", ["model.init_bias=priors"])
    with pytest.raises(ConfigError, match=r"'conv_autoencoder' \(autoencoder family\).*data.options.unlabelled: true"):
        load_config("default", ["model={name: conv_autoencoder}"])
    with pytest.raises(ConfigError, match=r"model 'airbench' .*data.kind 'tabular'.*use tabular_mlp"):
        load_config("tabular-adult", ["model={name: airbench}"])
    with pytest.raises(ConfigError, match=r"loss: 'reduction' must be one of \['mean', 'sum'\]"):
        load_config("default", ["loss.reduction=none"])
    with pytest.raises(ConfigError, match=r"optimizer 'nesterov' rejects.*zero dampening"):
        load_config("default", ["optimizer={name: nesterov, dampening: 0.1}"])
    with pytest.raises(ConfigError, match=r"schedule 'warmup_cosine' with epochs=1: warmup_epochs must be in"):
        load_config("default", ["epochs=1", "phases={schedule: warmup_cosine}"])
    with pytest.raises(ConfigError, match=r"callback 'model_checkpoint': .*save_best and save_last are both False"):
        load_config("default", ["callbacks.model_checkpoint={save_best: false, save_last: false}"])
    with pytest.raises(ConfigError, match=r"'rank' in data.options is set for each process by distributed training"):
        load_config("default", ["data.options.rank=1"])
    with pytest.raises(ConfigError, match=r"data.augment is for image folders; kind 'tabular' has no images"):
        load_config("tabular-adult", ["data.augment=[flip]"])


def test_compile_takes_a_backend_name():
    assert load_config("default", ["trainer.compile=eager"]).trainer.compile == "eager"
    assert load_config("default", ["trainer.compile=true"]).trainer.compile is True
    with pytest.raises(ConfigError, match=r"unknown torch.compile backend 'eagr'.*did you mean 'eager'"):
        load_config("default", ["trainer.compile=eagr"])


def test_compile_mode_is_one_inductor_knows():
    assert load_config("default", ["trainer.compile_mode=reduce-overhead"]).trainer.compile_mode == "reduce-overhead"
    assert load_config("default").trainer.compile_mode is None
    with pytest.raises(ConfigError, match=r"unknown torch.compile mode 'max_autotune'.*did you mean 'max-autotune'"):
        load_config("default", ["trainer.compile_mode=max_autotune"])
