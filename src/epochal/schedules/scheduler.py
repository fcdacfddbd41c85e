"""``PhaseSchedule``: hyperparameters as a pure function of the optimizer-step count.

A list of :class:`~epochal.schedules.TrainingPhase` becomes a piecewise schedule over optimizer
steps. Phase ``k`` covers steps ``[boundaries[k], boundaries[k+1])`` where each boundary is the
*cumulative* step count ``sum(epochs_i * steps_per_epoch_i)`` rounded once, so fractional epochs
never drift however many phases there are.

**Every phase reaches its end value on its last step**, so the last step of a run uses the final
value, as torch's ``OneCycleLR`` does (fastai's ``pct = i / n`` stops one step short of it). The
j-th of a phase's ``L`` steps anneals at

* ``t = j / (L - 1)`` when the phase starts afresh: the first phase, or one that does not start
  where the previous phase ended (a warm restart, a step down): its first step is its start value;
* ``t = (j + 1) / L`` when it continues from where the previous phase ended (lr, momentum and
  per-group ratios all equal): that point was the previous phase's last step and is not repeated.

A one-step phase takes its end value. With these rules ``one_cycle`` gives torch's ``OneCycleLR``
(``three_phase=False``) step for step, and every cosine or linear builder ends on its final value.

Because values depend on the step count only (never on batches seen, world size, gradient
accumulation or a resumed epoch counter), resuming at step ``k`` reproduces the uninterrupted run
exactly. Settings a phase leaves unset continue from the previous phase's final value, which keeps
that purity: the value at a step never depends on what was written before it.
"""

from __future__ import annotations

import bisect
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from epochal.optim import lr_scales
from epochal.schedules.annealers import Annealer, NoDecay
from epochal.schedules.phase import TrainingPhase, _same_ratios

__all__ = ["PhaseSchedule"]


@dataclass(frozen=True)
class _Curve:
    start: float
    end: float
    annealer: Annealer

    def at(self, t: float) -> float:
        return self.start if isinstance(self.annealer, NoDecay) else self.annealer(self.start, self.end, t)

    def continues(self, previous: _Curve | None) -> bool:
        """Whether this curve starts where ``previous`` ends (both None: nothing to continue)."""
        if previous is None:
            return False
        return math.isclose(self.at(0.0), previous.at(1.0), rel_tol=1e-9, abs_tol=1e-15)


@dataclass(frozen=True)
class _Resolved:
    lr: _Curve
    lr_groups: slice | tuple[float, ...] | None
    momentum: _Curve | None
    weight_decay: float | None


