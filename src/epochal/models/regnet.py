"""RegNet as a design space: Radosavovic et al., "Designing Network Design Spaces" (CVPR 2020).

A RegNet is not a table of widths but six numbers: depth ``d``, initial width ``w0``, slope ``wa``,
multiplier ``wm``, group width ``g`` and bottleneck ratio ``b`` (plus the squeeze-excitation ratio
for RegNetY). The *quantised linear* rule turns them into per-block widths:

    u_j = w0 + wa * j                         (a linear ramp over blocks j = 0 .. d-1)
    s_j = round(log(u_j / w0) / log(wm))      (its position on a log scale with step wm)
    w_j = round(w0 * wm ** s_j / 8) * 8       (quantised to a multiple of 8)

Blocks of equal width form a stage. Finally each stage's bottleneck width ``w * b`` is rounded to a
multiple of the group width (and ``g`` capped at that bottleneck width), so grouped convolutions
divide evenly. The 24 presets of the paper (RegNetX/Y, 200MF to 32GF) are rows of ``PRESETS``; any
other member of the space is ``RegNet(RegNetParams(depth=..., w0=..., wa=..., wm=..., group_width=...))``.

The block follows pycls (and timm/torchvision): 1x1 conv, 3x3 grouped conv carrying the stride,
optional SE (width ``round(se_ratio * block input width)``), 1x1 conv, projection shortcut when
shape changes, ReLU after the sum.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, fields, replace
from functools import partial
from typing import Any, get_type_hints

import torch
from torch import nn

from epochal.models._base import StagedClassifier
from epochal.models._registry import check_arguments, register_model
from epochal.models.layers import (
    ClassifierHead,
    ConvBNAct,
    DropPath,
    SqueezeExcite,
    drop_path_rates,
    make_divisible,
)

__all__ = [
    "FLOPS_LABELS",
    "PRESETS",
    "RegNet",
    "RegNetBlock",
    "RegNetParams",
    "StageSpec",
    "init_regnet_weights",
    "quantized_linear_widths",
]

GROUP_ROUNDINGS = ("pycls", "torchvision")
STEMS = ("imagenet", "cifar")


def quantized_linear_widths(depth: int, w0: int, wa: float, wm: float, quantum: int = 8) -> list[int]:
    """Per-block widths of the quantised linear rule (see the module docstring)."""
    widths = []
    for j in range(depth):
        u = w0 + wa * j
        s = round(math.log(u / w0) / math.log(wm))
        widths.append(int(round(w0 * math.pow(wm, s) / quantum) * quantum))
    return widths


@dataclass(frozen=True)
class StageSpec:
    """One stage of a RegNet: output width, number of blocks, group width, bottleneck width."""

    width: int
    depth: int
    group_width: int
    bottleneck_width: int


@dataclass(frozen=True)
class RegNetParams:
    """A point of the RegNet design space.

    Args:
        depth: number of blocks ``d``.
        w0: initial width (a multiple of ``quantum``).
        wa: width slope (>= 0).
        wm: width multiplier (> 1).
        group_width: channels per group ``g`` of the 3x3 convolution.
        bottleneck_ratio: ``b``; bottleneck width = stage width * b (1.0 in the paper's models).
        se_ratio: squeeze-excitation width relative to the block input (0.25 for RegNetY, 0 for X).
        stem_width: output channels of the stem.
        quantum: widths are multiples of this (8 in the paper).
        group_rounding: how bottleneck widths are rounded to the group width: "pycls" (nearest
            multiple; pycls and timm) or "torchvision" (``make_divisible``, never shrinking more
            than 10 %; matters for torchvision's RegNetX-400MF, RegNetY-800MF and RegNetY-8GF).
    """

    depth: int
    w0: int
    wa: float
    wm: float
    group_width: int
    bottleneck_ratio: float = 1.0
    se_ratio: float = 0.0
    stem_width: int = 32
    quantum: int = 8
    group_rounding: str = "pycls"

    def __post_init__(self) -> None:
        checks = [
            (self.depth >= 1, f"depth must be >= 1, got {self.depth}"),
            (self.quantum >= 1, f"quantum must be >= 1, got {self.quantum}"),
            (self.w0 > 0 and self.w0 % self.quantum == 0,
             f"w0 must be a positive multiple of quantum={self.quantum}, got {self.w0}"),
            (self.wa >= 0, f"wa must be >= 0, got {self.wa}"),
            (self.wm > 1, f"wm must be > 1, got {self.wm}"),
            (self.group_width >= 1, f"group_width must be >= 1, got {self.group_width}"),
            (self.bottleneck_ratio > 0, f"bottleneck_ratio must be > 0, got {self.bottleneck_ratio}"),
            (0 <= self.se_ratio < 1, f"se_ratio must be in [0, 1), got {self.se_ratio}"),
            (self.stem_width >= 1, f"stem_width must be >= 1, got {self.stem_width}"),
            (self.group_rounding in GROUP_ROUNDINGS,
             f"group_rounding must be one of {GROUP_ROUNDINGS}, got {self.group_rounding!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def block_widths(self) -> list[int]:
        """Widths of the ``depth`` blocks before group-width compatibility."""
        return quantized_linear_widths(self.depth, self.w0, self.wa, self.wm, self.quantum)

    def stages(self) -> list[StageSpec]:
        """Stages (width, depth, group width, bottleneck width) after group-width compatibility."""
        widths = self.block_widths()
        stage_widths = sorted(set(widths))
        specs = []
        for w in stage_widths:
            w_bot = int(w * self.bottleneck_ratio)
            g = min(self.group_width, w_bot)
            if self.group_rounding == "pycls":
                w_bot = int(round(w_bot / g) * g)
            else:
                w_bot = make_divisible(w_bot, g)
            width = int(w_bot / self.bottleneck_ratio)
            specs.append(StageSpec(width, widths.count(w), g, round(width * self.bottleneck_ratio)))
        return specs


class RegNetBlock(nn.Module):
    """X/Y block: 1x1 -> 3x3 grouped (stride) -> [SE] -> 1x1, plus shortcut, then ReLU.

    Args:
        in_width: input channels.
        spec: the stage this block belongs to.
        stride: stride of the 3x3 convolution (and of the projection shortcut).
        se_ratio: SE width relative to ``in_width``; 0 for none.
        drop_path: stochastic-depth rate of the residual branch.
    """

    def __init__(self, in_width: int, spec: StageSpec, stride: int, se_ratio: float, drop_path: float) -> None:
        super().__init__()
        w_b = spec.bottleneck_width
        self.conv1 = ConvBNAct(in_width, w_b, 1)
        self.conv2 = ConvBNAct(w_b, w_b, 3, stride=stride, groups=w_b // spec.group_width)
        self.se = SqueezeExcite(w_b, round(se_ratio * in_width)) if se_ratio else nn.Identity()
        self.conv3 = ConvBNAct(w_b, spec.width, 1, act=None)
        needs_projection = in_width != spec.width or stride != 1
        self.shortcut = ConvBNAct(in_width, spec.width, 1, stride, act=None) if needs_projection else nn.Identity()
        self.drop_path = DropPath(drop_path)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(self.se(self.conv2(self.conv1(x))))
        return self.act(self.drop_path(out) + self.shortcut(x))


def init_regnet_weights(model: nn.Module, zero_init_last: bool = True) -> None:
    """He-normal (fan-out per group) convolutions, N(0, 0.01) linear layers, unit BatchNorm.

    ``zero_init_last`` zeroes the last BatchNorm gamma of every residual branch so each block
    starts as the identity (Goyal et al., "Accurate, Large Minibatch SGD", 2017).
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
            nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.01)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    if zero_init_last:
        for module in model.modules():
            last = getattr(module, "conv3", None)
            if isinstance(last, ConvBNAct):
                nn.init.zeros_(last.bn.weight)


class RegNet(StagedClassifier):
    """A RegNet built from a point of the design space.

    Args:
        params: the design-space point (``RegNetParams``).
        num_classes: classifier outputs (0: feature extractor).
        in_chans: input channels.
        stem: "imagenet" (3x3 stride-2 conv, for 224 px) or "cifar" (3x3 stride-1 conv, for 32 px).
        zero_init_last: zero the last BN gamma of each block.
        drop_path_rate: stochastic depth, rising linearly to this rate at the last block.
        dropout: dropout before the classifier.
        pool: global pooling of the head ("avg", "max" or "concat").

    Examples:
        >>> params = RegNetParams(depth=13, w0=24, wa=36.44, wm=2.49, group_width=8, se_ratio=0.25)
        >>> model = RegNet(params, num_classes=10, stem="cifar")
    """

    family = "regnet"

    def __init__(
        self,
        params: RegNetParams,
        num_classes: int = 1000,
        in_chans: int = 3,
        stem: str = "imagenet",
        zero_init_last: bool = True,
        drop_path_rate: float = 0.0,
        dropout: float = 0.0,
        pool: str = "avg",
    ) -> None:
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
        super().__init__((in_chans, 224, 224) if stem == "imagenet" else (in_chans, 32, 32))
        self.params = params
        specs = params.stages()
        self.stem = ConvBNAct(in_chans, params.stem_width, 3, stride=2 if stem == "imagenet" else 1)
        rates = drop_path_rates(drop_path_rate, [s.depth for s in specs])
        stages, width = [], params.stem_width
        for spec, stage_rates in zip(specs, rates):
            blocks = []
            for i in range(spec.depth):
                blocks.append(RegNetBlock(width, spec, 2 if i == 0 else 1, params.se_ratio, stage_rates[i]))
                width = spec.width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = ClassifierHead(width, num_classes, pool=pool, dropout=dropout)
        init_regnet_weights(self, zero_init_last)

    @property
    def stage_specs(self) -> list[StageSpec]:
        """The stages this model was built with."""
        return self.params.stages()


# The paper's models (Radosavovic et al. 2020, appendix; pycls model zoo). Keys follow timm's names:
# the digits are the FLOPs in units of 100 M.
_X = {
    "002": (13, 24, 36.44, 2.49, 8), "004": (22, 24, 24.48, 2.54, 16), "006": (16, 48, 36.97, 2.24, 24),
    "008": (16, 56, 35.73, 2.28, 16), "016": (18, 80, 34.01, 2.25, 24), "032": (25, 88, 26.31, 2.25, 48),
    "040": (23, 96, 38.65, 2.43, 40), "064": (17, 184, 60.83, 2.07, 56), "080": (23, 80, 49.56, 2.88, 120),
    "120": (19, 168, 73.36, 2.37, 112), "160": (22, 216, 55.59, 2.10, 128), "320": (23, 320, 69.86, 2.00, 168),
}
_Y = {
    "002": (13, 24, 36.44, 2.49, 8), "004": (16, 48, 27.89, 2.09, 8), "006": (15, 48, 32.54, 2.32, 16),
    "008": (14, 56, 38.84, 2.40, 16), "016": (27, 48, 20.71, 2.65, 24), "032": (21, 80, 42.63, 2.66, 24),
    "040": (22, 96, 31.41, 2.24, 64), "064": (25, 112, 33.22, 2.27, 72), "080": (17, 192, 76.82, 2.19, 56),
    "120": (19, 168, 73.36, 2.37, 112), "160": (18, 200, 106.23, 2.48, 112), "320": (20, 232, 115.89, 2.53, 232),
}

#: The 24 presets: ``regnetx_002`` ... ``regnetx_320`` and ``regnety_002`` ... ``regnety_320``.
PRESETS: dict[str, RegNetParams] = {
    **{f"regnetx_{k}": RegNetParams(d, w0, wa, wm, g) for k, (d, w0, wa, wm, g) in _X.items()},
    **{f"regnety_{k}": RegNetParams(d, w0, wa, wm, g, se_ratio=0.25) for k, (d, w0, wa, wm, g) in _Y.items()},
}

_PARAM_FIELDS = tuple(f.name for f in fields(RegNetParams))
_MODEL_OPTIONS = ("num_classes", "in_chans", "stem", "zero_init_last", "drop_path_rate", "dropout", "pool")


#: The paper's FLOP labels of the preset suffixes.
FLOPS_LABELS = {"002": "200MF", "004": "400MF", "006": "600MF", "008": "800MF", "016": "1.6GF", "032": "3.2GF",
                "040": "4.0GF", "064": "6.4GF", "080": "8.0GF", "120": "12GF", "160": "16GF", "320": "32GF"}


def create_regnet(preset: str, **kwargs: Any) -> RegNet:
    """Build a preset, with design-space fields (``wa``, ``depth`` ...) and model options overridable."""
    check_arguments("RegNet", kwargs, _PARAM_FIELDS + _MODEL_OPTIONS)
    params = replace(PRESETS[preset], **{k: v for k, v in kwargs.items() if k in _PARAM_FIELDS})
    return RegNet(params, **{k: v for k, v in kwargs.items() if k in _MODEL_OPTIONS})


def _preset_signature(preset: str) -> inspect.Signature:
    """The keywords ``preset`` takes, typed, with its own values as defaults: design-space fields, model options.

    ``create_regnet`` takes ``**kwargs``; giving each preset this signature lets tools that read
    signatures (the recipe checks, ``epochal models``) see every argument and its type.
    """
    field_types = get_type_hints(RegNetParams)
    options = inspect.signature(RegNet.__init__).parameters
    option_types = get_type_hints(RegNet.__init__)
    keyword = inspect.Parameter.KEYWORD_ONLY
    values = PRESETS[preset]
    params = [
        inspect.Parameter(f.name, keyword, default=getattr(values, f.name), annotation=field_types[f.name])
        for f in fields(RegNetParams)
    ]
    params += [
        inspect.Parameter(name, keyword, default=options[name].default, annotation=option_types.get(name, Any))
        for name in _MODEL_OPTIONS
    ]
    return inspect.Signature(params)


for _name in PRESETS:
    _kind, _key = _name[len("regnet")], _name.split("_")[1]
    _factory = partial(create_regnet, _name)
    _factory.__signature__ = _preset_signature(_name)
    register_model(_name, family="regnet", description=f"RegNet{_kind.upper()}-{FLOPS_LABELS[_key]}")(_factory)
