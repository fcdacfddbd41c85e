"""Parameter groups: layer groups, the no-decay split and discriminative learning rates.

A model is cut into *layer groups* (input to output) so that early, general layers can train with
smaller learning rates than the task-specific head, the "discriminative fine-tuning" of Howard &
Ruder, *Universal Language Model Fine-tuning for Text Classification* (ULMFiT, 2018). Inside every
layer group, normalisation weights, biases and other one-dimensional parameters are put in a group
of their own with ``wd_scale=0``: decaying them towards zero only fights the normalisation (see
Loshchilov & Hutter, *Decoupled Weight Decay Regularization*, 2019, and the no-bias-decay trick of
Goyal et al., *Accurate, Large Minibatch SGD*, 2017).

Every group dict carries, besides the torch keys ``params``, ``lr``, ``weight_decay`` and
``param_names`` (the parameters' names in ``model.named_parameters()``): ``lr_scale`` (its learning
rate relative to the top group), ``wd_scale`` (1 or 0), ``name``, ``layer_group`` (the index of its
layer group) and ``norm_or_bias``. Torch optimizers keep such extra keys untouched, so a
:class:`~epochal.schedules.PhaseSchedule` can read them at every step.

:class:`GroupRule` moves parameters chosen by name into groups of their own with other settings,
as MMEngine's ``paramwise_cfg`` and Detectron2's ``overrides`` do: airbench gives BatchNorm biases
and the classifier much larger rates than the filters, trains the whitening bias only for the
first epochs, and gives the filters to Muon and the rest to SGD.
"""

from __future__ import annotations

import fnmatch
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from epochal.utils import positive_number

__all__ = [
    "NORM_TYPES",
    "GroupRule",
    "LrSpec",
    "get_layer_groups",
    "is_norm_or_bias",
    "lr_scales",
    "lr_top",
    "param_groups",
    "split_by_rules",
    "unwrap_model",
]

#: Module types whose parameters count as normalisation parameters (never decayed by default, and
#: kept trainable by ``freeze(train_bn=True)``).
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)

#: A learning rate for every layer group: one value, ``slice(lo, hi)`` or one value per group.
LrSpec = float | slice | Sequence[float]


def unwrap_model(model: nn.Module) -> nn.Module:
    """Return the user's module inside ``torch.compile`` and (Distributed)DataParallel wrappers."""
    while True:
        if hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        elif isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def get_layer_groups(model: nn.Module, layer_groups: Sequence[nn.Module] | None = None) -> list[nn.Module]:
    """The model's layer groups, in input-to-output order.

    Args:
        model: the model. When it has a ``layer_groups()`` method (epochal's models do), that
            method decides.
        layer_groups: explicit groups, overriding the model's own.

    Returns:
        A non-empty list of modules. Without ``layer_groups()``, the fallback is two groups, a body
        (every top-level child but the last one that has parameters) and a head (that last child),
        or the whole model as one group when it has fewer than two children with parameters.

    Raises:
        TypeError: when a group is not an ``nn.Module``.
        ValueError: when the groups are empty.
    """
    model = unwrap_model(model)
    if layer_groups is None and callable(getattr(model, "layer_groups", None)):
        layer_groups = model.layer_groups()
    if layer_groups is None:
        with_params = [c for c in model.children() if any(True for _ in c.parameters())]
        if len(with_params) < 2:
            return [model]
        head = with_params[-1]
        body = nn.ModuleList([c for c in model.children() if c is not head])
        return [body, head]
    groups = list(layer_groups)
    if not groups:
        raise ValueError("layer_groups is empty; expected at least one nn.Module")
    for i, group in enumerate(groups):
        if not isinstance(group, nn.Module):
            raise TypeError(f"layer_groups[{i}] is {type(group).__name__}; expected an nn.Module")
    return groups


def is_norm_or_bias(module: nn.Module, name: str, param: torch.Tensor) -> bool:
    """Whether ``param`` (called ``name`` directly inside ``module``) is a norm weight, a bias or 1-D."""
    return isinstance(module, NORM_TYPES) or name == "bias" or param.ndim <= 1