class PhaseSchedule:
    """Per-step learning rate, momentum and weight decay for a list of phases.

    Args:
        phases: the phases (``TrainingPhase`` objects or plain dicts).
        steps_per_epoch: optimizer steps per epoch, one int or one per phase (data may change).
        default_lr: the rate for a first phase that gives no ``lr``.
        lr_multiplier: multiplies every learning rate of every phase (learning-rate scaling with the
            global batch, :class:`~epochal.distributed.LRScaling`); momentum and decay are unchanged.

    Raises:
        ValueError: for an empty phase list, bad step counts, a schedule with zero steps or a first
            phase without a learning rate and no ``default_lr``.

    Examples:
        >>> schedule = PhaseSchedule(one_cycle(5, 0.1), steps_per_epoch=390)
        >>> for step in range(schedule.total_steps):
        ...     schedule.apply(optimizer, step)   # before optimizer.step()
    """

    def __init__(
        self,
        phases: Sequence[TrainingPhase | dict],
        steps_per_epoch: int | Sequence[int],
        default_lr: float | None = None,
        lr_multiplier: float = 1.0,
    ) -> None:
        if not (lr_multiplier > 0 and math.isfinite(lr_multiplier)):
            raise ValueError(f"lr_multiplier must be a finite number > 0, got {lr_multiplier}")
        self.lr_multiplier = float(lr_multiplier)
        phases = [
            p if isinstance(p, TrainingPhase) else TrainingPhase.from_dict(p, f"phases[{i}]")
            for i, p in enumerate(phases)
        ]
        if not phases:
            raise ValueError("phases is empty; give at least one TrainingPhase")
        self.phases: tuple[TrainingPhase, ...] = tuple(phases)
        self.steps_per_epoch: tuple[int, ...] = _steps_per_phase(steps_per_epoch, len(phases))
        cumulative = [
            math.fsum(p.epochs * s for p, s in zip(phases[:k], self.steps_per_epoch, strict=False))
            for k in range(len(phases) + 1)
        ]
        self._boundaries = tuple(math.floor(c + 0.5 + 1e-9) for c in cumulative)
        if self._boundaries[-1] <= 0:
            raise ValueError(f"the phases add up to {cumulative[-1]:.3g} optimizer steps; need at least one")
        self._epoch_starts = tuple(math.fsum(p.epochs for p in phases[:k]) for k in range(len(phases)))
        self._resolved = _resolve(self.phases, default_lr)
        self._continues = _continuations(self._resolved, [self.phase_length(k) for k in range(len(phases))])
        self._last_nonempty = max(k for k in range(len(phases)) if self.phase_length(k) > 0)
        self._scale_cache: dict[tuple[int, int], tuple[float, ...]] = {}
        self._horizons: dict[float, int] = {}

    @property
    def total_steps(self) -> int:
        """The number of optimizer steps in the whole schedule."""
        return self._boundaries[-1]

    @property
    def boundaries(self) -> tuple[int, ...]:
        """``num_phases + 1`` step indices; phase ``k`` covers ``[boundaries[k], boundaries[k+1])``."""
        return self._boundaries

    @property
    def num_phases(self) -> int:
        """The number of phases."""
        return len(self.phases)

    def phase_length(self, index: int) -> int:
        """The number of optimizer steps of phase ``index`` (0 for a phase too short to round up)."""
        return self._boundaries[index + 1] - self._boundaries[index]

    def phase_range(self, index: int) -> range:
        """The optimizer steps of phase ``index``."""
        return range(self._boundaries[index], self._boundaries[index + 1])

    def locate(self, step: int) -> tuple[int, float]:
        """``(phase_index, t)`` of an optimizer step: ``t`` in ``[0, 1]`` is what the annealers see.

        Phases of zero steps are skipped; see the module docstring for where ``t`` starts and ends.

        Raises:
            ValueError: for a step outside ``[0, total_steps)``.
        """
        if not 0 <= step < self._boundaries[-1]:
            raise ValueError(f"step must be in [0, {self._boundaries[-1]}), got {step}")
        index = bisect.bisect_right(self._boundaries, step) - 1
        return index, self._position(index, step)

    def continues(self, index: int) -> bool:
        """Whether phase ``index`` continues from where the previous (non-empty) phase ended."""
        return self._continues[index]

    def epoch_at(self, step: int) -> float:
        """The (fractional) epoch count reached before an optimizer step, for logs and plots."""
        if step >= self._boundaries[-1]:
            return self._epoch_starts[-1] + self.phases[-1].epochs
        index = bisect.bisect_right(self._boundaries, step) - 1
        done = (step - self._boundaries[index]) / self.phase_length(index)
        return self._epoch_starts[index] + done * self.phases[index].epochs

    def step_at(self, epoch: float) -> int:
        """The optimizer step at which a (fractional) epoch count is reached; the inverse of :meth:`epoch_at`.

        Rounded like the boundaries (the cumulative step count rounded once), so the epoch at
        which a phase starts maps exactly to that phase's first step.
        """
        total = self._epoch_starts[-1] + self.phases[-1].epochs
        tolerance = 1e-9 * max(1.0, total)
        if epoch <= tolerance:
            return 0
        if epoch >= total - tolerance:
            return self.total_steps
        index = bisect.bisect_right(self._epoch_starts, epoch + tolerance) - 1
        offset = epoch - self._epoch_starts[index]
        if abs(offset) <= tolerance:
            return self._boundaries[index]
        done = math.fsum(p.epochs * s for p, s in zip(self.phases[:index], self.steps_per_epoch, strict=False))
        step = math.floor(done + offset * self.steps_per_epoch[index] + 0.5 + 1e-9)
        return min(max(step, self._boundaries[index]), self._boundaries[index + 1])

    def values(self, step: int) -> dict[str, float | None]:
        """``{"lr", "momentum", "weight_decay"}`` at an optimizer step (top-group lr, base decay).

        ``momentum`` and ``weight_decay`` are None while no phase so far has set them. From
        ``total_steps`` on, the values are the last phase's final ones.
        """
        lr, momentum, weight_decay, _ = self._at(step)
        return {"lr": lr, "momentum": momentum, "weight_decay": weight_decay}

    def optimizer_spec(self, index: int) -> tuple[Any, dict[str, Any]]:
        """``(optimizer, optimizer_kwargs)`` in force in phase ``index`` (None: the Learner's default)."""
        for phase in reversed(self.phases[: index + 1]):
            if phase.optimizer is not None:
                return phase.optimizer, dict(phase.optimizer_kwargs or {})
        return None, dict(self.phases[index].optimizer_kwargs or {})

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Write the values at ``step`` into every param group of ``optimizer``; returns the top lr.

        Each group gets ``lr = base * scale * lr_factor`` where ``scale`` is the phase's
        discriminative ratio for the group's ``layer_group`` or else the group's ``lr_scale``, and
        ``lr_factor`` (default 1) is a multiplier that callbacks such as ReduceLROnPlateau keep in
        the group (so it is saved with the optimizer state); ``momentum`` (or ``betas[0]``) when the
        schedule sets momentum; ``weight_decay = base * wd_scale`` when it sets decay. A group with
        ``train_epochs`` (see :class:`~epochal.optim.GroupRule`) takes ``base`` from the whole
        schedule compressed into its first ``train_epochs`` epochs, and 0 after them.
        """
        lr, momentum, weight_decay, index = self._at(step)
        scales = self._scales(index, optimizer.param_groups)
        for group in optimizer.param_groups:
            scale = scales[group["layer_group"]] if scales is not None else group.get("lr_scale", 1.0)
            base = lr if group.get("train_epochs") is None else self.compressed_lr(step, group["train_epochs"])
            value = base * scale * group.get("lr_factor", 1.0)
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(value)
            else:
                group["lr"] = value
            if momentum is not None:
                if "betas" in group:
                    group["betas"] = (momentum, group["betas"][1])
                elif "momentum" in group:
                    group["momentum"] = momentum
            if weight_decay is not None:
                group["weight_decay"] = weight_decay * group.get("wd_scale", 1.0)
        return lr

    def compressed_lr(self, step: int, train_epochs: float) -> float:
        """The top rate at ``step`` of the schedule squeezed into its first ``train_epochs`` epochs.

        airbench's whitening bias: the linear decay of the whole run, reaching 0 at epoch 3
        instead of at the end; from then on the rate is 0. The ``h`` compressed steps map onto
        the whole run's first and last steps, so the compressed schedule, like every phase, ends
        on its final value on its last step (step ``h - 1`` is at ``(total_steps - 1)``).
        """
        horizon = self.horizon(train_epochs)
        if step >= horizon:
            return 0.0
        return self._at(step * (self.total_steps - 1) / max(horizon - 1, 1))[0]

    def horizon(self, train_epochs: float) -> int:
        """The first step at which a group trained for ``train_epochs`` epochs has rate 0 (>= 1)."""
        horizon = self._horizons.get(train_epochs)
        if horizon is None:
            horizon = self._horizons[train_epochs] = max(self.step_at(train_epochs), 1)
        return horizon

    def _position(self, index: int, step: float) -> float:
        """The annealing position ``t`` of ``step`` inside phase ``index`` (module docstring)."""
        length, j = self.phase_length(index), step - self._boundaries[index]
        if self._continues[index]:
            return (j + 1) / length
        return j / (length - 1) if length > 1 else 1.0

    def _at(self, step: float) -> tuple[float, float | None, float | None, int]:
        if step >= self._boundaries[-1]:
            index, t = self._last_nonempty, 1.0
        elif step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        else:
            index = bisect.bisect_right(self._boundaries, step) - 1
            t = self._position(index, step)
        r = self._resolved[index]
        momentum = r.momentum.at(t) if r.momentum is not None else None
        return r.lr.at(t) * self.lr_multiplier, momentum, r.weight_decay, index

    def _scales(self, index: int, groups: list[dict]) -> tuple[float, ...] | None:
        spec = self._resolved[index].lr_groups
        if spec is None:
            return None
        key = (index, len(groups))
        if key not in self._scale_cache:
            missing = [g.get("name", i) for i, g in enumerate(groups) if "layer_group" not in g]
            if missing:
                raise ValueError(
                    f"phase {index} sets per-group lr {spec!r} but param groups {missing} have no "
                    "'layer_group' key; build the optimizer from epochal.optim.param_groups(model)"
                )
            n_groups = 1 + max(int(g["layer_group"]) for g in groups)
            self._scale_cache[key] = lr_scales(spec, n_groups)
        return self._scale_cache[key]


def _steps_per_phase(steps_per_epoch: int | Sequence[int], n_phases: int) -> tuple[int, ...]:
    if isinstance(steps_per_epoch, numbers.Number) or not hasattr(steps_per_epoch, "__iter__"):
        values = [steps_per_epoch] * n_phases
    else:
        values = list(steps_per_epoch)
    if len(values) != n_phases:
        raise ValueError(
            f"steps_per_epoch gives {len(values)} values for {n_phases} phases; give one int or one per phase"
        )
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"steps_per_epoch[{i}] must be an int >= 1, got {v!r}")
    return tuple(int(v) for v in values)


def _resolve(phases: Sequence[TrainingPhase], default_lr: float | None) -> list[_Resolved]:
    resolved: list[_Resolved] = []
    lr_prev, groups_prev, momentum_prev, wd_prev = default_lr, None, None, None
    for k, phase in enumerate(phases):
        start = phase.lr_start if phase.lr_start is not None else lr_prev
        if start is None:
            raise ValueError(
                f"phase {k} gives no lr and there is no previous phase or default_lr to continue from"
            )
        if phase.lr_start is not None:
            end = phase.lr_end
        elif phase.lr is not None:  # (None, end): anneal from the previous phase's final rate
            end = phase.lr_end
            phase.lr_annealer.validate(start, end, f"lr of phase {k}")
        else:
            end = 0.0 if phase.lr_annealer.decays else start
            phase.lr_annealer.validate(start, end, f"lr of phase {k}")
        lr = _Curve(start, end, phase.lr_annealer)
        groups = phase.lr_groups if phase.lr_groups is not None else groups_prev
        if phase.momentum_range is not None:
            momentum = _Curve(*phase.momentum_range, phase.momentum_annealer)
        else:
            momentum = _Curve(momentum_prev, momentum_prev, NoDecay()) if momentum_prev is not None else None
        weight_decay = phase.weight_decay if phase.weight_decay is not None else wd_prev
        resolved.append(_Resolved(lr, groups, momentum, weight_decay))
        lr_prev, groups_prev, wd_prev = lr.at(1.0), groups, weight_decay
        momentum_prev = momentum.at(1.0) if momentum is not None else None
    return resolved


def _continuations(resolved: Sequence[_Resolved], lengths: Sequence[int]) -> tuple[bool, ...]:
    """Per phase: does it start where the last phase with steps before it ended?"""
    flags, previous = [], None
    for phase, length in zip(resolved, lengths):
        flags.append(previous is not None and _continuous(previous, phase))
        if length > 0:
            previous = phase
    return tuple(flags)


def _continuous(before: _Resolved, after: _Resolved) -> bool:
    if not after.lr.continues(before.lr):
        return False
    if (before.momentum is None) != (after.momentum is None):
        return False
    if after.momentum is not None and not after.momentum.continues(before.momentum):
        return False
    if (before.lr_groups is None) != (after.lr_groups is None):
        return False
    return after.lr_groups is None or _same_ratios(before.lr_groups, after.lr_groups)
