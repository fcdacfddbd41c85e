"""The shape every epochal classifier shares: ``stem -> stages -> head``.

Other areas rely on three things and nothing more: ``layer_groups()`` (input-to-output order, head
last; the optimiser area builds discriminative learning rates and freeze/unfreeze from it),
``head`` with ``reset_classifier(num_classes)`` for transfer learning, and ``default_input_size``.
"""

from __future__ import annotations

import torch
from torch import nn

from epochal.models.layers import ClassifierHead

__all__ = ["StagedClassifier"]


class StagedClassifier(nn.Module):
    """Base class: subclasses set ``stem``, ``stages`` (an ``nn.Sequential``) and ``head``.

    Attributes:
        family: the family name shown in model summaries (e.g. "regnet").
        default_input_size: (channels, height, width) the model is designed for.
    """

    family: str = ""
    stem: nn.Module
    stages: nn.Sequential
    head: ClassifierHead

    def __init__(self, default_input_size: tuple[int, int, int]) -> None:
        super().__init__()
        self.default_input_size = tuple(default_input_size)

    @property
    def num_classes(self) -> int:
        """Outputs of the classifier (0 when the head is a feature extractor)."""
        return self.head.num_classes

    @property
    def num_features(self) -> int:
        """Width of the features the final ``fc`` sees."""
        return self.head.num_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The feature map before the head."""
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))

    def layer_groups(self) -> list[nn.Module]:
        """``[stem, stage_1, ..., stage_n, head]``: every parameter in exactly one group."""
        return [self.stem, *self.stages, self.head]

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final linear layer (keeping pooling and dropout) for ``num_classes`` outputs."""
        self.head.reset(num_classes)
