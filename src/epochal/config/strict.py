"""Strict recipe values beyond the schema: keyword arguments typed by their signature, finite numbers.

The closed sections are pydantic models in strict mode (:mod:`~epochal.config.sections`). The
open ones pass their keys to a constructor or builder (a callback, an optimizer, a schedule, a
model, the data loaders), whose signature is the only statement of the types it takes. This
module reads the annotation (or, without one, the type of the default) of each parameter and
refuses what strict mode refuses: a quoted number or boolean (``patience: '3'``,
``nesterov: 'yes'``) where a number or a boolean is meant, a boolean where a number is meant, and
a fraction where a whole number is meant. Parameters that take text, paths or anything at all
(``Any``) are not second-guessed, except that a quoted number given to ``Any`` is refused (a
rate, a size or a count is meant there; a name never looks like a number).

:func:`non_finite_values` finds ``.inf`` and ``.nan`` anywhere in a recipe: no recipe key needs
one (a limit that does not apply is left out or ``null``).
"""

from __future__ import annotations

import collections.abc
import inspect
import math
import os
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "argument_type_problem",
    "check_argument_types",
    "check_phase_types",
    "non_finite_values",
    "quoted_scalar_hint",
]

#: Keys of a phase mapping whose values are numbers, or pairs, slices and groups of numbers.
_NUMERIC_PHASE_KEYS = ("epochs", "lr", "momentum", "weight_decay", "image_size")

#: Text that YAML would have read as a number had it not been quoted.
_NUMBER_TEXT = re.compile(r"^\s*[-+]?(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][-+]?\d+)?\s*$")
#: Text that YAML 1.1 would have read as a boolean had it not been quoted.
_BOOL_TEXT = {"y", "n", "yes", "no", "true", "false", "on", "off"}
_SEQUENCES = (list, tuple, collections.abc.Sequence, collections.abc.Iterable, collections.abc.Collection)


@dataclass(frozen=True)
class _Kinds:
    """What an annotation admits: scalar types, anything (``Any``), other objects, element kinds of a sequence."""

    scalars: frozenset = frozenset()
    anything: bool = False
    other: bool = False
    elements: _Kinds | None = None

    def __or__(self, more: _Kinds) -> _Kinds:
        elements = self.elements or more.elements
        if self.elements is not None and more.elements is not None:
            elements = self.elements | more.elements
        return _Kinds(self.scalars | more.scalars, self.anything or more.anything, self.other or more.other, elements)


_ANY = _Kinds(anything=True)
_OTHER = _Kinds(other=True)


def _kinds(annotation: Any) -> _Kinds:
    """The :class:`_Kinds` of a resolved annotation."""
    if annotation is Any or annotation is inspect.Parameter.empty:
        return _ANY
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        result = _Kinds()
        for arg in typing.get_args(annotation):
            if arg is not type(None):
                result = result | _kinds(arg)
        return result
    if annotation in (bool, int, float, str):
        return _Kinds(frozenset({annotation}))
    if getattr(annotation, "__name__", "") == "Tensor":  # a rate or weight given as a tensor: a number in YAML
        return _Kinds(frozenset({float}))
    if annotation is os.PathLike or (isinstance(annotation, type) and issubclass(annotation, os.PathLike)):
        return _Kinds(frozenset({str}))
    if origin in _SEQUENCES:
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        elements = _Kinds()
        for arg in args:
            elements = elements | _kinds(arg)
        return _Kinds(other=True, elements=elements if args else _ANY)
    return _OTHER


def _parameter_kinds(fn: Callable) -> dict[str, _Kinds | None]:
    """Per parameter of ``fn``, what it admits (None: unknown, no annotation and a None default)."""
    try:  # a class is typed by its __init__ (its own annotations are its attributes')
        hints = typing.get_type_hints(fn.__init__ if isinstance(fn, type) else fn)
    except Exception:  # noqa: BLE001 (an annotation naming a type imported only for type checkers)
        hints = {}
    kinds: dict[str, _Kinds | None] = {}
    for name, param in inspect.signature(fn).parameters.items():
        annotation = hints.get(name, param.annotation)
        if annotation is not inspect.Parameter.empty and not isinstance(annotation, str):
            kinds[name] = _kinds(annotation)  # a signature built from types (a partial's) has them resolved
        elif param.default is not inspect.Parameter.empty and param.default is not None:
            kinds[name] = _kinds(type(param.default)) if type(param.default) in (bool, int, float, str) else None
        else:
            kinds[name] = None
    return kinds


