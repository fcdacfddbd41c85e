"""Regression losses that accept a model's ``(N, 1)`` output for ``(N,)`` targets.

A regression head has one output, so a model returns ``(N, 1)`` while a table's target column is
``(N,)``. torch's losses would broadcast the pair to ``(N, N)`` (with only a warning) and train on
every prediction-target pair; these subclasses drop the trailing output dimension first, so the
loss compares each prediction with its own target. Everything else is torch's loss.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["L1Loss", "MSELoss", "SmoothL1Loss"]


def _matched(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if prediction.ndim == target.ndim + 1 and prediction.shape[-1] == 1:
        return prediction.squeeze(-1)
    return prediction


class MSELoss(nn.MSELoss):
    """:class:`torch.nn.MSELoss` for a one-output head and 1-D targets.

    Examples:
        >>> MSELoss()(torch.zeros(4, 1), torch.ones(4))
        tensor(1.)
    """

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: A002 (torch's name)
        return super().forward(_matched(input, target), target)


class L1Loss(nn.L1Loss):
    """:class:`torch.nn.L1Loss` for a one-output head and 1-D targets."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: A002
        return super().forward(_matched(input, target), target)


class SmoothL1Loss(nn.SmoothL1Loss):
    """:class:`torch.nn.SmoothL1Loss` (Huber with ``beta``) for a one-output head and 1-D targets."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: A002
        return super().forward(_matched(input, target), target)
