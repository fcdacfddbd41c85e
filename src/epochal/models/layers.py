"""Building blocks shared by the model families.

* ``ConvBNAct``: convolution, BatchNorm and an optional activation, the unit nearly every family uses.
* ``SqueezeExcite``: channel attention of Hu et al., "Squeeze-and-Excitation Networks" (CVPR 2018).
* ``DropPath``: stochastic depth of Huang et al., "Deep Networks with Stochastic Depth" (ECCV 2016).
* ``ClassifierHead``: global pooling (average, max or the concatenation of both, as fastai's
  ``AdaptiveConcatPool2d``), optional hidden layers, dropout, the final ``fc`` and an output scale.
* ``make_divisible`` and ``PaddedInputConv2d`` for hardware-friendly shapes: tensor cores want
  channel counts that are multiples of 8, and channels-last convolutions run faster with 4 input
  channels than with 3.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ClassifierHead",
    "ConcatPool2d",
    "ConvBNAct",
    "DropPath",
    "PaddedInputConv2d",
    "SqueezeExcite",
    "drop_path_rates",
    "make_divisible",
    "pad_input_channels",
    "relu",
]

POOL_TYPES = ("avg", "max", "concat", "none")


def relu() -> nn.Module:
    """In-place ReLU, the default activation (as in torchvision and timm: saves one buffer per layer)."""
    return nn.ReLU(inplace=True)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never going below ``round_limit * value``.

    This is the rounding rule of the MobileNet family: it keeps channel counts friendly to tensor
    cores (multiples of 8) without shrinking a layer by more than 10 %.

    Args:
        value: the width to round.
        divisor: the multiple to round to.
        min_value: the smallest result allowed (defaults to ``divisor``).
        round_limit: a result below ``round_limit * value`` is bumped up by one ``divisor``.

    Returns:
        The rounded width.
    """
    if divisor < 1:
        raise ValueError(f"divisor must be >= 1, got {divisor}")
    min_value = divisor if min_value is None else min_value
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < round_limit * value:
        new_value += divisor
    return new_value