def quoted_scalar_hint(value: str) -> str:
    """How to write a quoted number or boolean so that YAML reads it as one ('' for other text)."""
    if _NUMBER_TEXT.match(value):
        return f" (a quoted string: write {value.strip()} without quotes for a number)"
    if value.strip().lower() in _BOOL_TEXT:
        return " (a quoted string: write true or false without quotes for a boolean)"
    return ""


def argument_type_problem(value: Any, kinds: _Kinds | None) -> str | None:
    """Why ``value`` does not fit what a parameter admits (None: it fits, or the parameter is untyped)."""
    if kinds is None:
        return None
    if isinstance(value, list):
        return _items_problem(value, kinds.elements)
    scalars = kinds.scalars
    numeric = bool(scalars & {int, float})
    wanted = "a number" if numeric else "true or false"
    if isinstance(value, str):
        if str in scalars:
            return None
        if kinds.anything:  # only a quoted number is surely wrong: a name never looks like one
            wanted, refused = "a number", bool(_NUMBER_TEXT.match(value))
        else:  # other text may still suit the annotation's other types (a class that takes a name)
            quoted = bool(_NUMBER_TEXT.match(value)) or value.strip().lower() in _BOOL_TEXT
            refused = (numeric or bool in scalars) and (quoted or not kinds.other)
        return f"expects {wanted}, got the string {value!r}{quoted_scalar_hint(value)}" if refused else None
    if kinds.anything:
        return None
    if isinstance(value, bool):
        return f"expects a number, got the boolean {value}" if numeric and bool not in scalars else None
    if isinstance(value, float) and int in scalars and float not in scalars:
        return f"expects a whole number, got {value}"
    if isinstance(value, int) and bool in scalars and not numeric:
        return f"expects true or false, got {value}"
    return None


def _items_problem(items: list, elements: _Kinds | None) -> str | None:
    if elements is None:
        return None
    for index, item in enumerate(items):
        problem = argument_type_problem(item, elements)
        if problem is not None:
            return f"item {index} {problem}"
    return None


def check_argument_types(fn: Callable, kwargs: Mapping[str, Any], where: str) -> None:
    """Raise ValueError naming the first keyword of ``kwargs`` whose value ``fn``'s signature does not admit.

    Args:
        fn: the constructor or builder the keywords go to.
        kwargs: the recipe's keywords (names are checked elsewhere: unknown ones are skipped here).
        where: names the owner in the message (``of callback 'early_stopping'``).
    """
    kinds = _parameter_kinds(fn)
    for key, value in kwargs.items():
        problem = argument_type_problem(value, kinds.get(key))
        if problem is not None:
            raise ValueError(f"{key!r} {where} {problem}")


def check_phase_types(entry: Mapping[str, Any], where: str) -> None:
    """Raise ValueError naming a phase key whose numbers are not numbers (``epochs: '2'``, ``lr: [true, 0.1]``).

    ``TrainingPhase.from_dict`` reads numeric strings as numbers for Python callers (PyYAML's
    ``1e-3``); a recipe is read with YAML 1.2 numbers, so a string there was quoted on purpose.
    ``optimizer_kwargs`` values go to the optimizer: only quoted numbers and booleans are refused.
    """
    for key in _NUMERIC_PHASE_KEYS:
        if entry.get(key) is not None:
            for path, leaf in _leaves(entry[key], f"{where}.{key}"):
                if isinstance(leaf, bool) or not isinstance(leaf, int | float):
                    hint = quoted_scalar_hint(leaf) if isinstance(leaf, str) else ""
                    raise ValueError(f"{path} expects a number, got {leaf!r}{hint}")
    for path, leaf in _leaves(entry.get("optimizer_kwargs") or {}, f"{where}.optimizer_kwargs"):
        if isinstance(leaf, str) and quoted_scalar_hint(leaf):
            raise ValueError(f"{path} got the string {leaf!r}{quoted_scalar_hint(leaf)}")


def _leaves(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """``(dotted path, value)`` of the scalars in nested mappings and lists."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{path}.{index}")
    else:
        yield path, value


def non_finite_values(data: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    """``(dotted key, value)`` of every infinite or NaN float in nested mappings and lists."""
    if isinstance(data, float) and not math.isfinite(data):
        yield prefix, data
    elif isinstance(data, Mapping):
        for key, value in data.items():
            yield from non_finite_values(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(data, list | tuple):
        for index, value in enumerate(data):
            yield from non_finite_values(value, f"{prefix}.{index}" if prefix else str(index))
