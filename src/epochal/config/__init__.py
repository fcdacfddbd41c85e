"""Typed configuration: recipes (YAML), ``extends``, ``--set`` overrides, and builders to objects.

Examples:
    >>> from epochal.config import load_config
    >>> config = load_config("default", ["optimizer.lr=0.1", "epochs=3"])
    >>> config.optimizer.lr
    0.1
"""

from epochal.config.errors import ConfigError
from epochal.config.loading import RECIPES_DIR, list_recipes, load_config, recipe_descriptions, resolve_recipe
from epochal.config.overrides import apply_overrides, deep_merge, parse_override
from epochal.config.schema import Config

__all__ = [
    "RECIPES_DIR",
    "Config",
    "ConfigError",
    "apply_overrides",
    "deep_merge",
    "list_recipes",
    "load_config",
    "parse_override",
    "recipe_descriptions",
    "resolve_recipe",
]
