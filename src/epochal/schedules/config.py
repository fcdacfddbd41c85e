"""Phases from and to plain data (YAML / JSON).

YAML has no tuples, so the plain spellings are:

* a rate or momentum: ``0.1`` (also the string ``"1e-3"``: PyYAML reads ``1e-3`` as a string),
* a ``(start, end)`` pair: ``[0.001, 0.1]`` or ``{start: 0.001, end: 0.1}``; ``[null, 0.05]`` anneals
  from the previous phase's final rate to 0.05,
* discriminative rates: ``{slice: [1e-5, 1e-3]}``, ``{slice: 1e-3}`` or ``{groups: [1e-5, 1e-4, 1e-3]}``,
  also as elements of a pair,
* a decay: ``cosine``, ``poly2``, ``[polynomial, 2]`` or ``{type: polynomial, power: 2}``.

A schedule is either a list of phase dicts or ``{schedule: <builder name>, <builder args>}``;
unknown keys are errors that name the key, where it is, and the closest valid key.
"""

from __future__ import annotations

import dataclasses
import numbers
import re
from collections.abc import Mapping, Sequence
from typing import Any

from epochal.schedules.builders import build_phases
from epochal.schedules.phase import TrainingPhase
from epochal.utils import did_you_mean

__all__ = ["PHASE_KEYS", "phase_from_dict", "phase_to_dict", "phases_from_config", "phases_to_config"]

#: The keys a phase dict may have.
PHASE_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrainingPhase))

_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def phase_from_dict(data: Mapping[str, Any], where: str = "phase") -> TrainingPhase:
    """Build a :class:`TrainingPhase` from plain data.

    Raises:
        ValueError: naming ``where`` and the bad key or value.

    Examples:
        >>> phase_from_dict({"epochs": 2, "lr": [1e-3, 1e-5], "lr_decay": "cosine"})
    """
    if not isinstance(data, Mapping):
        # config errors are ValueErrors whatever their cause, so loaders catch one type
        raise ValueError(f"{where} must be a mapping of phase settings, got {type(data).__name__}")  # noqa: TRY004
    for key in data:
        if key not in PHASE_KEYS:
            hint = did_you_mean(key, PHASE_KEYS, " (did you mean {}?)")
            raise ValueError(f"{where}: unknown key {key!r}{hint}; valid keys: {', '.join(PHASE_KEYS)}")
    if "epochs" not in data:
        raise ValueError(f"{where}: missing required key 'epochs'")
    kwargs = dict(data)
    try:
        for key in ("epochs", "weight_decay"):
            if key in kwargs:
                kwargs[key] = _coerce_number(kwargs[key])
        if "lr" in kwargs:
            kwargs["lr"] = _rate_from_plain(kwargs["lr"], f"{where}.lr")
        if "momentum" in kwargs:
            kwargs["momentum"] = _pair_from_plain(kwargs["momentum"], f"{where}.momentum")
        if isinstance(kwargs.get("image_size"), list):
            kwargs["image_size"] = tuple(kwargs["image_size"])
        if isinstance(kwargs.get("optimizer_kwargs"), Mapping):
            kwargs["optimizer_kwargs"] = {k: _coerce_deep(v) for k, v in kwargs["optimizer_kwargs"].items()}
        return TrainingPhase(**kwargs)
    except (ValueError, TypeError) as error:
        if str(error).startswith(where):
            raise
        raise ValueError(f"{where}: {error}") from error


def phase_to_dict(phase: TrainingPhase, strict: bool = True) -> dict[str, Any]:
    """Plain data for a phase, readable by :func:`phase_from_dict`; None settings are left out.

    Args:
        phase: the phase.
        strict: raise for settings with no plain form (an optimizer class, a custom annealer, a
            data object); with ``strict=False`` they are written as descriptive strings.
    """
    out: dict[str, Any] = {"epochs": phase.epochs}
    if phase.optimizer is not None:
        out["optimizer"] = (
            phase.optimizer
            if isinstance(phase.optimizer, str)
            else _opaque(phase.optimizer, "optimizer", strict)
        )
    if phase.lr is not None:
        out["lr"] = _rate_to_plain(phase.lr)
    for key, annealer in (("lr_decay", phase.lr_annealer), ("momentum_decay", phase.momentum_annealer)):
        if getattr(phase, key) is not None:
            try:
                out[key] = annealer.to_config()
            except ValueError:
                out[key] = _opaque(annealer, key, strict)
    if phase.momentum is not None:
        out["momentum"] = list(phase.momentum) if isinstance(phase.momentum, tuple | list) else phase.momentum
    for key in ("weight_decay", "name"):
        if getattr(phase, key) is not None:
            out[key] = getattr(phase, key)
    if phase.image_size is not None:
        out["image_size"] = (
            list(phase.image_size) if isinstance(phase.image_size, tuple) else phase.image_size
        )
    if phase.data is not None:
        out["data"] = phase.data if _is_plain(phase.data) else _opaque(phase.data, "data", strict)
    if phase.optimizer_kwargs:
        out["optimizer_kwargs"] = {
            k: list(v) if isinstance(v, tuple) else v for k, v in phase.optimizer_kwargs.items()
        }
    return out