def lr_scales(lr: LrSpec, n_groups: int) -> tuple[float, ...]:
    """Per-group learning rates relative to the top (last) group, for discriminative fine-tuning.

    ``slice(lo, hi)`` spreads the rates geometrically from ``lo`` (first group) to ``hi`` (last);
    ``slice(hi)`` gives every group but the last ``hi / 10``; a sequence gives one rate per group; a
    single value gives every group the same rate.

    Args:
        lr: the learning-rate specification.
        n_groups: the number of layer groups.

    Returns:
        ``n_groups`` floats, the last one 1.0.

    Raises:
        ValueError: for a non-positive top rate, a sequence of the wrong length or bad bounds.

    Examples:
        >>> lr_scales(slice(1e-4, 1e-2), 3)
        (0.01, 0.1, 1.0)
    """
    if n_groups < 1:
        raise ValueError(f"n_groups must be >= 1, got {n_groups}")
    if isinstance(lr, slice):
        if lr.step is not None:
            raise ValueError(f"lr slice takes no step, got {lr!r}; use slice(lo, hi)")
        hi = positive_number(lr.stop, "lr slice stop (the top group's rate)")
        if lr.start is None:
            return tuple([0.1] * (n_groups - 1) + [1.0])
        lo = positive_number(lr.start, "lr slice start (the first group's rate)")
        if n_groups == 1:
            return (1.0,)
        ratio = lo / hi
        return tuple(ratio ** ((n_groups - 1 - i) / (n_groups - 1)) for i in range(n_groups))
    if isinstance(lr, numbers.Real):
        return tuple([1.0] * n_groups)
    values = [float(v) for v in lr]
    if len(values) != n_groups:
        raise ValueError(
            f"lr gives {len(values)} per-group values but the model has {n_groups} layer groups; "
            "give one value per group or a slice(lo, hi)"
        )
    top = positive_number(values[-1], "the last group's lr")
    for i, v in enumerate(values):
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"lr[{i}] must be a finite value >= 0, got {v}")
    return tuple(v / top for v in values)


def lr_top(lr: LrSpec) -> float:
    """The top (last) group's learning rate of a specification: the value a schedule anneals."""
    if isinstance(lr, slice):
        return positive_number(lr.stop, "lr slice stop")
    if isinstance(lr, numbers.Real):
        return float(lr)
    values = list(lr)
    if not values:
        raise ValueError("lr is an empty sequence; give one value per layer group")
    return float(values[-1])


def param_groups(
    model: nn.Module,
    weight_decay: float = 0.0,
    lr: LrSpec = 1e-3,
    decay_norm_and_bias: bool = False,
    layer_groups: Sequence[nn.Module] | None = None,
    rules: Sequence[GroupRule] = (),
) -> list[dict]:
    """Split a model's parameters into optimizer groups by layer group and by decay.

    Args:
        model: the model.
        weight_decay: the base weight decay; a group's ``weight_decay`` is this times ``wd_scale``.
        lr: one rate, ``slice(lo, hi)`` or one rate per layer group (see :func:`lr_scales`).
        decay_norm_and_bias: decay norm weights, biases and 1-D parameters too (``wd_scale=1``).
        layer_groups: explicit layer groups instead of :func:`get_layer_groups`'s.
        rules: :class:`GroupRule` s applied afterwards (see :func:`split_by_rules`).

    Returns:
        Non-empty groups, in layer-group order, decayed group before no-decay group. Every
        parameter appears once (shared parameters go to their first group); parameters outside
        all layer groups join the last one. Frozen parameters are included, so unfreezing later
        needs no new optimizer.

    Examples:
        >>> groups = param_groups(model, weight_decay=0.05, lr=slice(1e-5, 1e-3))
        >>> optimizer = torch.optim.AdamW(groups)
    """
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be a finite value >= 0, got {weight_decay}")
    model = unwrap_model(model)
    names = {id(p): n for n, p in model.named_parameters(remove_duplicate=False)}
    groups = get_layer_groups(model, layer_groups)
    scales = lr_scales(lr, len(groups))
    top = lr_top(lr)
    seen: set[int] = set()
    split: list[tuple[list[torch.Tensor], list[torch.Tensor]]] = []
    for group in groups:
        split.append(_split_module(group, seen))
    leftovers = _split_module(model, seen)
    split[-1][0].extend(leftovers[0])
    split[-1][1].extend(leftovers[1])
    result = []
    for i, (decay, no_decay) in enumerate(split):
        for params, is_nb in ((decay, False), (no_decay, True)):
            if not params:
                continue
            wd_scale = 1.0 if (decay_norm_and_bias or not is_nb) else 0.0
            result.append(
                {
                    "params": params,
                    "param_names": [names.get(id(p), f"<unnamed {tuple(p.shape)}>") for p in params],
                    "lr": top * scales[i],
                    "weight_decay": weight_decay * wd_scale,
                    "lr_scale": scales[i],
                    "wd_scale": wd_scale,
                    "name": f"group{i}" + (".no_decay" if is_nb else ""),
                    "layer_group": i,
                    "norm_or_bias": is_nb,
                }
            )
    if not result:
        raise ValueError(f"model {type(model).__name__} has no parameters")
    return split_by_rules(result, rules) if rules else result