def drop_path_rates(rate: float, depths: Sequence[int]) -> list[list[float]]:
    """Stochastic-depth rates rising linearly from 0 to ``rate`` over all blocks, split per stage."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1), got {rate}")
    total = sum(depths)
    flat = [rate * i / max(total - 1, 1) for i in range(total)]
    out, start = [], 0
    for depth in depths:
        out.append(flat[start : start + depth])
        start += depth
    return out


class ConvBNAct(nn.Sequential):
    """``conv`` -> ``bn`` -> ``act`` with "same" padding; ``act=None`` leaves the activation out.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: an int or (height, width); odd sizes keep the spatial size at stride 1.
        stride: convolution stride.
        groups: convolution groups.
        act: activation module factory, or None for none.
        bias: whether the convolution has a bias (off by default because BatchNorm follows).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int = 1,
        groups: int = 1,
        act: Callable[[], nn.Module] | None = relu,
        bias: bool = False,
    ) -> None:
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        padding = (ks[0] // 2, ks[1] // 2)
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, ks, stride, padding, groups=groups, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels)
        if act is not None:
            self.act = act()


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: ``x * sigmoid(expand(act(reduce(mean(x)))))``.

    Args:
        channels: channels of the input (and output).
        reduced: width of the bottleneck, e.g. ``round(0.25 * block_input_width)`` in RegNetY.
        act: activation between the two 1x1 convolutions.
    """

    def __init__(self, channels: int, reduced: int, act: Callable[[], nn.Module] = relu) -> None:
        super().__init__()
        if reduced < 1:
            raise ValueError(f"reduced must be >= 1, got {reduced}")
        self.reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act = act()
        self.expand = nn.Conv2d(reduced, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        scale = self.expand(self.act(self.reduce(scale)))
        return x * scale.sigmoid()


class DropPath(nn.Module):
    """Drop whole residual branches per sample during training (stochastic depth).

    Kept samples are scaled by ``1 / (1 - rate)`` so the expected output is unchanged; at eval
    time the module is the identity.
    """

    def __init__(self, rate: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"drop path rate must be in [0, 1), got {rate}")
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rate == 0.0 or not self.training:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


class ConcatPool2d(nn.Module):
    """Global average and max pooling side by side: ``2 * C`` features (fastai's concat pooling)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.adaptive_avg_pool2d(x, 1), F.adaptive_max_pool2d(x, 1)], dim=1)


def _pool(pool: str) -> nn.Module:
    if pool == "avg":
        return nn.AdaptiveAvgPool2d(1)
    if pool == "max":
        return nn.AdaptiveMaxPool2d(1)
    if pool == "concat":
        return ConcatPool2d()
    if pool == "none":
        return nn.Identity()
    raise ValueError(f"pool must be one of {POOL_TYPES}, got {pool!r}")


class ClassifierHead(nn.Module):
    """Pool, flatten, optional hidden layers, dropout, ``fc``, scale.

    The final linear layer is always the attribute ``fc``, so output-bias initialisation, weight
    converters and ``reset`` find it without knowing the family.

    Args:
        in_features: channels (or features) entering the head.
        num_classes: outputs of ``fc``; 0 replaces ``fc`` by the identity (a feature extractor).
        pool: "avg", "max", "concat" (avg and max side by side) or "none" (input already flat).
        dropout: dropout probability before ``fc``.
        hidden: widths of hidden Linear-ReLU layers between pooling and ``fc`` (VGG-style heads).
        hidden_dropout: dropout before each hidden layer.
        norm: a module applied before pooling (e.g. the final BN-ReLU of a pre-activation net).
        bias: whether ``fc`` has a bias.
        scale: a constant the logits are multiplied by (airbench uses 1/9).

    Examples:
        >>> head = ClassifierHead(512, num_classes=10, pool="concat", dropout=0.25)  # fc sees 1024 features
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        pool: str = "avg",
        dropout: float = 0.0,
        hidden: Sequence[int] = (),
        hidden_dropout: float = 0.0,
        norm: nn.Module | None = None,
        bias: bool = True,
        scale: float = 1.0,
    ) -> None:
        super().__init__()
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        for name, p in (("dropout", dropout), ("hidden_dropout", hidden_dropout)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {p}")
        self.norm = norm if norm is not None else nn.Identity()
        self.pool = _pool(pool)
        self.flatten = nn.Flatten(1)
        width = in_features * (2 if pool == "concat" else 1)
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Dropout(hidden_dropout), nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        self.hidden = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.num_features = width
        self.bias = bias
        self.scale = scale
        self.fc: nn.Module = nn.Linear(width, num_classes, bias=bias) if num_classes else nn.Identity()

    @property
    def num_classes(self) -> int:
        return self.fc.out_features if isinstance(self.fc, nn.Linear) else 0

    def reset(self, num_classes: int) -> None:
        """Replace ``fc`` by a freshly initialised one with ``num_classes`` outputs (0: identity)."""
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        old = self.fc
        ref = old.weight if isinstance(old, nn.Linear) else next(self.parameters(), None)
        kwargs = {} if ref is None else {"device": ref.device, "dtype": ref.dtype}
        if num_classes:
            self.fc = nn.Linear(self.num_features, num_classes, bias=self.bias, **kwargs)
            nn.init.normal_(self.fc.weight, std=0.01)
            if self.fc.bias is not None:
                nn.init.zeros_(self.fc.bias)
        else:
            self.fc = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(self.pool(self.norm(x)))
        x = self.fc(self.dropout(self.hidden(x)))
        return x * self.scale if self.scale != 1.0 else x


class PaddedInputConv2d(nn.Conv2d):
    """A Conv2d that accepts inputs with fewer channels than ``in_channels`` by zero-padding them.

    Used by ``pad_input_channels``: a 3-channel image fed to a 4-channel first convolution gives the
    same result as the original 3-channel one, while the convolution itself gets a shape that
    channels-last kernels handle faster.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        missing = self.in_channels - x.shape[1]
        if missing < 0:
            raise ValueError(f"input has {x.shape[1]} channels, more than this layer's {self.in_channels}")
        if missing:
            x = F.pad(x, (0, 0, 0, 0, 0, missing))
        return super().forward(x)


def _first_conv(model: nn.Module) -> tuple[nn.Module, str, nn.Conv2d]:
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            return parent, attr, module
    raise ValueError(f"{type(model).__name__} has no Conv2d to pad")


def pad_input_channels(model: nn.Module, multiple: int = 4) -> nn.Module:
    """Widen the model's first convolution to a multiple of ``multiple`` input channels, in place.

    The new input channels get zero weights and the inputs are zero-padded on the fly, so the
    outputs are unchanged; only the kernel shape becomes hardware-friendly. Parameter names stay the
    same, so checkpoints of the padded model load into another padded model.

    Args:
        model: the model; its first ``nn.Conv2d`` (in module order) must be the input convolution.
        multiple: the channel multiple (4 suits channels-last convolutions on NVIDIA GPUs).

    Returns:
        The same model, for chaining.
    """
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    parent, attr, conv = _first_conv(model)
    target = -(-conv.in_channels // multiple) * multiple
    if target == conv.in_channels and isinstance(conv, PaddedInputConv2d):
        return model
    if conv.groups != 1:
        raise ValueError("the first convolution is grouped; input padding supports groups=1 only")
    new = PaddedInputConv2d(
        target, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
        bias=conv.bias is not None, padding_mode=conv.padding_mode,
        device=conv.weight.device, dtype=conv.weight.dtype,
    )
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : conv.in_channels] = conv.weight
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    new.weight.requires_grad_(conv.weight.requires_grad)
    setattr(parent, attr, new)
    return model
