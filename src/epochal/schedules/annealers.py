"""Annealers: how a hyperparameter moves from a start to an end value over a phase.

An annealer maps ``(start, end, t)`` with ``t`` in ``[0, 1]`` (the fraction of the phase done) to a
value, the building block of fastai's ``TrainingPhase`` API (Gugger, "The TrainPhase API", fastai
0.7, 2018). The formulas are those of that notebook:

* none: ``start``
* linear: ``start + (end - start) * t``
* cosine: ``end + (start - end) / 2 * (1 + cos(pi * t))`` (Loshchilov & Hutter, SGDR, 2017)
* exponential: ``start * (end / start) ** t``
* polynomial(p): ``end + (start - end) * (1 - t) ** p``

:func:`parse_decay` turns user spellings (``"cos"``, ``"poly2"``, ``("polynomial", 2)``,
``{"type": "polynomial", "power": 2}``, an annealer or any ``f(start, end, t)``) into an annealer.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from epochal.utils import did_you_mean

__all__ = [
    "ANNEALERS",
    "Annealer",
    "Cosine",
    "Exponential",
    "FunctionAnnealer",
    "Linear",
    "NoDecay",
    "Polynomial",
    "parse_decay",
]


class Annealer:
    """Base class: ``annealer(start, end, t) -> value``.

    Attributes:
        name: the name used in configuration files.
        decays: False only for :class:`NoDecay`, whose value ignores ``end``.
    """

    name: str = "annealer"
    decays: bool = True

    def __call__(self, start: float, end: float, t: float) -> float:
        raise NotImplementedError

    def validate(self, start: float, end: float, what: str) -> None:
        """Raise ValueError when ``start``/``end`` cannot be annealed (``what`` names the value)."""

    def to_config(self) -> str | list:
        """The plain-data spelling that :func:`parse_decay` reads back."""
        return self.name


@dataclass(frozen=True)
class NoDecay(Annealer):
    """Constant at ``start``."""

    name = "none"
    decays = False

    def __call__(self, start: float, end: float, t: float) -> float:
        return start


@dataclass(frozen=True)
class Linear(Annealer):
    """Straight line from ``start`` to ``end``."""

    name = "linear"

    def __call__(self, start: float, end: float, t: float) -> float:
        return start + (end - start) * t


@dataclass(frozen=True)
class Cosine(Annealer):
    """Half a cosine from ``start`` to ``end``: flat at both ends, steepest in the middle."""

    name = "cosine"

    def __call__(self, start: float, end: float, t: float) -> float:
        return end + (start - end) / 2 * (1 + math.cos(math.pi * t))


@dataclass(frozen=True)
class Exponential(Annealer):
    """Geometric from ``start`` to ``end`` (the same factor every step); both must be > 0."""

    name = "exponential"

    def __call__(self, start: float, end: float, t: float) -> float:
        return start * (end / start) ** t

    def validate(self, start: float, end: float, what: str) -> None:
        if not (start > 0 and end > 0):
            raise ValueError(
                f"exponential decay of {what} needs a start and an end > 0, got ({start}, {end}); "
                f"give {what}=(start, end) with end > 0, or use cosine/linear to reach zero"
            )


@dataclass(frozen=True)
class Polynomial(Annealer):
    """``end + (start - end) * (1 - t) ** power``; power 1 is linear, larger powers drop faster."""

    power: float = 2.0
    name = "polynomial"

    def __post_init__(self) -> None:
        if not (isinstance(self.power, numbers.Real) and 0 < self.power < math.inf):
            raise ValueError(f"polynomial decay power must be a finite number > 0, got {self.power!r}")

    def __call__(self, start: float, end: float, t: float) -> float:
        return end + (start - end) * (1 - t) ** self.power

    def to_config(self) -> list:
        return ["polynomial", self.power]


@dataclass(frozen=True)
class FunctionAnnealer(Annealer):
    """Wraps any ``f(start, end, t) -> value``."""

    function: Callable[[float, float, float], float]
    name: str = "custom"

    def __call__(self, start: float, end: float, t: float) -> float:
        return float(self.function(start, end, t))

    def to_config(self) -> str:
        raise ValueError(f"custom annealer {self.name!r} ({self.function!r}) has no plain-data form")


#: Annealer constructors by name, with the accepted aliases.
ANNEALERS: dict[str, Callable[..., Annealer]] = {
    "none": NoDecay,
    "constant": NoDecay,
    "linear": Linear,
    "cosine": Cosine,
    "cos": Cosine,
    "exponential": Exponential,
    "exp": Exponential,
    "polynomial": Polynomial,
    "poly": Polynomial,
}

_POLY = re.compile(r"^(?:poly|polynomial)[_:(\s]*([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\)?$")


def parse_decay(spec: Any, what: str = "decay") -> Annealer:
    """Turn a decay specification into an :class:`Annealer`.

    Args:
        spec: None (no decay), a name from :data:`ANNEALERS`, ``"poly<p>"``, a
            ``(name, power)`` pair, ``{"type": name, "power": p}``, an :class:`Annealer` or a
            callable ``f(start, end, t)``.
        what: the argument name for error messages (e.g. ``"lr_decay"``).

    Raises:
        ValueError: for an unknown name (with the closest match) or a bad power.

    Examples:
        >>> parse_decay("poly2")(1.0, 0.0, 0.5)
        0.25
    """
    if spec is None:
        return NoDecay()
    if isinstance(spec, Annealer):
        return spec
    if isinstance(spec, str):
        return _parse_name(spec.strip().lower(), what)
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"type", "power"}
        if unknown or "type" not in spec:
            raise ValueError(f"{what} dict takes keys 'type' and 'power', got {sorted(spec)}")
        return parse_decay([spec["type"], spec["power"]] if "power" in spec else spec["type"], what)
    if isinstance(spec, tuple | list) and len(spec) == 2 and isinstance(spec[0], str):
        name = spec[0].strip().lower()
        if ANNEALERS.get(name) is not Polynomial:
            raise ValueError(f"{what}={spec!r}: only polynomial decay takes a parameter (the power)")
        return Polynomial(spec[1])
    if callable(spec):
        return FunctionAnnealer(spec, getattr(spec, "__name__", "custom"))
    raise ValueError(f"{what} must be a name, (name, power), an Annealer or a callable, got {spec!r}")


def _parse_name(name: str, what: str) -> Annealer:
    match = _POLY.match(name)
    if match:
        return Polynomial(float(match.group(1)))
    if name in ("poly", "polynomial"):
        raise ValueError(f"{what}={name!r} needs a power: write 'poly2' or ('polynomial', 2)")
    if name not in ANNEALERS:
        hint = did_you_mean(name, ANNEALERS, " (did you mean {}?)")
        raise ValueError(f"unknown {what} {name!r}{hint}; known: {', '.join(sorted(ANNEALERS))}, 'poly<p>'")
    return ANNEALERS[name]()
