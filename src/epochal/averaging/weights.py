"""An averaged copy of a model's parameters and buffers, and swapping it into the model.

:class:`AveragedWeights` holds tensors, not a second module: the averaged values live beside the
model on its device, an update folds the model's current values in with an
:class:`~epochal.averaging.rules.AveragingRule`, and :meth:`AveragedWeights.swapped_into` copies
them into the model for an evaluation and puts the model's own values back afterwards, also when
the evaluation fails. Copying values (instead of keeping a ``deepcopy`` of the module) keeps the
model's tensors in place, so a ``torch.compile`` wrapper, the optimizer and hooks keep working on
the swapped weights without recompiling.

Buffers are either averaged with the parameters (EMA of BatchNorm statistics, as timm's
``ModelEmaV2`` does) or copied from the model at every update (what ``AveragedModel`` does with
``use_buffers=False``; SWA then recomputes BatchNorm statistics for the averaged weights, see
:mod:`epochal.averaging.batchnorm`). Integer buffers (``num_batches_tracked``) are always copied.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from epochal.averaging.rules import AveragingRule

__all__ = ["AveragedWeights"]


def _floating(tensor: torch.Tensor) -> bool:
    return tensor.is_floating_point() or tensor.is_complex()


class AveragedWeights:
    """A running average of a model's weights, kept as tensors on the model's device.

    Args:
        model: the model whose parameters (and buffers) are averaged; its current values are the
            starting point of the average.
        rule: how an update folds the model in (:class:`~epochal.averaging.rules.EqualMean`,
            :class:`~epochal.averaging.rules.ExponentialMean`).
        average_buffers: average floating-point buffers too (True), or copy them from the model at
            every update (False).

    Attributes:
        n_averaged: updates so far (a Python int: deciding an update's weight never reads the device).

    Examples:
        >>> averaged = AveragedWeights(model, EqualMean())
        >>> averaged.update(model)             # after every epoch of the SWA phase
        >>> with averaged.swapped_into(model):
        ...     evaluate(model)                # the model holds the averaged weights here
    """

    def __init__(self, model: nn.Module, rule: AveragingRule, average_buffers: bool = False):
        self.rule = rule
        self.average_buffers = bool(average_buffers)
        self.param_names = [name for name, _ in model.named_parameters()]
        self.buffer_names = [name for name, _ in model.named_buffers()]
        with torch.no_grad():
            self.params = [p.detach().clone() for _, p in model.named_parameters()]
            self.buffers = [b.detach().clone() for _, b in model.named_buffers()]
        self.n_averaged = 0

    # ----------------------------------------------------------------- the model's tensors
    def _model_tensors(self, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        params = [p for _, p in model.named_parameters()]
        buffers = [b for _, b in model.named_buffers()]
        if len(params) != len(self.params) or len(buffers) != len(self.buffers):
            raise ValueError(
                f"AveragedWeights was made for a model with {len(self.params)} parameters and "
                f"{len(self.buffers)} buffers, this one has {len(params)} and {len(buffers)}"
            )
        return params, buffers

    def _buffer_groups(self, buffers: list[torch.Tensor]) -> tuple[list[int], list[int]]:
        """Indices of the buffers averaged and of those copied."""
        averaged = [self.average_buffers and _floating(b) for b in buffers]
        return [i for i, a in enumerate(averaged) if a], [i for i, a in enumerate(averaged) if not a]

    # ----------------------------------------------------------------- updating
    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights into the average (kernels only, no host-device sync)."""
        params, buffers = self._model_tensors(model)
        floating = [i for i, p in enumerate(params) if _floating(p)]
        self.rule.update([self.params[i] for i in floating], [params[i].detach() for i in floating], self.n_averaged)
        averaged, copied = self._buffer_groups(buffers)
        if averaged:
            self.rule.update([self.buffers[i] for i in averaged], [buffers[i] for i in averaged], self.n_averaged)
        if copied:
            torch._foreach_copy_([self.buffers[i] for i in copied], [buffers[i] for i in copied])
        self.n_averaged += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged values into ``model`` (permanently; see :meth:`swapped_into`)."""
        params, buffers = self._model_tensors(model)
        torch._foreach_copy_(params + buffers, self.params + self.buffers)

    @torch.no_grad()
    def take_buffers(self, model: nn.Module) -> None:
        """Copy ``model``'s buffers into the average (after BatchNorm was recalibrated for it)."""
        _, buffers = self._model_tensors(model)
        if buffers:
            torch._foreach_copy_(self.buffers, buffers)

    @contextlib.contextmanager
    def swapped_into(self, model: nn.Module) -> Iterator[nn.Module]:
        """Hold the averaged weights in ``model`` for a ``with`` block; its own come back after, also on error.

        The model's parameters and buffers are copied aside (one copy of the weights), the averaged
        values copied in, and the saved values copied back at the end; the tensors themselves stay
        the same objects throughout.
        """
        params, buffers = self._model_tensors(model)
        live = params + buffers
        with torch.no_grad():
            saved = [t.detach().clone() for t in live]
            torch._foreach_copy_(live, self.params + self.buffers)
        try:
            yield model
        finally:
            with torch.no_grad():
                torch._foreach_copy_(live, saved)

    def state(self) -> dict[str, torch.Tensor]:
        """Name -> averaged tensor, in the model's ``state_dict`` naming (a model loads it directly)."""
        return {**dict(zip(self.param_names, self.params)), **dict(zip(self.buffer_names, self.buffers))}

    def ordered_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """:meth:`state` in the key order of ``model.state_dict()`` (for files that load into ``model``)."""
        state = self.state()
        return {key: state[key] for key in model.state_dict() if key in state}

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The averaged tensors and the update count (tensors and plain data, for checkpoints)."""
        return {"tensors": self.state(), "n_averaged": self.n_averaged, "rule": self.rule.to_config(),
                "average_buffers": self.average_buffers}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; names must match the model this copy was made for."""
        tensors = state["tensors"]
        missing = [n for n in self.param_names + self.buffer_names if n not in tensors]
        if missing:
            raise ValueError(f"averaged weights in the checkpoint lack {missing[:5]} (another model?)")
        for target, name in zip(self.params + self.buffers, self.param_names + self.buffer_names):
            target.copy_(tensors[name])
        self.n_averaged = int(state["n_averaged"])

    def __repr__(self) -> str:
        count = len(self.params) + len(self.buffers)
        return f"AveragedWeights({self.rule!r}, n_averaged={self.n_averaged}, tensors={count})"
