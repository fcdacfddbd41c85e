"""An MLP for tabular data with entity embeddings of the categorical columns.

Guo & Berkhahn, "Entity Embeddings of Categorical Variables" (2016), in the form fastai's
``TabularModel`` made standard: one embedding per categorical column (size from
``embedding_size``), embedding dropout, BatchNorm of the continuous columns, then
Linear-ReLU-BatchNorm-Dropout layers and a linear classifier.

Inputs are ``(x_cat, x_cont)``: ``x_cat`` a LongTensor (batch, n_categorical) of category codes in
``[0, cardinality)`` and ``x_cont`` a float tensor (batch, n_continuous). The data area supplies the
cardinalities; they should count the code reserved for missing/unknown values. With ``onehot=True``
the input is instead one float tensor: the one-hot columns of every categorical column, then the
continuous columns (what ``TabularPreprocessor(encoding="onehot")`` gives); the one-hot columns go
to the MLP as they are, in place of embeddings.

``numeric_embedding="periodic"`` embeds each continuous column as well, with the PLR embeddings of
Gorishniy, Rubachev & Babenko, *On Embeddings for Numerical Features in Tabular Deep Learning*
(2022): ``ReLU(Linear([cos(2 pi c x), sin(2 pi c x)]))`` with ``k`` trained frequencies ``c`` per
column, initialised from ``N(0, sigma^2)``, and a linear layer of its own per column.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from epochal.models._registry import register_model
from epochal.models.layers import ClassifierHead

__all__ = ["PeriodicEmbeddings", "TabularMLP", "embedding_size"]

NUMERIC_EMBEDDINGS = (None, "periodic")


def embedding_size(cardinality: int, max_size: int = 600) -> int:
    """fastai's rule of thumb: ``min(600, round(1.6 * cardinality ** 0.56))``.

    Args:
        cardinality: number of distinct codes of the column (including the missing-value code).
        max_size: cap on the embedding width.
    """
    if isinstance(cardinality, bool) or not isinstance(cardinality, int) or cardinality < 1:
        raise ValueError(f"cardinality must be a positive int, got {cardinality!r}")
    return int(min(max_size, round(1.6 * cardinality**0.56)))


class PeriodicEmbeddings(nn.Module):
    """PLR embeddings of numerical columns (Gorishniy et al. 2022): periodic, linear, ReLU.

    Column ``j`` of ``x`` becomes ``ReLU(W_j [cos(2 pi c_j x_j), sin(2 pi c_j x_j)] + b_j)``: ``k``
    frequencies ``c_j`` per column, trained, initialised from ``N(0, sigma^2)``; ``W_j`` a
    ``(2k, d)`` matrix of its own per column. The output is the ``n_features * d`` embeddings side by
    side.

    Args:
        n_features: the numerical columns.
        frequencies: ``k``, frequencies per column.
        sigma: standard deviation of the initial frequencies (the paper's most sensitive setting;
            ``tabular-adult`` chose 1.0 from 0.03-3 on its validation split).
        size: ``d``, the width of each column's embedding.

    Examples:
        >>> embed = PeriodicEmbeddings(3, frequencies=8, sigma=0.1, size=4)
        >>> tuple(embed(torch.randn(5, 3)).shape)
        (5, 12)
    """

    def __init__(self, n_features: int, frequencies: int = 16, sigma: float = 0.1, size: int = 16) -> None:
        super().__init__()
        for name, value in (("n_features", n_features), ("frequencies", frequencies), ("size", size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma!r}")
        self.n_features, self.size = n_features, size
        self.frequencies = nn.Parameter(torch.randn(n_features, frequencies) * sigma)
        bound = (2 * frequencies) ** -0.5  # nn.Linear's initialisation, for each column's layer
        self.weight = nn.Parameter(torch.empty(n_features, 2 * frequencies, size).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_features, size).uniform_(-bound, bound))

    @property
    def out_features(self) -> int:
        return self.n_features * self.size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angles = 2 * torch.pi * self.frequencies * x.float().unsqueeze(-1)  # (batch, features, k)
        periodic = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
        embedded = torch.einsum("bfk,fkd->bfd", periodic, self.weight) + self.bias
        return torch.relu(embedded).flatten(1)


class TabularMLP(nn.Module):
    """Embeddings for categorical columns plus an MLP.

    Args:
        cardinalities: number of codes of each categorical column (may be empty).
        n_continuous: number of continuous columns (may be 0).
        num_classes: outputs (1 for regression or a single sigmoid).
        hidden: widths of the hidden layers (multiples of 8 by default, for tensor cores).
        dropout: dropout after each hidden layer.
        embedding_dropout: dropout on the concatenated embeddings (with ``onehot``: on the one-hot columns).
        embedding_sizes: explicit embedding widths; defaults to ``embedding_size`` of each cardinality.
        onehot: the input is one float tensor of one-hot categorical columns (``sum(cardinalities)``
            of them) followed by the ``n_continuous`` continuous ones; no embeddings.
        numeric_embedding: ``None`` (continuous columns enter through BatchNorm) or ``"periodic"``
            (:class:`PeriodicEmbeddings` of each continuous column; meant for scaled columns
            without piecewise linear bins, ``data.options.bins: 0``).
        frequencies: ``k`` of the periodic embeddings.
        frequency_scale: ``sigma`` of the periodic embeddings.
        numeric_embedding_size: ``d`` of the periodic embeddings.

    Examples:
        >>> model = TabularMLP([9, 16, 7], n_continuous=6, num_classes=2)
        >>> logits = model(torch.zeros(4, 3, dtype=torch.long), torch.randn(4, 6))
        >>> dense = TabularMLP([9, 16, 7], n_continuous=6, onehot=True)
        >>> logits = dense(torch.zeros(4, 9 + 16 + 7 + 6))
    """

    family = "tabular"

    def __init__(
        self,
        cardinalities: Sequence[int],
        n_continuous: int,
        num_classes: int = 2,
        hidden: Sequence[int] = (256, 128),
        dropout: float = 0.1,
        embedding_dropout: float = 0.0,
        embedding_sizes: Sequence[int] | None = None,
        onehot: bool = False,
        numeric_embedding: str | None = None,
        frequencies: int = 16,
        frequency_scale: float = 0.1,
        numeric_embedding_size: int = 16,
    ) -> None:
        super().__init__()
        if numeric_embedding not in NUMERIC_EMBEDDINGS:
            raise ValueError(
                f"numeric_embedding={numeric_embedding!r} is not valid; use one of {list(NUMERIC_EMBEDDINGS)}"
            )
        cardinalities = [int(c) for c in cardinalities]
        if onehot and embedding_sizes is not None:
            raise ValueError("embedding_sizes is for embedded categories; onehot=True has no embeddings")
        sizes = [embedding_size(c) for c in cardinalities] if embedding_sizes is None else list(embedding_sizes)
        if onehot:  # a one-hot block of cardinality columns stands where an embedding would
            sizes = cardinalities
        if len(sizes) != len(cardinalities):
            raise ValueError(f"embedding_sizes has {len(sizes)} entries for {len(cardinalities)} cardinalities")
        if n_continuous < 0 or (n_continuous == 0 and not cardinalities):
            raise ValueError(f"need at least one input column; got n_continuous={n_continuous} and no categories")
        if not hidden:
            raise ValueError("hidden needs at least one layer width")
        self.cardinalities = cardinalities
        self.n_continuous = n_continuous
        self.onehot = bool(onehot)
        self.default_input_size = ((sum(sizes) if onehot else len(cardinalities)) + n_continuous,)
        embeddings = () if onehot else (nn.Embedding(c, s) for c, s in zip(cardinalities, sizes))
        self.embeddings = nn.ModuleList(embeddings)
        self.embedding_dropout = nn.Dropout(embedding_dropout)
        self.numeric_embedding = numeric_embedding
        continuous_width = n_continuous
        if numeric_embedding == "periodic" and n_continuous:
            self.continuous_norm = PeriodicEmbeddings(
                n_continuous, frequencies, frequency_scale, numeric_embedding_size
            )
            continuous_width = self.continuous_norm.out_features
        else:
            self.continuous_norm = nn.BatchNorm1d(n_continuous) if n_continuous else nn.Identity()
        layers, width = [], sum(sizes) + continuous_width
        for h in hidden:
            layers.append(
                nn.Sequential(nn.Linear(width, h), nn.ReLU(inplace=True), nn.BatchNorm1d(h), nn.Dropout(dropout))
            )
            width = h
        self.layers = nn.Sequential(*layers)
        self.head = ClassifierHead(width, num_classes, pool="none")

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Logits of ``(x_cat, x_cont)``, or of the one one-hot tensor when ``onehot``."""
        if self.onehot:
            if len(inputs) != 1:
                raise ValueError(f"TabularMLP(onehot=True) takes one float tensor, got {len(inputs)} inputs")
            return self._onehot_forward(inputs[0])
        if len(inputs) != 2:
            raise ValueError(f"TabularMLP takes (x_cat, x_cont), got {len(inputs)} inputs")
        x_cat, x_cont = inputs
        parts = []
        if self.embeddings:
            if x_cat.shape[1] != len(self.embeddings):
                raise ValueError(f"x_cat has {x_cat.shape[1]} columns, the model {len(self.embeddings)}")
            embedded = [emb(x_cat[:, i]) for i, emb in enumerate(self.embeddings)]
            parts.append(self.embedding_dropout(torch.cat(embedded, dim=1)))
        if self.n_continuous:
            if x_cont.shape[1] != self.n_continuous:
                raise ValueError(f"x_cont has {x_cont.shape[1]} columns, the model {self.n_continuous}")
            parts.append(self.continuous_norm(x_cont.float()))
        return self.head(self.layers(torch.cat(parts, dim=1)))

    def _onehot_forward(self, x: torch.Tensor) -> torch.Tensor:
        width = self.default_input_size[0]
        if x.ndim != 2 or x.shape[1] != width:
            raise ValueError(f"the one-hot input has shape {tuple(x.shape)}, the model takes (batch, {width})")
        split = width - self.n_continuous
        parts = [self.embedding_dropout(x[:, :split].float())] if split else []
        if self.n_continuous:
            parts.append(self.continuous_norm(x[:, split:].float()))
        return self.head(self.layers(torch.cat(parts, dim=1)))

    def layer_groups(self) -> list[nn.Module]:
        """``[input (embeddings + continuous BN), hidden layer 1, ..., head]``."""
        inputs = nn.ModuleList([self.embeddings, self.continuous_norm])
        return [inputs, *self.layers, self.head]

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the output layer with a fresh one of ``num_classes`` outputs."""
        self.head.reset(num_classes)

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def example_input(
        self, batch_size: int = 2, device: torch.device | str = "cpu"
    ) -> tuple[torch.Tensor, ...] | torch.Tensor:
        """Random ``(x_cat, x_cont)`` with valid category codes (one-hot: the one tensor they encode to)."""
        high = torch.tensor(self.cardinalities or [1], device=device)
        codes = (torch.rand(batch_size, len(self.cardinalities), device=device) * high).long()
        continuous = torch.randn(batch_size, self.n_continuous, device=device)
        if not self.onehot:
            return codes, continuous
        hot = [nn.functional.one_hot(codes[:, i], c).float() for i, c in enumerate(self.cardinalities)]
        return torch.cat([*hot, continuous], dim=1)


register_model(
    "tabular_mlp",
    family="tabular",
    description="MLP with categorical embeddings (fastai-style)",
    example_kwargs={"cardinalities": (10, 24, 3), "n_continuous": 6},
)(TabularMLP)
