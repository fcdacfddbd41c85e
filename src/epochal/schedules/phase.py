"""``TrainingPhase``: one stretch of training described as data.

After Gugger's TrainPhase API (fastai 0.7, 2018): training is a list of phases, each with a length
in epochs (fractions allowed), an optimizer, a learning rate and a momentum that may anneal from a
start to an end value, a weight decay, and optionally its own data or image size (progressive
resizing). Builders such as :func:`~epochal.schedules.one_cycle` return such lists;
:class:`~epochal.schedules.PhaseSchedule` turns them into values per optimizer step.

Learning rates are given for the *top* (last) layer group. A ``slice(lo, hi)`` or a list of
per-group values sets discriminative rates; the schedule anneals the top value and every group
keeps its ratio to it. Python tuples are ``(start, end)`` pairs, lists are per-group values.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from epochal.optim import lr_scales, resolve_optimizer
from epochal.schedules.annealers import Annealer, Linear, NoDecay, parse_decay
from epochal.utils import check_number, size_pair

__all__ = ["TrainingPhase"]


@dataclass
class TrainingPhase:
    """One phase of training.

    Args:
        epochs: length in epochs of this phase's data; may be fractional (``0.25``).
        optimizer: a registered optimizer name, class or factory; None keeps the previous phase's
            optimizer (or the Learner's default for the first phase).
        lr: the top group's learning rate: a value, a ``(start, end)`` pair, ``slice(lo, hi)`` or a
            list of per-group values (discriminative); pairs may hold slices/lists with equal
            ratios. None continues from the previous phase's final value; ``(None, end)`` anneals
            from the previous phase's final value to ``end`` (SWA's hand-over to its rate).
        lr_decay: how ``lr`` moves from start to end (see :func:`parse_decay`; stored parsed, as
            an :class:`Annealer`); None means linear for a pair and constant for a single value.
            A decaying single value goes to zero.
        momentum: momentum (beta1 for Adam-like optimizers): a value or a ``(start, end)`` pair;
            None continues the previous phase's final value (or the optimizer's own).
        momentum_decay: like ``lr_decay`` for momentum.
        weight_decay: decoupled weight decay for this phase; None continues the previous one.
        data: the data for this phase (opaque here; the Learner interprets it).
        image_size: image size for this phase (progressive resizing): an int or ``(h, w)``.
        name: a label for logs and plots.
        optimizer_kwargs: extra optimizer constructor arguments (``eps``, ``nesterov`` ...).

    Examples:
        >>> warmup = TrainingPhase(epochs=0.5, optimizer="sgd", lr=(1e-3, 1e-1), momentum=(0.95, 0.85))
        >>> main = TrainingPhase(epochs=4.5, lr=1e-1, lr_decay="cosine", momentum=(0.85, 0.95))
    """

    epochs: float
    optimizer: Any = None
    lr: Any = None
    lr_decay: Any = None
    momentum: Any = None
    momentum_decay: Any = None
    weight_decay: float | None = None
    data: Any = None
    image_size: int | tuple[int, int] | None = None
    name: str | None = None
    optimizer_kwargs: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.epochs = check_number(self.epochs, "epochs", low=0.0, low_inclusive=False)
        if self.optimizer is not None:
            resolve_optimizer(self.optimizer)
        if self.optimizer_kwargs is not None:
            if not isinstance(self.optimizer_kwargs, Mapping) or not all(
                isinstance(k, str) for k in self.optimizer_kwargs
            ):
                raise ValueError(
                    f"optimizer_kwargs must be a dict with string keys, got {self.optimizer_kwargs!r}"
                )
            self.optimizer_kwargs = dict(self.optimizer_kwargs)
        if self.weight_decay is not None:
            self.weight_decay = check_number(self.weight_decay, "weight_decay", low=0.0)
        if self.name is not None and not isinstance(self.name, str):
            raise ValueError(f"name must be a string, got {self.name!r}")
        self.image_size = _image_size(self.image_size)
        self._lr = _parse_lr(self.lr)
        self.lr = _normalise_lr(self.lr)
        self._lr_annealer = _annealer(self.lr_decay, self._lr[1], "lr")
        if self.lr_decay is not None:
            self.lr_decay = self._lr_annealer
        if self._lr[0] is not None:
            self._lr_annealer.validate(self._lr[0], self.lr_end, "lr")
        self._momentum = _parse_momentum(self.momentum)
        if isinstance(self.momentum, list):
            self.momentum = tuple(self.momentum)
        if self._momentum is None and self.momentum_decay is not None:
            raise ValueError("momentum_decay is set but momentum is None; give momentum=(start, end)")
        self._momentum_annealer = _annealer(
            self.momentum_decay, self._momentum and self._momentum[1], "momentum"
        )
        if self.momentum_decay is not None:
            self.momentum_decay = self._momentum_annealer
        if self.momentum_range is not None:
            self._momentum_annealer.validate(*self.momentum_range, "momentum")

    @property
    def lr_start(self) -> float | None:
        """The top group's starting rate (None: continue the previous phase)."""
        return self._lr[0]

    @property
    def lr_end(self) -> float | None:
        """The top group's final rate: the pair's end, 0 for a decaying single value, else start."""
        if self._lr[1] is not None:
            return self._lr[1]
        return 0.0 if self._lr_annealer.decays else self._lr[0]

    @property
    def lr_annealer(self) -> Annealer:
        """The resolved learning-rate annealer."""
        return self._lr_annealer

    @property
    def lr_groups(self) -> slice | tuple[float, ...] | None:
        """The discriminative specification (a slice or per-group values), or None."""
        return self._lr[2]

    def lr_scales(self, n_groups: int) -> tuple[float, ...] | None:
        """Per-layer-group rates relative to the top group, or None without discriminative rates."""
        return None if self._lr[2] is None else lr_scales(self._lr[2], n_groups)

    @property
    def momentum_range(self) -> tuple[float, float] | None:
        """``(start, end)`` of momentum over the phase, or None when the phase leaves it alone."""
        if self._momentum is None:
            return None
        start, end = self._momentum
        if end is None:
            end = 0.0 if self._momentum_annealer.decays else start
        return start, end

    @property
    def momentum_annealer(self) -> Annealer:
        """The resolved momentum annealer."""
        return self._momentum_annealer

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "phase") -> TrainingPhase:
        """Build a phase from plain data (YAML); errors name ``where`` and the bad key.

        See :func:`epochal.schedules.config.phase_from_dict` for the accepted spellings.
        """
        from epochal.schedules.config import phase_from_dict

        return phase_from_dict(data, where)

    def to_dict(self, strict: bool = True) -> dict[str, Any]:
        """Plain data that :meth:`from_dict` reads back (see :func:`~epochal.schedules.config.phase_to_dict`)."""
        from epochal.schedules.config import phase_to_dict

        return phase_to_dict(self, strict)