def _split_module(module: nn.Module, seen: set[int]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    decay: list[torch.Tensor] = []
    no_decay: list[torch.Tensor] = []
    for sub in module.modules():
        for name, param in sub.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            (no_decay if is_norm_or_bias(sub, name, param) else decay).append(param)
    return decay, no_decay


@dataclass(frozen=True)
class GroupRule:
    """Settings for the parameters whose names match ``params``; the first matching rule wins.

    Args:
        params: a glob (``fnmatch``) or globs over the names of ``model.named_parameters()``,
            e.g. ``"head.*"`` or ``"*norm*.bias"``.
        lr_scale: the group's learning rate relative to the schedule's (top) rate, times the
            layer group's discriminative scale.
        wd_scale: the group's weight decay relative to the base decay (0 switches it off).
        momentum: the group's own momentum (a phase that sets momentum overrides it).
        muon: for :class:`~epochal.optim.Muon`: True takes the Muon step, False the SGD step.
        train_epochs: train the group only for the first ``train_epochs`` epochs, with the whole
            learning-rate schedule compressed into them (rate 0 afterwards): airbench trains its
            whitening bias for 3 of 8 epochs, its rate falling linearly to 0 at epoch 3.
        name: suffix of the groups' names (default ``rule<k>``).

    Examples:
        >>> rules = [GroupRule("head.*", lr_scale=10.0, muon=False), GroupRule("*norm*.bias", wd_scale=0.0)]
        >>> groups = param_groups(model, weight_decay=5e-4, lr=0.1, rules=rules)
    """

    params: str | tuple[str, ...]
    lr_scale: float | None = None
    wd_scale: float | None = None
    momentum: float | None = None
    muon: bool | None = None
    train_epochs: float | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        patterns = (self.params,) if isinstance(self.params, str) else tuple(self.params)
        if not patterns or not all(isinstance(p, str) and p for p in patterns):
            raise ValueError(f"GroupRule params must be a non-empty glob or list of globs, got {self.params!r}")
        object.__setattr__(self, "params", patterns)
        for key, low in (("lr_scale", 0.0), ("wd_scale", 0.0), ("momentum", 0.0)):
            value = getattr(self, key)
            if value is not None and not (math.isfinite(value) and value >= low):
                raise ValueError(f"GroupRule {key} must be a finite value >= {low}, got {value!r}")
        if self.momentum is not None and self.momentum >= 1:
            raise ValueError(f"GroupRule momentum must be < 1, got {self.momentum}")
        if self.train_epochs is not None and not (math.isfinite(self.train_epochs) and self.train_epochs > 0):
            raise ValueError(f"GroupRule train_epochs must be > 0, got {self.train_epochs!r}")

    def matches(self, name: str) -> bool:
        """Whether the parameter called ``name`` falls under this rule."""
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.params)

    def apply(self, group: dict, index: int, base_weight_decay: float) -> dict:
        """A copy of ``group`` (without its parameters) with this rule's settings."""
        new = {k: v for k, v in group.items() if k not in ("params", "param_names")}
        new["name"] = f"{group.get('name', 'group')}.{self.name or f'rule{index}'}"
        if self.lr_scale is not None:
            new["lr_scale"] = group.get("lr_scale", 1.0) * self.lr_scale
            if "lr" in group:
                new["lr"] = group["lr"] * self.lr_scale
        if self.wd_scale is not None:
            new["wd_scale"] = self.wd_scale
            new["weight_decay"] = base_weight_decay * self.wd_scale
        for key in ("momentum", "muon", "train_epochs"):
            if getattr(self, key) is not None:
                new[key] = getattr(self, key)
        return new


def split_by_rules(groups: Sequence[dict], rules: Sequence[GroupRule]) -> list[dict]:
    """Move the parameters each rule matches (by name) out of ``groups`` into groups of its own.

    A rule's group is made per source group, so layer groups and the no-decay split survive;
    applying the same rules twice changes nothing.

    Args:
        groups: groups with ``param_names`` (as :func:`param_groups` makes them).
        rules: the rules, first match wins.

    Returns:
        The remaining groups, each followed by its rule groups; empty groups are dropped.

    Raises:
        ValueError: when a group has no ``param_names``, or a rule matches no parameter (a typo
            in a pattern must not silently do nothing).
    """
    rules = list(rules)
    used = [False] * len(rules)
    # the base decay: known from any decayed group (no-decay groups store 0)
    base = next((g["weight_decay"] / g["wd_scale"] for g in groups if g.get("wd_scale")), 0.0)
    result = []
    for i, group in enumerate(groups):
        names = group.get("param_names")
        if names is None or len(names) != len(group["params"]):
            raise ValueError(
                f"group {group.get('name', i)} has no 'param_names'; rules choose parameters by name, "
                "so build the groups with epochal.optim.param_groups(model)"
            )
        buckets: list[list[tuple[str, torch.Tensor]]] = [[] for _ in range(len(rules) + 1)]
        for name, param in zip(names, group["params"], strict=True):
            k = next((k for k, rule in enumerate(rules) if rule.matches(name)), len(rules))
            buckets[k].append((name, param))
        already = group.get("rule")  # a group an earlier pass of these rules made
        for k, bucket in enumerate(buckets):
            if not bucket:
                continue
            if k < len(rules):
                used[k] = True
            if k == len(rules) or k == already:  # unmatched, or the rule's own group again
                new = {**group}
            else:
                new = {**rules[k].apply(group, k, base), "rule": k}
            new["params"] = [p for _, p in bucket]
            new["param_names"] = [n for n, _ in bucket]
            result.append(new)
    unused = [rule.params for rule, hit in zip(rules, used, strict=True) if not hit]
    if unused:
        sample = [n for g in groups for n in g["param_names"]][:8]
        raise ValueError(f"group rule(s) {unused} match no parameter; parameter names look like {sample}")
    return result
