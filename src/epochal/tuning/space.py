"""Search spaces in YAML: which recipe keys a study samples, over what range, and when.

A space file maps dotted recipe keys (the keys ``--set`` takes) to distributions::

    monitor: valid/accuracy             # optional; default: the recipe's checkpoint monitor, else valid/loss
    sampler: {name: tpe, n_startup_trials: 5}
    pruner: {name: median, n_warmup_steps: 1}
    params:
      optimizer.lr: {type: float, low: 0.01, high: 0.5, log: true}
      data.batch_size: {type: int, low: 32, high: 128, step: 32}
      model.widths: {type: categorical, choices: [[32, 64, 128], [64, 128, 256]]}
      phases: {type: categorical, choices: [{schedule: one_cycle}, {schedule: flat_cos}]}
      phases.pct_start: {type: float, low: 0.1, high: 0.4, when: {phases: {schedule: one_cycle}}}

Parameters are sampled and applied in file order, so a parameter may set a whole section (``phases``)
and a later one a key inside it. ``when`` makes a parameter conditional: it is sampled only when the
earlier parameters it names took one of the given values (otherwise the recipe's own value stays),
the "conditional search spaces" of Bergstra et al., *Algorithms for Hyper-Parameter Optimization*
(NeurIPS 2011), which TPE models natively.

Loading a space checks every entry (unknown keys, empty ranges, log of non-positive numbers) and,
with :meth:`SearchSpace.check`, every range end and choice against the recipe's own schema, so a
dotted key the recipe does not have is refused with the closest valid key before any trial runs.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from epochal.config.errors import ConfigError, format_validation_error, unknown_key_message

__all__ = ["PARAM_TYPES", "Param", "SearchSpace", "load_space"]

#: The distribution types a parameter may have.
PARAM_TYPES = ("float", "int", "categorical")
_PARAM_KEYS = ("type", "low", "high", "log", "step", "choices", "when")
_SPACE_KEYS = ("description", "monitor", "sampler", "pruner", "params")
_PRIMITIVE = (str, int, float, bool, type(None))


def _flow(value: Any) -> str:
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf).strip()
    return text.removesuffix("...").strip()  # a bare scalar ends its document with '...'


def _number(value: Any, what: str, integer: bool) -> float | int:
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
        raise ConfigError(f"{what} must be {'an integer' if integer else 'a finite number'}, got {value!r}")
    return int(value) if integer else float(value)


@dataclass(frozen=True)
class Param:
    """One searched recipe key and its distribution.

    Attributes:
        key: the dotted recipe key, e.g. ``optimizer.lr`` (also the Optuna parameter name).
        type: ``float``, ``int`` or ``categorical``.
        low, high: the inclusive range of a number.
        log: sample a number uniformly in log space (``low`` must be > 0).
        step: the grid of a number (``low``, ``low + step``, ...); an int's default is 1.
        choices: the values of a categorical; any YAML value (lists and mappings too).
        when: earlier parameter key -> the values for which this one is sampled.

    Examples:
        >>> Param("optimizer.lr", "float", low=1e-3, high=1.0, log=True)
    """

    key: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()
    when: dict[str, tuple] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type not in PARAM_TYPES:
            raise ConfigError(f"type must be one of {list(PARAM_TYPES)}, got {self.type!r}")
        if self.type == "categorical":
            self._check_choices()
        else:
            self._check_range()

    def _check_choices(self) -> None:
        if self.low is not None or self.high is not None or self.step is not None or self.log:
            raise ConfigError("a categorical takes choices, not low/high/step/log")
        if not self.choices:
            raise ConfigError("a categorical needs a non-empty list of choices")
        labels = self.labels
        if len(set(map(repr, labels))) != len(labels):
            raise ConfigError(f"choices repeat a value: {list(self.choices)!r}")

    def _check_range(self) -> None:
        integer = self.type == "int"
        if self.choices:
            raise ConfigError(f"a {self.type} takes low and high, not choices")
        if self.low is None or self.high is None:
            raise ConfigError(f"a {self.type} needs low and high")
        low = _number(self.low, "low", integer)
        high = _number(self.high, "high", integer)
        if low > high:
            raise ConfigError(f"low ({low}) must be <= high ({high})")
        if self.log and low <= 0:
            raise ConfigError(f"log: true needs low > 0, got low={low}")
        if self.step is not None:
            step = _number(self.step, "step", integer)
            if step <= 0:
                raise ConfigError(f"step must be > 0, got {step}")
            if self.log and step != 1:
                raise ConfigError("log: true and a step cannot be combined (Optuna samples one or the other)")

    @property
    def labels(self) -> list:
        """The choices as Optuna stores them: plain values as they are, lists and mappings as YAML
        flow text (``"[32, 64, 128]"``), so every storage can hold them."""
        if all(isinstance(c, _PRIMITIVE) for c in self.choices):
            return list(self.choices)
        return [_flow(c) for c in self.choices]

    def decode(self, stored: Any) -> Any:
        """The recipe value of what Optuna stored for this parameter."""
        if self.type != "categorical":
            return stored
        for label, choice in zip(self.labels, self.choices):
            if label == stored and type(label) is type(stored):
                return copy.deepcopy(choice)
        raise ConfigError(f"{self.key}: the stored value {stored!r} is not one of the choices {self.labels!r}")

    def suggest(self, trial) -> Any:
        """Sample this parameter in an Optuna ``trial``; returns the recipe value."""
        if self.type == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return trial.suggest_int(self.key, self.low, self.high, step=self.step or 1, log=self.log)
        return self.decode(trial.suggest_categorical(self.key, self.labels))

    def examples(self) -> list:
        """The values that bound what may be sampled: both range ends, or every choice."""
        if self.type == "categorical":
            return list(self.choices)
        return [self.low, self.high] if self.low != self.high else [self.low]

    def grid(self) -> list:
        """Every value a grid search visits (as Optuna stores them).

        Raises:
            ConfigError: for a float without a step (a continuous range has no grid).
        """
        if self.type == "categorical":
            return self.labels
        if self.type == "float" and self.step is None:
            raise ConfigError(f"{self.key}: the grid sampler needs a step for a float (or use a categorical)")
        step = self.step or 1
        count = int(math.floor((self.high - self.low) / step + 1e-9)) + 1
        values = [self.low + i * step for i in range(count)]
        return [int(v) for v in values] if self.type == "int" else [round(v, 12) for v in values]


def _parse_param(key: str, entry: Any, earlier: Mapping[str, Param]) -> Param:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"must be a mapping such as {{type: float, low: 0.01, high: 1.0}}, got {entry!r}")
    for name in entry:
        if name not in _PARAM_KEYS:
            raise ConfigError(unknown_key_message(str(name), _PARAM_KEYS))
    choices = entry.get("choices", ())
    if not isinstance(choices, list | tuple):
        raise ConfigError(f"choices must be a list, got {choices!r}")
    when = _parse_when(entry.get("when") or {}, earlier)
    if "type" not in entry:
        raise ConfigError(f"needs a type: one of {list(PARAM_TYPES)}")
    log = entry.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"log must be true or false, got {log!r}")
    return Param(key, entry["type"], entry.get("low"), entry.get("high"), log, entry.get("step"),
                 tuple(choices), when)


def _parse_when(when: Any, earlier: Mapping[str, Param]) -> dict[str, tuple]:
    if not isinstance(when, Mapping):
        raise ConfigError(f"when must map earlier parameters to values, got {when!r}")
    parsed = {}
    for ref, allowed in when.items():
        if ref not in earlier:
            hint = f"; parameters defined above: {list(earlier)}" if earlier else ""
            raise ConfigError(f"when: {ref!r} is not a parameter defined above this one{hint}")
        target = earlier[ref]
        if target.type == "float":
            raise ConfigError(f"when: {ref!r} is a float; a condition needs a categorical or int parameter")
        possible = target.examples() if target.type == "categorical" else None
        if possible is not None and allowed in possible:
            values = (allowed,)
        else:
            values = tuple(allowed) if isinstance(allowed, list) else (allowed,)
        for value in values:
            ok = value in possible if possible is not None else (
                isinstance(value, int) and not isinstance(value, bool) and target.low <= value <= target.high)
            if not ok:
                valid = possible if possible is not None else f"integers {target.low}..{target.high}"
                raise ConfigError(f"when: {ref}={value!r} can never be sampled; its values are {valid}")
        parsed[ref] = values
    return parsed


def _named(section: Any, what: str, default: str) -> dict[str, Any]:
    if section is None:
        return {"name": default}
    if isinstance(section, str):
        return {"name": section}
    if isinstance(section, Mapping) and isinstance(section.get("name", default), str):
        return {"name": default, **dict(section)}
    raise ConfigError(f"{what} must be a name or a mapping {{name: ..., <arguments>}}, got {section!r}")


@dataclass
class SearchSpace:
    """The parameters of a study, in file order, with its optional monitor, sampler and pruner.

    Attributes:
        params: dotted key -> :class:`Param`.
        monitor: the logged key to optimise (None: decided from the recipe).
        sampler: ``{"name": ..., **arguments}`` or None (TPE).
        pruner: ``{"name": ..., **arguments}`` or None (median).
        source: where the space came from (named in errors).
        raw: the mapping it was parsed from (saved with the study).

    Examples:
        >>> space = SearchSpace.from_mapping({"params": {"optimizer.lr": {"type": "float", "low": 0.01,
        ...                                                               "high": 1.0, "log": True}}})
        >>> space.check(load_config("default").to_dict())
    """

    params: dict[str, Param]
    monitor: str | None = None
    sampler: dict[str, Any] | None = None
    pruner: dict[str, Any] | None = None
    source: str = "search space"
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], source: str = "search space") -> SearchSpace:
        """Parse a space mapping; every error names ``source`` and the parameter.

        Raises:
            ConfigError: for an unknown key, a bad range or choice list, or a bad ``when``.
        """
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{source}: a search space is a mapping with 'params', got {type(raw).__name__}")
        for key in raw:
            if key not in _SPACE_KEYS:
                raise ConfigError(f"{source}: {unknown_key_message(str(key), _SPACE_KEYS)}")
        entries = raw.get("params")
        if not isinstance(entries, Mapping) or not entries:
            raise ConfigError(f"{source}: params must map dotted recipe keys (optimizer.lr ...) to distributions")
        params: dict[str, Param] = {}
        for key, entry in entries.items():
            try:
                params[str(key)] = _parse_param(str(key), entry, params)
            except ConfigError as exc:
                raise ConfigError(f"{source}: params.{key}: {exc}") from None
        monitor = raw.get("monitor")
        if monitor is not None and not isinstance(monitor, str):
            raise ConfigError(f"{source}: monitor must be a logged key such as valid/accuracy, got {monitor!r}")
        try:
            sampler = _named(raw.get("sampler"), "sampler", "tpe") if "sampler" in raw else None
            pruner = _named(raw.get("pruner"), "pruner", "median") if "pruner" in raw else None
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        return cls(params, monitor, sampler, pruner, source, copy.deepcopy(dict(raw)))

    @property
    def conditional(self) -> bool:
        """Whether any parameter has a ``when``."""
        return any(p.when for p in self.params.values())

    def is_active(self, param: Param, values: Mapping[str, Any]) -> bool:
        """Whether ``param``'s conditions hold for the values sampled so far."""
        return all(ref in values and values[ref] in allowed for ref, allowed in param.when.items())

    def suggest(self, trial) -> dict[str, Any]:
        """Sample every active parameter in file order; returns dotted key -> recipe value."""
        values: dict[str, Any] = {}
        for param in self.params.values():
            if self.is_active(param, values):
                values[param.key] = param.suggest(trial)
        return values

    def decode(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        """Recipe values of the parameters Optuna stored for a trial (``trial.params``)."""
        return {k: self.params[k].decode(v) if k in self.params else v for k, v in stored.items()}

    def grid(self) -> dict[str, list]:
        """The search space of Optuna's ``GridSampler``: every parameter's grid."""
        return {key: param.grid() for key, param in self.params.items()}

    def apply(self, recipe: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
        """A deep copy of the recipe mapping with the sampled values set at their dotted keys."""
        from epochal.config.overrides import set_dotted

        result = copy.deepcopy(dict(recipe))
        for key, value in values.items():
            set_dotted(result, key.split("."), copy.deepcopy(value))
        return result

    def config(self, recipe: Mapping[str, Any], values: Mapping[str, Any], label: str | None = None):
        """The validated :class:`~epochal.config.schema.Config` of ``recipe`` with ``values`` applied.

        Raises:
            ConfigError: naming ``label`` (default: the space and the values) and the key at fault.
        """
        from pydantic import ValidationError

        from epochal.config.schema import Config

        label = label or f"{self.source}: " + ", ".join(f"{k}={_flow(v)}" for k, v in values.items())
        try:
            return Config.model_validate(self.apply(recipe, values))
        except ConfigError as exc:
            raise ConfigError(f"{label}: {exc}") from None
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, label)) from None

    def _context(self, param: Param) -> dict[str, Any]:
        """Values of the parameters ``param`` depends on that make it active (the first allowed ones)."""
        values: dict[str, Any] = {}
        for ref, allowed in param.when.items():
            values.update(self._context(self.params[ref]))
            values[ref] = allowed[0]
        return values

    def check(self, recipe: Mapping[str, Any]) -> None:
        """Validate every range end and every choice of every parameter against the recipe.

        Raises:
            ConfigError: ``<space>: params.<key>=<value>: <what the recipe schema says>``, e.g. an
                unknown key with the closest valid one.
        """
        for param in self.params.values():
            context = self._context(param)
            for value in param.examples():
                label = f"{self.source}: params.{param.key}={_flow(value)}"
                self.config(recipe, {**context, param.key: value}, label)


def load_space(path: str | Path) -> SearchSpace:
    """Read a search-space YAML file (``yaml.safe_load``) into a :class:`SearchSpace`.

    Raises:
        ConfigError: naming the file for unreadable YAML, and the key for bad entries.
    """
    from epochal.config.loading import read_yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"search space file {path} does not exist")
    return SearchSpace.from_mapping(read_yaml(path), str(path))