def phases_from_config(config: Any, where: str = "phases") -> list[TrainingPhase]:
    """Phases from plain data: a list of phase dicts, ``{phases: [...]}`` or ``{schedule: name, ...}``.

    Examples:
        >>> phases_from_config({"schedule": "one_cycle", "total_epochs": 5, "lr_max": "1e-2"})
    """
    if isinstance(config, Mapping) and "schedule" in config:
        kwargs = {k: _coerce_deep(v) for k, v in config.items() if k != "schedule"}
        try:
            return build_phases(config["schedule"], **kwargs)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{where}: {error}") from error
    if isinstance(config, Mapping) and set(config) == {"phases"}:
        return phases_from_config(config["phases"], f"{where}.phases")
    if isinstance(config, Mapping):
        raise ValueError(  # noqa: TRY004 (a mapping with the wrong keys: a bad value)
            f"{where}: expected a list of phases, {{phases: [...]}} or {{schedule: name, ...}}, "
            f"got keys {sorted(config)}"
        )
    if isinstance(config, str) or not isinstance(config, Sequence) or not config:
        raise ValueError(f"{where}: expected a non-empty list of phases, got {config!r}")
    return [
        p if isinstance(p, TrainingPhase) else phase_from_dict(p, f"{where}[{i}]")
        for i, p in enumerate(config)
    ]


def phases_to_config(phases: Sequence[TrainingPhase], strict: bool = True) -> list[dict[str, Any]]:
    """Plain data for a list of phases (what a run folder records)."""
    return [phase_to_dict(p, strict) for p in phases]


def _coerce_number(value: Any) -> Any:
    if isinstance(value, str) and _FLOAT.match(value.strip()):
        return float(value)
    return value


def _coerce_deep(value: Any) -> Any:
    """Numeric strings to floats and rate dicts to slices/lists, recursively (builder arguments)."""
    if isinstance(value, Mapping) and value and set(value) <= {"slice", "groups"}:
        return _rate_from_plain(value, "value")
    if isinstance(value, list):
        return [_coerce_deep(v) for v in value]
    return _coerce_number(value)


def _rate_from_plain(value: Any, where: str) -> Any:
    value = _coerce_number(value)
    if isinstance(value, Mapping):
        keys = set(value)
        if keys <= {"start", "end"} and keys:
            if keys != {"start", "end"}:
                raise ValueError(f"{where}: a pair needs both 'start' and 'end', got {sorted(keys)}")
            return (_rate_from_plain(value["start"], where), _rate_from_plain(value["end"], where))
        if keys == {"slice"}:
            bounds = value["slice"]
            if isinstance(bounds, list):
                if len(bounds) != 2:
                    raise ValueError(f"{where}: slice takes [lo, hi], got {bounds!r}")
                return slice(_coerce_number(bounds[0]), _coerce_number(bounds[1]))
            return slice(_coerce_number(bounds))
        if keys == {"groups"}:
            return [_coerce_number(v) for v in value["groups"]]
        raise ValueError(f"{where}: a rate dict takes 'start'/'end', 'slice' or 'groups', got {sorted(keys)}")
    if isinstance(value, list | tuple):
        if len(value) != 2:
            raise ValueError(
                f"{where}: a list is a [start, end] pair; write {{groups: [...]}} for per-group rates"
            )
        return (_rate_from_plain(value[0], where), _rate_from_plain(value[1], where))
    return value


def _pair_from_plain(value: Any, where: str) -> Any:
    value = _coerce_number(value)
    if isinstance(value, Mapping):
        if set(value) != {"start", "end"}:
            raise ValueError(f"{where}: expected {{start, end}}, got keys {sorted(value)}")
        return (_coerce_number(value["start"]), _coerce_number(value["end"]))
    if isinstance(value, list | tuple):
        return tuple(_coerce_number(v) for v in value)
    return value


def _rate_to_plain(value: Any) -> Any:
    if value is None:  # the open start of a (None, end) pair
        return None
    if isinstance(value, tuple):
        return [_rate_to_plain(v) for v in value]
    if isinstance(value, slice):
        return {"slice": value.stop if value.start is None else [value.start, value.stop]}
    if isinstance(value, numbers.Real):
        return float(value)
    return {"groups": [float(v) for v in value]}


def _is_plain(value: Any) -> bool:
    if value is None or isinstance(value, str | bool | numbers.Real):
        return True
    if isinstance(value, list | tuple):
        return all(_is_plain(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _opaque(value: Any, key: str, strict: bool) -> str:
    name = getattr(value, "__qualname__", None) or type(value).__qualname__
    module = getattr(value, "__module__", None) or type(value).__module__
    if strict:
        raise ValueError(
            f"{key}={value!r} has no plain-data form; pass strict=False to write it as a description"
        )
    return f"<{module}.{name}>"
