"""PhaseFreezing: the ``freeze:`` key of explicit phases in a recipe.

Transfer learning after ULMFiT (Howard & Ruder, *Universal Language Model Fine-tuning for Text
Classification*, 2018): train the new head with the pretrained body frozen, then unfreeze and
train everything with discriminative learning rates. A recipe writes this as two phases,
``freeze: true`` then ``freeze: false`` (or a number of leading layer groups to keep frozen); this
callback applies each phase's setting when the phase starts, also after a resume. The recipe
builders add it themselves (it is not selectable under ``callbacks:``); Python users attach it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from epochal.callbacks.base import Callback

__all__ = ["PhaseFreezing"]


class PhaseFreezing(Callback):
    """Freeze leading layer groups per training phase.

    Args:
        groups: per phase, the number of leading layer groups to freeze (``-1``: all but the
            head, ``0``: none), or None to leave the model as the previous phase left it.
        train_bn: keep BatchNorm layers of frozen groups trainable (usually better, as fastai found).

    Attributes:
        applied: ``(phase index, groups frozen)`` for every phase start at which a setting was applied.

    Examples:
        >>> learner.add_callback(PhaseFreezing([-1, 0]))
        >>> learner.fit([TrainingPhase(epochs=1, lr=1e-2), TrainingPhase(epochs=3, lr=slice(1e-5, 1e-3))])
    """

    order = -10  # before anything that inspects trainable parameters at the start of a phase

    def __init__(self, groups: Sequence[int | None], train_bn: bool = True):
        self.groups = [None if g is None else int(g) for g in groups]
        self.train_bn = train_bn
        self.applied: list[tuple[int, int]] = []

    def before_phase(self) -> None:
        index = self.learner.state.phase
        if index >= len(self.groups):
            raise ValueError(f"PhaseFreezing has settings for {len(self.groups)} phases, the fit has more")
        n = self.groups[index]
        if n is not None:
            self.learner.freeze_to(n, train_bn=self.train_bn)
            self.applied.append((index, n))

    def state_dict(self) -> dict[str, Any]:
        return {"groups": list(self.groups)}
