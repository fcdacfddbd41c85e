"""ConfigError and the translation of pydantic's validation errors into one readable line each."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from epochal.utils import did_you_mean, short_repr, shorten

__all__ = ["ConfigError", "check_kwargs", "format_validation_error", "unknown_key_message"]


class ConfigError(ValueError):
    """A recipe, override or configuration value that is not valid; the message says how to fix it."""


def unknown_key_message(key: str, valid: Iterable[str], where: str = "") -> str:
    """``unknown key 'lrr' of optimizer 'sgd'; valid keys: [...]; did you mean 'lr'?``"""
    valid = sorted({str(v) for v in valid})
    place = f" {where}" if where else ""
    return f"unknown key {short_repr(key)}{place}; valid keys: {valid}{did_you_mean(key, valid)}"


def _loc(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and p.startswith("function-")))


def _blamed(loc: str, msg: str, overrides: Mapping[str, str]) -> str | None:
    """The override that set the key an error is about: that key, a parent, or the unknown key named."""
    head = msg.split(";")[0]
    for key, label in overrides.items():
        if loc == key or loc.startswith(key + ".") or key == f"{loc}.name":  # a new name re-reads the section
            return label
        if key.startswith(loc + "."):
            below = key[len(loc) + 1 :].split(".")[0]
            if f"{below!r}" in head:
                return label
    return None


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
            msg = f"{msg}, got {short_repr(err['input'])}"
        msg = shorten(msg, 2000)  # a validator's own message may quote a long value
        where = _blamed(loc, msg, overrides or {}) or source
        prefix = f"{where}: " if where else ""
        lines.append(f"{prefix}{loc}: {msg}" if loc else f"{prefix}{msg}")
    return "\n".join(lines)


def check_kwargs(
    fn: Callable,
    kwargs: Mapping[str, Any],
    where: str,
    skip: Iterable[str] = (),
    declared: Iterable[str] = (),
) -> None:
    """Raise ValueError naming a keyword of ``kwargs`` that ``fn`` does not accept, with the closest one.

    Functions taking ``**kwargs`` accept anything; ``skip`` lists arguments the builder itself
    supplies (they may not be given in the recipe); ``declared`` lists the section's own keys,
    which are valid too and may be the closest match.
    """
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    skip = set(skip)
    valid = [
        n
        for n, p in params.items()
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL,) and n not in skip and n != "self"
    ] + list(declared)
    for key in kwargs:
        if key in skip:
            raise ValueError(f"{key!r} {where} is set by epochal from the rest of the recipe and cannot be given here")
        if key not in valid:
            raise ValueError(unknown_key_message(key, valid, where))
