"""Dotted overrides (``optimizer.lr=0.1``) and the deep merge behind ``extends:``.

An override's value is parsed as a YAML scalar (or flow collection), so ``--set epochs=3`` gives
an int, ``--set data.augment=[flip]`` a list, ``--set model.weights=null`` None and
``--set name=my-run`` a string: the same typing a recipe file gets.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from epochal.config.errors import ConfigError
from epochal.config.safe_yaml import YamlLimitError, load_yaml
from epochal.utils import short_repr

__all__ = ["apply_overrides", "deep_merge", "parse_override", "set_dotted"]


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"a.b.c=value"`` into its key path and its YAML-parsed value.

    Raises:
        ConfigError: when there is no ``=`` or the key is empty.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(
            f"--set expects KEY=VALUE with a dotted key such as optimizer.lr=0.1, got {short_repr(text)}"
        )
    parts = key.split(".")
    if any(not p for p in parts):
        raise ConfigError(f"--set key {short_repr(key)} has an empty part; write keys like optimizer.lr")
    try:
        value = load_yaml(raw) if raw.strip() else None
    except YamlLimitError as exc:
        raise ConfigError(f"--set {short_repr(key)}: refusing this value: {exc}") from None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or next(iter(str(exc).splitlines()), type(exc).__name__)
        raise ConfigError(f"--set {short_repr(key)}: value {short_repr(raw)} is not valid YAML ({problem})") from None
    return parts, value


def set_dotted(config: dict[str, Any], parts: list[str], value: Any) -> None:
    """Set ``config[parts[0]][parts[1]]... = value``, creating missing mappings on the way.

    A list along the path is indexed by an integer part (``phases.1.lr=0.01``).
    """
    node: Any = config
    for depth, part in enumerate(parts[:-1]):
        node = _step(node, part, parts[: depth + 1], create=True)
    last = parts[-1]
    if isinstance(node, list):
        node[_index(node, last, parts)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        where = ".".join(parts[:-1])
        raise ConfigError(
            f"--set {'.'.join(parts)}: {where} is a value ({short_repr(node)}), not a section with keys"
        )


def _step(node: Any, part: str, path: list[str], create: bool) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, path)]
    if not isinstance(node, dict):
        where = ".".join(path[:-1])
        raise ConfigError(f"--set: {where} is a value ({short_repr(node)}), not a section with keys")
    if node.get(part) is None and create:
        node[part] = {}
    return node[part]


def _index(node: list, part: str, path: list[str]) -> int:
    try:
        index = int(part)
    except ValueError:
        where = ".".join(path)
        raise ConfigError(f"--set {where}: {short_repr(part)} indexes a list; use 0..{len(node) - 1}") from None
    if not -len(node) <= index < len(node):
        raise ConfigError(f"--set {'.'.join(path)}: index {index} is out of range 0..{len(node) - 1}")
    return index


def apply_overrides(config: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A deep copy of ``config`` with every ``KEY=VALUE`` override applied in order."""
    result = copy.deepcopy(dict(config))
    for text in overrides:
        parts, value = parse_override(text)
        set_dotted(result, parts, value)
    return result


def deep_merge(base: Mapping[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    """``child`` on top of ``base``: mappings merge key by key, everything else (lists too) is replaced."""
    merged = copy.deepcopy(dict(base))
    for key, value in child.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
