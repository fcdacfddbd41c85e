"""The result of a sanity check: one :class:`Check` per question, gathered in a :class:`SanityReport`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from epochal.utils import did_you_mean, json_safe

__all__ = ["CHECKS", "Check", "SanityReport"]

#: Every check of :func:`~epochal.diagnostics.sanity_check`, in report order.
CHECKS: tuple[str, ...] = (
    "overfit",
    "lr_sweep",
    "gradient_flow",
    "trainable",
    "dead_outputs",
    "labels_constant",
    "label_signal",
    "data_label_count",
    "input_normalization",
    "duplicates",
)


@dataclass
class Check:
    """One question of the sanity check and its answer.

    Attributes:
        name: one of :data:`CHECKS`.
        passed: True, False, or None when the check did not run (skipped, not applicable, or
            not needed because the batch was overfit); only False fails the report.
        value: what was measured (numbers, names; plain data).
        message: one line for a person: what was found and, on failure, what to do.
    """

    name: str
    passed: bool | None
    value: Any
    message: str

    def to_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self))


@dataclass
class SanityReport:
    """Every check of one sanity run.

    Attributes:
        checks: the checks, in :data:`CHECKS` order.
        settings: what the run used (batch size, steps, learning rate, loss target, notes).

    Examples:
        >>> report = learner.overfit_batch()
        >>> report.passed, [c.name for c in report.failed]
        (False, ['label_signal'])
    """

    checks: list[Check]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when no check failed (checks that did not run do not count)."""
        return not self.failed

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.passed is False]

    def __getitem__(self, name: str) -> Check:
        for check in self.checks:
            if check.name == name:
                return check
        names = [c.name for c in self.checks]
        raise KeyError(f"no check {name!r} in this report{did_you_mean(name, names)}; checks: {names}")

    def to_dict(self) -> dict[str, Any]:
        """``{"passed", "failed": [names], "settings", "checks": [{name, passed, value, message}]}``."""
        return {
            "passed": self.passed,
            "failed": [c.name for c in self.failed],
            "settings": json_safe(self.settings),
            "checks": [c.to_dict() for c in self.checks],
        }

    def __str__(self) -> str:
        marks = {True: "ok  ", False: "FAIL", None: "-   "}
        width = max(len(c.name) for c in self.checks) if self.checks else 0
        lines = [f"{marks[c.passed]} {c.name:<{width}}  {c.message}" for c in self.checks]
        lines += [f"note: {note}" for note in self.settings.get("notes", ())]
        verdict = "passed" if self.passed else f"FAILED: {', '.join(c.name for c in self.failed)}"
        return "\n".join([*lines, f"sanity check {verdict}"])
