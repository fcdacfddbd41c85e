"""Finding recipes, reading YAML safely, resolving ``extends:`` and applying ``--set`` overrides.

A recipe is a YAML mapping. ``extends: NAME_OR_PATH`` (or a list of them, applied left to right)
takes another recipe as the base and merges this one on top (mappings key by key, lists
replaced). Names are looked up among the recipes shipped in ``epochal/config/recipes``; a path is
read relative to the recipe that names it. The merged mapping is then validated against
:class:`~epochal.config.schema.Config`; every error names the file (or the ``--set`` that gave
the value) and the dotted key. Values are strict: a key given twice, a quoted number where a
number is meant and ``.inf``/``.nan`` anywhere are errors, not guesses (see
:mod:`~epochal.config.safe_yaml`, :mod:`~epochal.config.sections`, :mod:`~epochal.config.strict`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from epochal.config.errors import ConfigError, blamed, format_validation_error
from epochal.config.overrides import apply_overrides, deep_merge
from epochal.config.safe_yaml import MAX_RECIPE_BYTES, YamlLimitError, load_yaml
from epochal.config.strict import non_finite_values
from epochal.utils import did_you_mean, short_repr, shorten

__all__ = [
    "RECIPES_DIR",
    "list_recipes",
    "load_config",
    "read_yaml",
    "recipe_descriptions",
    "recipe_path",
    "resolve_recipe",
]

#: The folder of the recipes shipped with epochal.
RECIPES_DIR = Path(__file__).resolve().parent / "recipes"


def list_recipes() -> list[str]:
    """Names of the shipped recipes, sorted."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def recipe_descriptions() -> list[dict[str, Any]]:
    """``[{"name", "description", "extends", "path"}]`` for every shipped recipe."""
    rows = []
    for name in list_recipes():
        raw = read_yaml(RECIPES_DIR / f"{name}.yaml")
        rows.append(
            {
                "name": name,
                "description": str(raw.get("description", "")).strip(),
                "extends": raw.get("extends"),
                "path": str(RECIPES_DIR / f"{name}.yaml"),
            }
        )
    return rows


def recipe_path(name_or_path: str | Path, relative_to: Path | None = None) -> Path:
    """The YAML file of a shipped recipe name or of a path (relative paths against ``relative_to``)."""
    text = str(name_or_path)
    candidates = [Path(text)]
    if relative_to is not None and not Path(text).is_absolute():
        candidates.insert(0, relative_to / text)
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    if "/" not in text and not text.endswith((".yaml", ".yml")):
        shipped = RECIPES_DIR / f"{text}.yaml"
        if shipped.is_file():
            return shipped
        names = list_recipes()
        raise ConfigError(
            f"unknown recipe {text!r}: shipped recipes are {names}{did_you_mean(text, names)}, "
            "or give the path of a YAML file"
        )
    raise ConfigError(f"recipe file {text} does not exist")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """``yaml.safe_load`` a mapping within the size budget of :mod:`~epochal.config.safe_yaml`, with
    errors that name the file."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_RECIPE_BYTES:
            raise YamlLimitError(f"the file is larger than {MAX_RECIPE_BYTES >> 20} MiB")
        data = load_yaml(path.read_text())
    except YamlLimitError as exc:
        raise ConfigError(f"{path}: refusing to load this recipe: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or next(iter(str(exc).splitlines()), type(exc).__name__)
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a YAML mapping of keys to values, got {type(data).__name__}")
    return data


def resolve_recipe(name_or_path: str | Path, _seen: tuple[Path, ...] = (), _base: Path | None = None) -> dict[str, Any]:
    """The recipe's mapping with every ``extends:`` merged in (``extends`` itself removed)."""
    path = recipe_path(name_or_path, _base)
    if path in _seen:
        chain = " -> ".join(str(p.name) for p in (*_seen, path))
        raise ConfigError(f"{path}: 'extends' forms a cycle ({chain})")
    raw = read_yaml(path)
    parents = raw.pop("extends", None)
    if parents is None:
        return raw
    if isinstance(parents, str):
        parents = [parents]
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise ConfigError(
            f"{path}: 'extends' must be a recipe name or path, or a list of them; got {short_repr(parents)}"
        )
    merged: dict[str, Any] = {}
    for parent in parents:
        try:
            base = resolve_recipe(parent, (*_seen, path), path.parent)
        except ConfigError as exc:
            raise ConfigError(f"{path}: extends {parent!r}: {exc}") from None
        merged = deep_merge(merged, base)
    return deep_merge(merged, raw)


def load_config(recipe: str | Path | dict[str, Any] = "default", overrides: Iterable[str] = (), **shortcuts: Any):
    """Load, merge, override and validate a recipe.

    Args:
        recipe: a shipped recipe name, a YAML path, or an already-parsed mapping.
        overrides: ``"dotted.key=value"`` strings, applied after ``extends`` (values parsed as YAML).
        **shortcuts: dotted keys given as Python values, applied last (the CLI's ``--epochs``,
            ``--data``, ``--device``); None values are skipped. Use ``__`` for dots:
            ``data__path="imgs"``.

    Returns:
        The validated :class:`~epochal.config.schema.Config`.

    Raises:
        ConfigError: naming the file and the dotted key of the first problems found.
    """
    from pydantic import ValidationError

    from epochal.config.overrides import parse_override, set_dotted
    from epochal.config.schema import Config

    if isinstance(recipe, dict):
        source, raw = "config", dict(recipe)
        if "extends" in raw:
            parents = raw.pop("extends")
            raw = deep_merge(resolve_recipe(parents) if isinstance(parents, str) else _merge_all(parents), raw)
    else:
        source = str(recipe_path(recipe))
        raw = resolve_recipe(recipe)
        raw.setdefault("name", Path(source).stem)
    overrides = list(overrides)
    raw = apply_overrides(raw, overrides)
    given = {".".join(parse_override(text)[0]): f"--set {shorten(text, 100)}" for text in overrides}
    for key, value in shortcuts.items():
        if value is not None:
            set_dotted(raw, key.split("__"), value)
            given[key.replace("__", ".")] = f"{key.replace('__', '.')}={short_repr(value)}"
    _check_finite(raw, source, given)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, given)) from None


def _check_finite(raw: dict[str, Any], source: str, given: dict[str, str]) -> None:
    """Refuse ``.inf`` and ``.nan`` anywhere in the recipe, naming each key (and its ``--set``)."""
    lines = [
        f"{blamed(key, '', given) or source}: {key}: {_YAML_SPELLING.get(str(value), value)} is not a finite "
        "number; give a finite value (leave the key out, or null where allowed, for no limit)"
        for key, value in non_finite_values(raw)
    ]
    if lines:
        raise ConfigError("\n".join(lines))


_YAML_SPELLING = {"inf": ".inf", "-inf": "-.inf", "nan": ".nan"}


def _merge_all(parents: list[str]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for parent in parents:
        merged = deep_merge(merged, resolve_recipe(parent))
    return merged
