"""ConfigError and the translation of pydantic's validation errors into one readable line each."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from epochal.config.strict import check_argument_types, quoted_scalar_hint
from epochal.utils import did_you_mean, short_repr, shorten

__all__ = ["ConfigError", "blamed", "check_kwargs", "format_validation_error", "unknown_key_message"]

#: pydantic error types of a value of the wrong type (strict mode), and what was expected.
_TYPE_ERRORS = {"float_type": "a number", "int_type": "a whole number", "bool_type": "true or false"}


class ConfigError(ValueError):
    """A recipe, override or configuration value that is not valid; the message says how to fix it."""


def unknown_key_message(key: str, valid: Iterable[str], where: str = "") -> str:
    """``unknown key 'lrr' of optimizer 'sgd'; valid keys: [...]; did you mean 'lr'?``"""
    valid = sorted({str(v) for v in valid})
    place = f" {where}" if where else ""
    return f"unknown key {short_repr(key)}{place}; valid keys: {valid}{did_you_mean(key, valid)}"


def _loc(loc: tuple) -> str:
    """The dotted key of an error location, without pydantic's validator and union-branch parts."""
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and p.startswith(("function-", "<"))))


def blamed(loc: str, msg: str, overrides: Mapping[str, str]) -> str | None:
    """The override that set the key an error is about: that key, a parent, or a key below it that
    the message names (quoted, ``'augment'``, or dotted, ``data.augment``)."""
    head = msg.split(";")[0]
    for key, label in overrides.items():
        if loc == key or loc.startswith(key + ".") or key == f"{loc}.name":  # a new name re-reads the section
            return label
        if key.startswith(loc + "."):
            below = key[len(loc) + 1 :].split(".")
            if key in head or any(f"{part!r}" in head for part in below if not part.isdigit()):
                return label
    return None


def _type_hint(err: Mapping[str, Any]) -> str:
    """``(a quoted string: write 0.1 without quotes ...)`` for a strict-mode type error on a string."""
    given = err.get("input")
    if err.get("type") in _TYPE_ERRORS and isinstance(given, str):
        return quoted_scalar_hint(given)
    if err.get("type") in ("int_type", "float_type") and isinstance(given, bool):
        return f" (a boolean where {_TYPE_ERRORS[err['type']]} is expected)"
    return ""


def format_validation_error(exc: Any, source: str | None = None, overrides: Mapping[str, str] | None = None) -> str:
    """One line per pydantic error: ``<source>: <dotted.key>: <message>`` with suggestions kept.

    ``overrides`` maps dotted keys set after the file was read (``--set``) to how they were given;
    an error about such a key names the override instead of the file.
    """
    lines = []
    for err in exc.errors(include_url=False):
        loc = _loc(tuple(err.get("loc", ())))
        msg = str(err.get("msg", "invalid value"))
        msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        ctx = err.get("ctx") or {}
        if err.get("type") == "literal_error" and "expected" in ctx:
            choices = [c.strip().strip("'") for c in str(ctx["expected"]).replace(" or ", ",").split(",")]
            given = err.get("input")
            hint = did_you_mean(str(given), choices) if isinstance(given, str) and len(given) < 100 else ""
            msg = f"{msg}, got {short_repr(given)}{hint}"
        elif err.get("type") not in ("value_error", "assertion_error", "missing") and "input" in err:
            msg = f"{msg}, got {short_repr(err['input'])}{_type_hint(err)}"
        msg = shorten(msg, 2000)  # a validator's own message may quote a long value
        where = blamed(loc, msg, overrides or {}) or source
        prefix = f"{where}: " if where else ""
        lines.append(f"{prefix}{loc}: {msg}" if loc else f"{prefix}{msg}")
    return "\n".join(lines)


def check_kwargs(
    fn: Callable,
    kwargs: Mapping[str, Any],
    where: str,
    skip: Iterable[str] = (),
    declared: Iterable[str] = (),
    typed_elsewhere: Iterable[str] = (),
) -> None:
    """Raise ValueError naming a keyword of ``kwargs`` that ``fn`` does not accept, with the closest one,
    or whose value its signature's types do not admit (:func:`~epochal.config.strict.check_argument_types`).

    Functions taking ``**kwargs`` accept any name; ``skip`` lists arguments the builder itself
    supplies (they may not be given in the recipe); ``declared`` lists the section's own keys,
    which are valid too and may be the closest match; ``typed_elsewhere`` lists arguments whose
    values another check validates (a loss's class weights, which also take ``balanced``).
    """
    params = inspect.signature(fn).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        skip = set(skip)
        valid = [
            n
            for n, p in params.items()
            if p.kind not in (inspect.Parameter.VAR_POSITIONAL,) and n not in skip and n != "self"
        ] + list(declared)
        for key in kwargs:
            if key in skip:
                raise ValueError(
                    f"{key!r} {where} is set by epochal from the rest of the recipe and cannot be given here"
                )
            if key not in valid:
                raise ValueError(unknown_key_message(key, valid, where))
    typed_elsewhere = set(typed_elsewhere)
    check_argument_types(fn, {k: v for k, v in kwargs.items() if k not in typed_elsewhere}, where)