def _image_size(value: Any) -> int | tuple[int, int] | None:
    if value is None:
        return None
    height, width = size_pair(value, "image_size")
    return height if isinstance(value, numbers.Integral) else (height, width)


def _parse_lr(lr: Any) -> tuple[float | None, float | None, slice | tuple[float, ...] | None]:
    """``(start, end, groups)`` for the top group, ``groups`` holding the discriminative spec."""
    if lr is None:
        return None, None, None
    if isinstance(lr, tuple):
        if len(lr) != 2:
            raise ValueError(
                f"lr tuple must be (start, end), got {len(lr)} values; use a list for per-group values"
            )
        if lr[0] is None:  # (None, end): from wherever the previous phase ended, to end
            end, end_groups = _lr_value(lr[1], "lr end")
            return None, end, end_groups
        start, start_groups = _lr_value(lr[0], "lr start")
        end, end_groups = _lr_value(lr[1], "lr end")
        if start_groups is not None and end_groups is not None and not _same_ratios(start_groups, end_groups):
            raise ValueError(
                f"lr=({lr[0]!r}, {lr[1]!r}): per-group start and end must have equal ratios, because the "
                "schedule anneals one top value and keeps every group's ratio to it"
            )
        return start, end, start_groups if start_groups is not None else end_groups
    value, groups = _lr_value(lr, "lr")
    return value, None, groups


def _normalise_lr(lr: Any) -> Any:
    """Per-group sequences (lists, arrays) as lists of floats, so phases compare and serialise."""
    if lr is None or isinstance(lr, slice | numbers.Real):
        return lr
    if isinstance(lr, tuple):
        return tuple(_normalise_lr(v) for v in lr)
    return [float(v) for v in lr]


def _lr_value(value: Any, what: str) -> tuple[float, slice | tuple[float, ...] | None]:
    if isinstance(value, slice):
        if value.step is not None:
            raise ValueError(f"{what} slice takes no step, got {value!r}")
        top = check_number(value.stop, f"{what} slice stop", low=0.0, low_inclusive=False)
        if value.start is not None:
            check_number(value.start, f"{what} slice start", low=0.0, low_inclusive=False)
        return top, value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return check_number(value, what, low=0.0), None
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise ValueError(
            f"{what} must be a number, (start, end), slice(lo, hi) or a list per group, got {value!r}"
        )
    values = tuple(check_number(v, f"{what}[{i}]", low=0.0) for i, v in enumerate(value))
    if not values or values[-1] <= 0:
        raise ValueError(f"{what} per-group values need a last (top) value > 0, got {values!r}")
    return values[-1], values


def _same_ratios(a: slice | tuple[float, ...], b: slice | tuple[float, ...]) -> bool:
    """Whether two per-group rate specifications give every group the same ratio to the top one."""
    if isinstance(a, slice) and isinstance(b, slice):
        if (a.start is None) != (b.start is None):
            return False
        return a.start is None or math.isclose(a.start / a.stop, b.start / b.stop, rel_tol=1e-9)
    if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
        return all(math.isclose(x / a[-1], y / b[-1], rel_tol=1e-9, abs_tol=1e-15) for x, y in zip(a, b))
    return False


def _parse_momentum(momentum: Any) -> tuple[float, float | None] | None:
    if momentum is None:
        return None
    if isinstance(momentum, tuple | list):
        if len(momentum) != 2:
            raise ValueError(f"momentum must be a value or (start, end), got {momentum!r}")
        return (
            check_number(momentum[0], "momentum start", 0.0, 1.0),
            check_number(momentum[1], "momentum end", 0.0, 1.0),
        )
    return check_number(momentum, "momentum", 0.0, 1.0), None


def _annealer(decay: Any, end: float | None, what: str) -> Annealer:
    annealer = Linear() if decay is None and end is not None else parse_decay(decay, f"{what}_decay")
    if isinstance(annealer, NoDecay) and end is not None:
        raise ValueError(
            f"{what} gives an end value but {what}_decay={decay!r} keeps it constant; "
            f"choose a decay (e.g. {what}_decay='linear') or give a single value"
        )
    return annealer
