"""Load weights of the same architectures from timm, torchvision and pycls.

Each (family, source) pair has a short table of key-renaming rules (regular expressions applied in
order); the renamed state dict is checked against the epochal model key by key and shape by shape
before anything is copied, and a ``ConversionReport`` lists what was loaded, missing (in the model,
not in the source), unexpected (in the source, not in the model) and mismatched (shapes differ).

Supported: RegNet (timm, torchvision, pycls), ResNet-18/34/50 (timm, torchvision) and DenseNet-121
(timm, torchvision). pycls checkpoints were trained on BGR images; their first convolution is
flipped to RGB by default. ``equivalent_model`` names the epochal model (and options) matching a
foreign model name: torchvision rounds some RegNet widths differently (``group_rounding``).

Examples:
    >>> name, kwargs = equivalent_model("torchvision", "regnet_y_800mf")
    >>> model = create(name, **kwargs)
    >>> report = load_pretrained(model, "regnet_y_800mf.pth", source="torchvision")
    >>> print(report.summary())
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from epochal.models.regnet import FLOPS_LABELS
from epochal.utils import unsafe_pickle_message, weights_only_detail

__all__ = [
    "SOURCES",
    "ConversionReport",
    "convert_state_dict",
    "equivalent_model",
    "load_pretrained",
    "read_state_dict",
]

SOURCES = ("timm", "torchvision", "pycls")
_BLOCK = r"(?P<p>stages\.\d+\.\d+)"


@dataclass(frozen=True)
class _Rule:
    """Rename keys that fully match ``pattern`` to ``template`` (``str.format`` of the groups).

    ``offsets`` add to integer groups (1-based foreign indices to 0-based); ``maps`` translate groups.
    """

    pattern: str
    template: str
    offsets: tuple[tuple[str, int], ...] = ()
    maps: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()

    def apply(self, key: str) -> str:
        match = re.fullmatch(self.pattern, key)
        if match is None:
            return key
        groups = dict(match.groupdict())
        for name, offset in self.offsets:
            groups[name] = str(int(groups[name]) + offset)
        for name, table in self.maps:
            groups[name] = dict(table)[groups[name]]
        return self.template.format(**groups)


def _rule(pattern: str, template: str, offsets: dict[str, int] | None = None,
          maps: dict[str, dict[str, str]] | None = None) -> _Rule:
    return _Rule(
        pattern, template, tuple((offsets or {}).items()),
        tuple((k, tuple(v.items())) for k, v in (maps or {}).items()),
    )


_ABC = {"l": {"a": "conv1", "b": "conv2", "c": "conv3"}}

_RULES: dict[tuple[str, str], tuple[_Rule, ...]] = {
    ("regnet", "timm"): (
        _rule(r"s(?P<s>\d+)\.b(?P<b>\d+)\.(?P<r>.+)", "stages.{s}.{b}.{r}", {"s": -1, "b": -1}),
        _rule(_BLOCK + r"\.downsample\.(?P<r>.+)", "{p}.shortcut.{r}"),
        _rule(_BLOCK + r"\.se\.fc1\.(?P<r>.+)", "{p}.se.reduce.{r}"),
        _rule(_BLOCK + r"\.se\.fc2\.(?P<r>.+)", "{p}.se.expand.{r}"),
    ),
    ("regnet", "torchvision"): (
        _rule(r"stem\.0\.(?P<r>.+)", "stem.conv.{r}"),
        _rule(r"stem\.1\.(?P<r>.+)", "stem.bn.{r}"),
        _rule(r"trunk_output\.block(?P<s>\d+)\.block\d+-(?P<b>\d+)\.(?P<r>.+)", "stages.{s}.{b}.{r}", {"s": -1}),
        _rule(_BLOCK + r"\.proj\.(?P<i>[01])\.(?P<r>.+)", "{p}.shortcut.{i}.{r}", maps={"i": {"0": "conv", "1": "bn"}}),
        _rule(_BLOCK + r"\.f\.(?P<l>[abc])\.(?P<i>[01])\.(?P<r>.+)", "{p}.{l}.{i}.{r}",
              maps={**_ABC, "i": {"0": "conv", "1": "bn"}}),
        _rule(_BLOCK + r"\.f\.se\.fc1\.(?P<r>.+)", "{p}.se.reduce.{r}"),
        _rule(_BLOCK + r"\.f\.se\.fc2\.(?P<r>.+)", "{p}.se.expand.{r}"),
        _rule(r"fc\.(?P<r>weight|bias)", "head.fc.{r}"),
    ),
    ("regnet", "pycls"): (
        _rule(r"s(?P<s>\d+)\.b(?P<b>\d+)\.(?P<r>.+)", "stages.{s}.{b}.{r}", {"s": -1, "b": -1}),
        _rule(_BLOCK + r"\.proj\.(?P<r>.+)", "{p}.shortcut.conv.{r}"),
        _rule(_BLOCK + r"\.bn\.(?P<r>.+)", "{p}.shortcut.bn.{r}"),
        _rule(_BLOCK + r"\.f\.(?P<l>[abc])\.(?P<r>.+)", "{p}.{l}.conv.{r}", maps=_ABC),
        _rule(_BLOCK + r"\.f\.(?P<l>[abc])_bn\.(?P<r>.+)", "{p}.{l}.bn.{r}", maps=_ABC),
        _rule(_BLOCK + r"\.f\.se\.f_ex\.0\.(?P<r>.+)", "{p}.se.reduce.{r}"),
        _rule(_BLOCK + r"\.f\.se\.f_ex\.2\.(?P<r>.+)", "{p}.se.expand.{r}"),
    ),
    ("resnet", "torchvision"): (
        _rule(r"conv1\.(?P<r>.+)", "stem.conv.{r}"),
        _rule(r"bn1\.(?P<r>.+)", "stem.bn.{r}"),
        _rule(r"layer(?P<s>\d+)\.(?P<b>\d+)\.(?P<r>.+)", "stages.{s}.{b}.{r}", {"s": -1}),
        _rule(_BLOCK + r"\.conv(?P<k>[123])\.(?P<r>.+)", "{p}.conv{k}.conv.{r}"),
        _rule(_BLOCK + r"\.bn(?P<k>[123])\.(?P<r>.+)", "{p}.conv{k}.bn.{r}"),
        _rule(_BLOCK + r"\.downsample\.(?P<i>[01])\.(?P<r>.+)", "{p}.shortcut.{i}.{r}",
              maps={"i": {"0": "conv", "1": "bn"}}),
        _rule(r"fc\.(?P<r>weight|bias)", "head.fc.{r}"),
    ),
    ("densenet", "torchvision"): (
        _rule(r"features\.conv0\.(?P<r>.+)", "stem.conv.{r}"),
        _rule(r"features\.norm0\.(?P<r>.+)", "stem.bn.{r}"),
        _rule(r"features\.denseblock(?P<s>\d+)\.denselayer(?P<l>\d+)\.(?P<r>.+)", "stages.{s}.block.layers.{l}.{r}",
              {"s": -1, "l": -1}),
        # Checkpoints saved before torchvision 0.3 name the layers "norm.1", "conv.2" ...
        _rule(r"(?P<p>stages\.\d+\.block\.layers\.\d+)\.(?P<n>norm|conv)\.(?P<i>[12])\.(?P<r>.+)", "{p}.{n}{i}.{r}"),
        _rule(r"features\.transition(?P<s>\d+)\.(?P<r>.+)", "stages.{s}.transition.{r}", {"s": -1}),
        _rule(r"features\.norm5\.(?P<r>.+)", "head.norm.0.{r}"),
        _rule(r"classifier\.(?P<r>weight|bias)", "head.fc.{r}"),
    ),
}
# timm names ResNet and DenseNet parameters exactly as torchvision does.
_RULES[("resnet", "timm")] = _RULES[("resnet", "torchvision")]
_RULES[("densenet", "timm")] = _RULES[("densenet", "torchvision")]

_TV_FLOPS = {"004": "400mf", "008": "800mf", "016": "1_6gf", "032": "3_2gf", "080": "8gf", "160": "16gf",
             "320": "32gf"}


def _equivalents() -> dict[str, dict[str, tuple[str, dict[str, Any]]]]:
    table: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {s: {} for s in SOURCES}
    for kind in "xy":
        for key, flops in FLOPS_LABELS.items():
            ours = f"regnet{kind}_{key}"
            table["timm"][ours] = (ours, {})
            table["pycls"][f"RegNet{kind.upper()}-{flops}"] = (ours, {})
        for key, flops in _TV_FLOPS.items():
            # torchvision rounds bottleneck widths with make_divisible (changes X-400MF, Y-800MF, Y-8GF).
            table["torchvision"][f"regnet_{kind}_{flops}"] = (f"regnet{kind}_{key}", {"group_rounding": "torchvision"})
    for ours in ("resnet18", "resnet34", "resnet50", "densenet121"):
        table["timm"][ours] = table["torchvision"][ours] = (ours, {})
    return table


def equivalent_model(source: str, name: str) -> tuple[str, dict[str, Any]]:
    """The epochal registry name and ``create`` options that match a foreign model name.

    Args:
        source: "timm", "torchvision" or "pycls".
        name: e.g. "regnety_004" (timm), "regnet_y_800mf" or "resnet50" (torchvision),
            "RegNetY-400MF" (pycls).

    Returns:
        ``(epochal_name, create_kwargs)``.
    """
    _check_source(source)
    table = _equivalents()[source]
    if name not in table:
        raise ValueError(f"no epochal equivalent of {source} model {name!r}; known: {', '.join(sorted(table))}")
    ours, kwargs = table[name]
    return ours, dict(kwargs)


@dataclass
class ConversionReport:
    """What a conversion did.

    Attributes:
        source: the source library.
        loaded: epochal keys that received a tensor.
        missing: epochal keys nothing was converted to.
        unexpected: ``(source key, renamed key)`` pairs with no place in the model.
        mismatched: ``(epochal key, source shape, model shape)`` for shape disagreements.
        skipped: epochal keys left out on purpose (``skip_classifier``).
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[tuple[str, str]] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every model key was filled from a same-shaped source tensor and nothing was left over."""
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self, limit: int = 10) -> str:
        """A readable report, listing at most ``limit`` keys per problem."""
        counts = (
            f"{self.source} -> epochal: {len(self.loaded)} tensors loaded, {len(self.missing)} missing, "
            f"{len(self.unexpected)} unexpected, {len(self.mismatched)} shape mismatches, "
            f"{len(self.skipped)} skipped"
        )
        lines = [counts]
        sections = (
            ("missing (in the model, not in the checkpoint)", self.missing),
            (
                "unexpected (checkpoint key -> renamed, no such model key)",
                [f"{a} -> {b}" for a, b in self.unexpected],
            ),
            (
                "shape mismatches (key: checkpoint vs model)",
                [f"{k}: {tuple(a)} vs {tuple(b)}" for k, a, b in self.mismatched],
            ),
        )
        for title, items in sections:
            if items:
                lines.append(f"  {title}:")
                lines += [f"    {item}" for item in items[:limit]]
                if len(items) > limit:
                    lines.append(f"    ... and {len(items) - limit} more")
        if any(k.startswith("head.fc.") for k, _, _ in self.mismatched):
            lines.append("  hint: the classifier differs in size; pass skip_classifier=True to keep the model's own")
        return "\n".join(lines)


def _check_source(source: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")


def read_state_dict(checkpoint: Any) -> dict[str, torch.Tensor]:
    """A flat state dict from a path (``.pt``/``.pth`` via ``torch.load(weights_only=True)``,
    ``.safetensors``) or a loaded object; unwraps ``model_state`` (pycls), ``state_dict`` and ``model``
    entries and strips the ``module.`` prefix of DistributedDataParallel."""
    if isinstance(checkpoint, (str, Path)):
        path = Path(checkpoint)
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            checkpoint = load_file(str(path))
        else:
            try:
                checkpoint = torch.load(path, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError as exc:
                message = unsafe_pickle_message(path, exc)
                raise ValueError(message or f"{path} could not be read: {weights_only_detail(exc)}") from None
    if not isinstance(checkpoint, dict):
        raise TypeError(f"expected a state dict or a path, got {type(checkpoint).__name__}")
    for wrapper in ("model_state", "state_dict", "model"):
        if isinstance(checkpoint.get(wrapper), dict):
            checkpoint = checkpoint[wrapper]
            break
    return {k.removeprefix("module."): v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}


def _family_of(model: nn.Module, source: str) -> str:
    family = getattr(model, "family", "")
    if (family, source) not in _RULES:
        supported = sorted({f"{f}/{s}" for f, s in _RULES})
        raise ValueError(f"no converter for family {family!r} from {source!r}; supported: {', '.join(supported)}")
    return family


def convert_state_dict(
    state_dict: Any, model: nn.Module, source: str, skip_classifier: bool = False, bgr_to_rgb: bool | None = None
) -> tuple[dict[str, torch.Tensor], ConversionReport]:
    """Rename a foreign state dict for ``model`` and check it, without touching the model.

    Args:
        state_dict: the foreign state dict, a checkpoint dict wrapping one, or a path.
        model: the epochal model (its ``family`` selects the rules).
        source: "timm", "torchvision" or "pycls".
        skip_classifier: leave ``head.fc`` out (fine-tuning with another number of classes).
        bgr_to_rgb: flip the first convolution's input channels; default True for pycls only.

    Returns:
        The tensors that fit the model (renamed), and the report.
    """
    _check_source(source)
    rules = _RULES[(_family_of(model, source), source)]
    target = model.state_dict()
    report = ConversionReport(source)
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in read_state_dict(state_dict).items():
        new_key = key
        for rule in rules:
            new_key = rule.apply(new_key)
        if skip_classifier and new_key.startswith("head.fc."):
            report.skipped.append(new_key)
        elif new_key not in target:
            report.unexpected.append((key, new_key))
        elif tuple(tensor.shape) != tuple(target[new_key].shape):
            report.mismatched.append((new_key, tuple(tensor.shape), tuple(target[new_key].shape)))
        else:
            converted[new_key] = tensor
    if bgr_to_rgb if bgr_to_rgb is not None else source == "pycls":
        first = next(k for k in target if k.endswith("weight") and target[k].ndim == 4)
        if first in converted and converted[first].shape[1] == 3:
            converted[first] = converted[first].flip(1)
    report.loaded = sorted(converted)
    problem_keys = {k for k, _, _ in report.mismatched} | set(report.skipped)
    report.missing = sorted(k for k in target if k not in converted and k not in problem_keys)
    return converted, report


def load_pretrained(
    model: nn.Module,
    state_dict: Any,
    source: str,
    strict: bool = True,
    skip_classifier: bool = False,
    bgr_to_rgb: bool | None = None,
) -> ConversionReport:
    """Convert a foreign state dict and copy it into ``model``.

    With ``strict`` (the default) any missing, unexpected or mismatched key raises a ``ValueError``
    carrying the report, and the model is left untouched. Without it, every tensor that fits is
    loaded and the report says what did not.

    Args:
        model: the epochal model.
        state_dict: the foreign state dict, a checkpoint dict wrapping one, or a path.
        source: "timm", "torchvision" or "pycls".
        strict: raise on any problem instead of loading what fits.
        skip_classifier: keep the model's own ``head.fc`` (another number of classes).
        bgr_to_rgb: flip the first convolution's input channels; default True for pycls only.

    Returns:
        The ``ConversionReport``.
    """
    converted, report = convert_state_dict(state_dict, model, source, skip_classifier, bgr_to_rgb)
    if strict and not report.ok:
        raise ValueError("weights do not fit the model:\n" + report.summary())
    model.load_state_dict(converted, strict=False)
    return report
