"""Recipes and ``--set`` values within a size budget; error messages that quote values stay short."""

from __future__ import annotations

import tracemalloc

import pytest
import yaml
from typer.testing import CliRunner

from epochal.cli._output import MAX_ERROR_CHARS, one_line
from epochal.cli.main import app
from epochal.config import ConfigError, load_config
from epochal.config.safe_yaml import MAX_RECIPE_BYTES, YamlLimitError, expanded_size, load_yaml


def _laughs(levels: int, flow: bool = False) -> str:
    """Nested aliases: ``levels`` lists of nine aliases to the list before (9**levels strings)."""
    rows = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    rows += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    if flow:
        return "{" + ", ".join(rows) + "}"
    return "description:\n  " + "\n  ".join(rows) + f"\ntags: *a{levels - 1}\n"


@pytest.fixture
def peak_memory():
    tracemalloc.start()
    yield lambda: tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()


@pytest.mark.timeout(60)
def test_billion_laughs_recipe_is_refused_at_once(tmp_path, peak_memory):
    recipe = tmp_path / "laughs.yaml"
    recipe.write_text(_laughs(9))
    assert recipe.stat().st_size < 500  # 9**9 = 387 million strings
    with pytest.raises(ConfigError) as info:
        load_config(recipe)
    message = str(info.value)
    assert str(recipe) in message and "billion laughs" in message and len(message) < 400
    assert peak_memory() < 20 * 2**20


@pytest.mark.timeout(60)
def test_billion_laughs_override_is_refused_at_once(peak_memory):
    with pytest.raises(ConfigError, match=r"--set 'data': refusing this value: .*aliases") as info:
        load_config("default", ["data=" + _laughs(9, flow=True)])
    assert len(str(info.value)) < 400 and peak_memory() < 20 * 2**20


@pytest.mark.timeout(60)
def test_billion_laughs_in_the_cli_is_one_short_line(tmp_path):
    recipe = tmp_path / "laughs.yaml"
    recipe.write_text(_laughs(9))
    result = CliRunner().invoke(app, ["train", str(recipe)])
    assert result.exit_code == 1
    assert "billion laughs" in result.output and len(result.output) < 500


def test_a_recursive_alias_and_deep_nesting_are_refused(tmp_path):
    with pytest.raises(YamlLimitError, match="contains it"):
        load_yaml("tags: &a [*a]")
    recipe = tmp_path / "deep.yaml"
    recipe.write_text("tags: " + "[" * 20000 + "]" * 20000)
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(recipe)


def test_a_file_past_the_byte_budget_is_not_parsed(tmp_path):
    recipe = tmp_path / "huge.yaml"
    with open(recipe, "w") as handle:
        handle.write("# padding\n" * (MAX_RECIPE_BYTES // 10 + 1))
    with pytest.raises(ConfigError, match="larger than 4 MiB"):
        load_config(recipe)


def test_shared_values_are_measured_expanded_and_ordinary_aliases_load():
    text = "base: &b {lr: 0.1, momentum: 0.9}\nfirst: *b\nsecond: *b\n"
    assert load_yaml(text) == {"base": {"lr": 0.1, "momentum": 0.9}, "first": {"lr": 0.1, "momentum": 0.9},
                               "second": {"lr": 0.1, "momentum": 0.9}}
    node = yaml.compose(text)
    # values count 1 and scalars their characters: {lr, momentum} is 1 + (1+2) + (1+3) + (1+8) + (1+3) = 21,
    # counted under each of its three keys (1+4, 1+5, 1+6), plus the top mapping
    assert expanded_size(node) == 1 + (5 + 21) + (6 + 21) + (7 + 21)
    with pytest.raises(YamlLimitError):
        expanded_size(node, limit=50)


def test_long_values_are_cut_in_validation_errors():
    with pytest.raises(ConfigError) as info:
        load_config("default", ["epochs=" + "9x" * 50_000])
    message = str(info.value)
    assert "epochs" in message and "characters)" in message and len(message) < 400


def test_one_line_cuts_any_message_to_a_readable_length():
    text = one_line(ValueError("first line\n" + "v" * 1_000_000))
    assert text.startswith("first line; vvv") and len(text) <= MAX_ERROR_CHARS
    assert "1,000,012 characters" in text
