"""Autoencoders whose ``encode(x)`` gives embeddings.

Hinton & Salakhutdinov, "Reducing the Dimensionality of Data with Neural Networks" (Science 2006):
an encoder maps the input to a small code and a decoder reconstructs the input from it; trained on
a reconstruction loss (e.g. MSE against the input), the code is a compact embedding.

* ``ConvAutoencoder``: strided 3x3 conv-BN-ReLU layers down to a linear code, mirrored by transposed
  convolutions; for images whose side is divisible by ``2 ** len(widths)`` (32 px by default).
* ``MLPAutoencoder``: Linear-ReLU layers for flat feature vectors.
* ``ConvEncoderClassifier``: ``ConvAutoencoder``'s encoder (same layers, same parameter names)
  under a :class:`~epochal.models.layers.ClassifierHead`: trained from an autoencoder's run with
  ``model.weights: RUN``, the encoder learnt on unlabelled images feeds a classifier (with
  ``model.freeze: backbone`` and ``data.cache_features: true``, only the head trains, on cached codes).

Both return the reconstruction from ``forward`` (no output activation: pair with MSE on normalised
inputs, or with ``BCEWithLogitsLoss`` on inputs in [0, 1]).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from epochal.models._base import StagedClassifier
from epochal.models._registry import register_model
from epochal.models.layers import ClassifierHead, ConvBNAct

__all__ = ["ConvAutoencoder", "ConvEncoderClassifier", "MLPAutoencoder", "conv_encoder"]


def conv_encoder(in_chans: int, input_size: int, latent_dim: int, widths: Sequence[int]) -> nn.Sequential:
    """Strided 3x3 conv-BN-ReLU layers, flattened, then a linear code of ``latent_dim``.

    Raises:
        ValueError: no widths, or ``input_size`` not divisible by ``2 ** len(widths)``.
    """
    if not widths:
        raise ValueError("widths needs at least one entry")
    factor = 2 ** len(widths)
    if input_size % factor:
        raise ValueError(f"input_size must be divisible by {factor} for {len(widths)} layers, got {input_size}")
    side = input_size // factor
    convs, prev = [], in_chans
    for w in widths:
        convs.append(ConvBNAct(prev, w, 3, stride=2))
        prev = w
    return nn.Sequential(*convs, nn.Flatten(1), nn.Linear(widths[-1] * side * side, latent_dim))


class ConvAutoencoder(nn.Module):
    """Convolutional autoencoder.

    Args:
        in_chans: input channels.
        input_size: image side (square images); must be divisible by ``2 ** len(widths)``.
        latent_dim: size of the embedding.
        widths: channels of the strided encoder convolutions (the decoder mirrors them).

    Examples:
        >>> model = ConvAutoencoder(latent_dim=64)
        >>> codes = model.encode(torch.randn(8, 3, 32, 32))  # (8, 64)
    """

    family = "autoencoder"

    def __init__(
        self, in_chans: int = 3, input_size: int = 32, latent_dim: int = 128, widths: Sequence[int] = (32, 64, 128)
    ) -> None:
        super().__init__()
        self.encoder = conv_encoder(in_chans, input_size, latent_dim, widths)
        self.default_input_size = (in_chans, input_size, input_size)
        self.latent_dim = latent_dim
        side, widths = input_size // 2 ** len(widths), list(widths)
        self._code_shape = (widths[-1], side, side)
        flat = widths[-1] * side * side
        self.expand = nn.Linear(latent_dim, flat)
        ups = []
        for w_in, w_out in zip(widths[::-1], widths[::-1][1:]):
            ups.append(self._up(w_in, w_out))
        self.decoder = nn.Sequential(*ups)
        self.head = nn.ConvTranspose2d(widths[0], in_chans, 4, stride=2, padding=1)

    @staticmethod
    def _up(in_channels: int, out_channels: int) -> nn.Sequential:
        return nn.Sequential(
            nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings of shape (batch, latent_dim)."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstructions from embeddings."""
        x = torch.relu(self.expand(z)).view(z.shape[0], *self._code_shape)
        return self.head(self.decoder(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def layer_groups(self) -> list[nn.Module]:
        """``[encoder, decoder (with the code expansion), head (the output layer)]``."""
        return [self.encoder, nn.ModuleList([self.expand, self.decoder]), self.head]


class ConvEncoderClassifier(StagedClassifier):
    """A classifier on :class:`ConvAutoencoder`'s encoder: the code, then a classifier head.

    The encoder's layers and parameter names are the autoencoder's, so ``model.weights`` set to
    an autoencoder run (same ``latent_dim`` and ``widths``) loads the encoder it learnt on
    unlabelled images; the head (``head.fc``, optional ``hidden`` layers) starts fresh.

    Args:
        num_classes: outputs.
        in_chans: input channels.
        input_size: image side (square images); must be divisible by ``2 ** len(widths)``.
        latent_dim: size of the code the head sees.
        widths: channels of the strided encoder convolutions.
        hidden: widths of hidden Linear-ReLU layers of the head.
        dropout: dropout before ``fc``.

    Examples:
        >>> model = ConvEncoderClassifier(num_classes=10, latent_dim=64)
        >>> model(torch.randn(8, 3, 32, 32)).shape
        torch.Size([8, 10])
    """

    family = "encoder_classifier"

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        input_size: int = 32,
        latent_dim: int = 128,
        widths: Sequence[int] = (32, 64, 128),
        hidden: Sequence[int] = (),
        dropout: float = 0.0,
    ) -> None:
        super().__init__((in_chans, input_size, input_size))
        self.encoder = conv_encoder(in_chans, input_size, latent_dim, widths)
        self.head = ClassifierHead(latent_dim, num_classes, pool="none", hidden=hidden, dropout=dropout)
        self.latent_dim = latent_dim

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The codes, ``(batch, latent_dim)``: what the head (and a feature cache) sees."""
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))

    def layer_groups(self) -> list[nn.Module]:
        """``[the encoder's convolutions, its code layer, head]``."""
        *convs, flatten, code = self.encoder
        return [nn.ModuleList(convs), nn.ModuleList([flatten, code]), self.head]


class MLPAutoencoder(nn.Module):
    """Fully connected autoencoder for feature vectors.

    Args:
        n_features: input features.
        latent_dim: size of the embedding.
        hidden: widths of the encoder's hidden layers (the decoder mirrors them).

    Examples:
        >>> model = MLPAutoencoder(n_features=64, latent_dim=8)
        >>> codes = model.encode(torch.randn(32, 64))  # (32, 8)
    """

    family = "autoencoder"

    def __init__(self, n_features: int, latent_dim: int = 16, hidden: Sequence[int] = (128, 64)) -> None:
        super().__init__()
        if n_features < 1 or latent_dim < 1:
            raise ValueError(f"n_features and latent_dim must be >= 1, got {n_features} and {latent_dim}")
        self.default_input_size = (n_features,)
        self.latent_dim = latent_dim
        self.encoder = self._mlp([n_features, *hidden], latent_dim)
        self.decoder = self._mlp([latent_dim, *hidden[::-1]], None)
        self.head = nn.Linear(hidden[0] if hidden else latent_dim, n_features)

    @staticmethod
    def _mlp(widths: list[int], out: int | None) -> nn.Sequential:
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
        if out is not None:
            layers.append(nn.Linear(widths[-1], out))
        return nn.Sequential(*layers)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings of shape (batch, latent_dim)."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstructions from embeddings."""
        return self.head(self.decoder(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def layer_groups(self) -> list[nn.Module]:
        """``[encoder, decoder, head (the output layer)]``."""
        return [self.encoder, self.decoder, self.head]


register_model("conv_autoencoder", family="autoencoder", description="Convolutional autoencoder (32 px)")(
    ConvAutoencoder
)
register_model(
    "mlp_autoencoder",
    family="autoencoder",
    description="MLP autoencoder for feature vectors",
    example_kwargs={"n_features": 64},
)(MLPAutoencoder)
register_model(
    "conv_encoder_classifier",
    family="encoder_classifier",
    description="Classifier on conv_autoencoder's encoder (load it with model.weights: RUN)",
)(ConvEncoderClassifier)
