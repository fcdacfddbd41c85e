"""Build optimizers by name, and switch optimizer between training phases.

Every registered optimizer uses decoupled weight decay (Loshchilov & Hutter, 2019), so the
``weight_decay`` of a phase means ``w <- w * (1 - lr * wd)`` per step whichever optimizer runs it.
``adam`` is therefore AdamW. On CUDA the fused (or else foreach) torch kernels are chosen when the
optimizer has them, unless ``fused=`` / ``foreach=`` is passed.

When a phase changes optimizer, :func:`switch_optimizer` builds the new one over the same parameter
groups (same ``lr``, scales and names) and carries state that means the same thing: momentum
buffers between SGD-like optimizers (``sgd``, ``nesterov``, ``lars``), first and second moments
between Adam-like ones (``adam``, ``adamw``, ``lamb``); anything else starts fresh.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from epochal.optim.decoupled import SGDW, RMSpropW, decoupled
from epochal.optim.groups import GroupRule, param_groups, split_by_rules
from epochal.optim.lamb import LAMB
from epochal.optim.lars import LARS
from epochal.optim.muon import Muon
from epochal.utils import did_you_mean, unknown_argument_error

__all__ = [
    "OPTIMIZERS",
    "OptimizerEntry",
    "OptimizerSpec",
    "build_optimizer",
    "optimizer_family",
    "register_optimizer",
    "resolve_optimizer",
    "same_optimizer",
    "switch_optimizer",
]

#: A name in :data:`OPTIMIZERS`, an optimizer class, or a factory ``f(groups, **kwargs)``.
OptimizerSpec = str | type | Callable[..., torch.optim.Optimizer]

#: The learning rate a group gets when neither the group nor the call names one.
DEFAULT_LR = 1e-3

#: State keys that mean the same thing across the optimizers of one family.
_FAMILY_STATE_KEYS: dict[str, tuple[str, ...]] = {
    "sgd": ("momentum_buffer",),
    "adam": ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
    "rmsprop": ("step", "square_avg", "momentum_buffer", "grad_avg"),
}

#: Group keys that are not hyperparameters of a particular optimizer and survive a switch.
_PORTABLE_KEYS = (
    "params",
    "param_names",
    "lr",
    "weight_decay",
    "lr_scale",
    "wd_scale",
    "name",
    "layer_group",
    "norm_or_bias",
)


@dataclass(frozen=True)
class OptimizerEntry:
    """A registered optimizer.

    Attributes:
        name: the registry name.
        cls: the optimizer class (with decoupled weight decay).
        family: state family for :func:`switch_optimizer` (``"sgd"``, ``"adam"``, ``"rmsprop"``) or None.
        momentum_key: ``"momentum"``, ``"betas"`` (momentum is beta1) or None.
        defaults: constructor keyword defaults (e.g. ``momentum=0.9``).
    """

    name: str
    cls: type
    family: str | None
    momentum_key: str | None
    defaults: Mapping[str, Any] = field(default_factory=dict)


OPTIMIZERS: dict[str, OptimizerEntry] = {}
_ALIASES: dict[str, str] = {"sgdw": "sgd", "rmspropw": "rmsprop", "sgd_nesterov": "nesterov"}


def register_optimizer(
    name: str, cls: type, family: str | None = None, momentum_key: str | None = None, **defaults: Any
) -> OptimizerEntry:
    """Register an optimizer class under ``name`` (its weight decay is made decoupled).

    Examples:
        >>> register_optimizer("adagrad", torch.optim.Adagrad)
    """
    if family is not None and family not in _FAMILY_STATE_KEYS:
        raise ValueError(f"family must be one of {sorted(_FAMILY_STATE_KEYS)} or None, got {family!r}")
    if momentum_key is None:
        momentum_key = _momentum_key(cls)
    entry = OptimizerEntry(name, decoupled(cls), family, momentum_key, dict(defaults))
    OPTIMIZERS[name] = entry
    return entry


register_optimizer("sgd", SGDW, "sgd", "momentum", momentum=0.9)
register_optimizer("nesterov", SGDW, "sgd", "momentum", momentum=0.9, nesterov=True)
register_optimizer("adam", torch.optim.AdamW, "adam", "betas")
register_optimizer("adamw", torch.optim.AdamW, "adam", "betas")
register_optimizer("rmsprop", RMSpropW, "rmsprop", "momentum", alpha=0.99)
register_optimizer("lars", LARS, "sgd", "momentum", momentum=0.9)
register_optimizer("lamb", LAMB, "adam", "betas")
register_optimizer("muon", Muon, None, "momentum")


def resolve_optimizer(spec: OptimizerSpec) -> OptimizerEntry | Callable[..., torch.optim.Optimizer]:
    """The registry entry for a name or class, or the factory itself for any other callable.

    Raises:
        ValueError: for an unknown name (the message suggests the closest).
        TypeError: for something that is neither a name nor a callable.
    """
    if isinstance(spec, str):
        key = _ALIASES.get(spec.lower(), spec.lower())
        if key not in OPTIMIZERS:
            hint = did_you_mean(key, sorted(OPTIMIZERS) + sorted(_ALIASES), " (did you mean {}?)")
            raise ValueError(f"unknown optimizer {spec!r}{hint}; known: {', '.join(sorted(OPTIMIZERS))}")
        return OPTIMIZERS[key]
    if isinstance(spec, type) and issubclass(spec, torch.optim.Optimizer):
        return OptimizerEntry(spec.__name__, decoupled(spec), _family_of_class(spec), _momentum_key(spec))
    if callable(spec):
        return spec
    raise TypeError(f"optimizer must be a name, an optimizer class or a factory, got {spec!r}")


def same_optimizer(a: OptimizerSpec, b: OptimizerSpec) -> bool:
    """Whether two specifications build the same optimizer (names compared after aliases)."""
    ra, rb = resolve_optimizer(a), resolve_optimizer(b)
    if isinstance(ra, OptimizerEntry) and isinstance(rb, OptimizerEntry):
        return ra == rb
    return ra is rb


def optimizer_family(optimizer: torch.optim.Optimizer | OptimizerSpec) -> str | None:
    """The state family of an optimizer instance or specification (None when unknown)."""
    if isinstance(optimizer, torch.optim.Optimizer):
        return _family_of_class(type(optimizer))
    entry = resolve_optimizer(optimizer)
    return entry.family if isinstance(entry, OptimizerEntry) else None


def build_optimizer(
    spec: OptimizerSpec,
    groups: nn.Module | Iterable[dict] | Iterable[torch.Tensor],
    lr: float | None = None,
    momentum: float | None = None,
    weight_decay: float | None = None,
    rules: Iterable[GroupRule] = (),
    **kwargs: Any,
) -> torch.optim.Optimizer:
    """Build an optimizer with decoupled weight decay over parameter groups.

    Args:
        spec: a registered name (``sgd``, ``nesterov``, ``adam``, ``adamw``, ``rmsprop``, ``lars``,
            ``lamb``, ``muon``), an optimizer class (made decoupled with :func:`~epochal.optim.decoupled`) or
            a factory called as ``factory(groups, **kwargs)`` (its weight decay is its own affair).
        groups: group dicts from :func:`~epochal.optim.param_groups`, a module (split with its
            defaults) or an iterable of tensors (one group).
        lr: the base rate; each group gets ``lr * lr_scale``. None keeps each group's ``lr``.
        momentum: momentum, or beta1 of Adam-like optimizers. None takes the optimizer's default.
        weight_decay: base decoupled decay; each group gets ``weight_decay * wd_scale``. None keeps
            each group's value.
        rules: :class:`~epochal.optim.GroupRule` s that move parameters, by name, into groups with
            their own settings (see :func:`~epochal.optim.split_by_rules`); the groups need
            ``param_names``, which :func:`~epochal.optim.param_groups` records.
        **kwargs: other constructor arguments (``eps``, ``trust_coefficient``, ``fused`` ...).

    Returns:
        The optimizer; its groups keep ``lr_scale``, ``wd_scale``, ``name`` and ``layer_group``.

    Examples:
        >>> opt = build_optimizer("sgd", param_groups(model, lr=slice(1e-4, 1e-2)), lr=1e-2, weight_decay=5e-4)
    """
    groups = _normalise_groups(groups, lr, weight_decay)
    if rules:
        groups = split_by_rules(groups, list(rules))
    entry = resolve_optimizer(spec)
    if not isinstance(entry, OptimizerEntry):
        return entry(groups, **kwargs)
    ctor = {**entry.defaults, **kwargs}
    if momentum is not None:
        if entry.momentum_key == "momentum":
            ctor["momentum"] = momentum
        elif entry.momentum_key == "betas":
            ctor["betas"] = (momentum, tuple(ctor.get("betas", (0.9, 0.999)))[1])
    _check_kwargs(entry, ctor)
    ctor.update(_implementation(entry.cls, groups, ctor))
    return entry.cls(groups, **ctor)


def switch_optimizer(
    old: torch.optim.Optimizer,
    spec: OptimizerSpec,
    lr: float | None = None,
    momentum: float | None = None,
    weight_decay: float | None = None,
    carry_state: bool = True,
    **kwargs: Any,
) -> torch.optim.Optimizer:
    """Replace ``old`` by a ``spec`` optimizer over the same groups, carrying compatible state.

    The new groups keep ``old``'s params, current ``lr`` and ``weight_decay``, scales, names and
    any extra keys that are not ``old``'s hyperparameters. Momentum (or beta1) is taken from
    ``old``'s first group unless given. State is carried when both optimizers are in the same
    family (see the module docstring) and ``carry_state`` is true; tensors are shared, not copied.

    Returns:
        The new optimizer; ``old`` should no longer be stepped.
    """
    groups = [
        {k: v for k, v in group.items() if k in _PORTABLE_KEYS or k not in old.defaults}
        for group in old.param_groups
    ]
    if momentum is None:
        momentum = _current_momentum(old.param_groups[0])
        entry = resolve_optimizer(spec)
        if momentum == 0 and isinstance(entry, OptimizerEntry) and entry.momentum_key == "betas":
            momentum = None  # plain SGD's zero momentum is no sensible beta1
    new = build_optimizer(spec, groups, lr=lr, momentum=momentum, weight_decay=weight_decay, **kwargs)
    family = optimizer_family(old)
    if carry_state and family is not None and family == optimizer_family(new):
        _carry_state(old, new, _FAMILY_STATE_KEYS[family])
    return new


def _normalise_groups(groups: Any, lr: float | None, weight_decay: float | None) -> list[dict]:
    if isinstance(groups, nn.Module):
        groups = param_groups(groups)
    groups = list(groups)
    if not groups:
        raise ValueError("groups is empty; give param_groups(model), a module or parameters")
    if not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    result = []
    for i, group in enumerate(groups):
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"groups[{i}] must be a dict with a 'params' key, got {type(group).__name__}")
        group = dict(group)
        group["params"] = list(group["params"])
        group.setdefault("lr_scale", 1.0)
        group.setdefault("wd_scale", 1.0)
        group.setdefault("name", f"group{i}")
        group.setdefault("layer_group", i)
        if lr is not None:
            group["lr"] = lr * group["lr_scale"]
        group.setdefault("lr", DEFAULT_LR * group["lr_scale"])
        if weight_decay is not None:
            group["weight_decay"] = weight_decay * group["wd_scale"]
        group.setdefault("weight_decay", 0.0)
        result.append(group)
    return result


def _implementation(cls: type, groups: list[dict], ctor: dict) -> dict:
    """Fused kernels on CUDA where the class has them, else foreach; CPU keeps torch's default.

    On the CPU torch's default is the per-tensor loop; saying so (``foreach=False``) spares every
    param group torch's search for it at every step (about 5 us each, a tenth of a tiny model's step).
    """
    if "fused" in ctor or "foreach" in ctor:
        return {}
    params = [p for g in groups for p in g["params"]]
    accepted = _init_parameters(cls)
    if params and all(p.device.type == "cpu" for p in params):
        return {"foreach": False} if "foreach" in accepted and not ctor.get("differentiable", False) else {}
    if not params or not all(p.is_cuda and p.is_floating_point() for p in params):
        return {}
    if "fused" in accepted and not ctor.get("differentiable", False):
        return {"fused": True}
    if "foreach" in accepted:
        return {"foreach": True}
    return {}


def _check_kwargs(entry: OptimizerEntry, ctor: dict) -> None:
    accepted = set(_init_parameters(entry.cls)) - {"self", "params"}
    for key in ctor:
        if key not in accepted:
            raise unknown_argument_error(f"optimizer {entry.name!r}", key, sorted(accepted))


@functools.cache
def _init_parameters(cls: type) -> Mapping[str, inspect.Parameter]:
    """The constructor's parameters, found once per class (every fit builds an optimizer)."""
    return inspect.signature(cls.__init__).parameters


def _momentum_key(cls: type) -> str | None:
    accepted = _init_parameters(cls)
    return "betas" if "betas" in accepted else "momentum" if "momentum" in accepted else None


def _family_of_class(cls: type) -> str | None:
    for family, bases in (
        ("sgd", (torch.optim.SGD, LARS)),
        ("adam", (torch.optim.Adam, torch.optim.AdamW, LAMB)),
        ("rmsprop", (torch.optim.RMSprop,)),
    ):
        if issubclass(cls, bases):
            return family
    return getattr(cls, "state_family", None)


def _current_momentum(group: dict) -> float | None:
    value = group["betas"][0] if "betas" in group else group.get("momentum")
    return float(value) if value is not None else None


def _carry_state(old: torch.optim.Optimizer, new: torch.optim.Optimizer, keys: tuple[str, ...]) -> None:
    placement = {id(p): g for g in new.param_groups for p in g["params"]}
    for param, state in old.state.items():
        group = placement.get(id(param))
        if group is None:
            continue
        carried = {k: v for k, v in state.items() if k in keys and v is not None}
        if "step" in carried:
            on_device = group.get("fused") or group.get("capturable")
            carried["step"] = torch.tensor(
                float(carried["step"]), dtype=torch.float32, device=param.device if on_device else "cpu"
            )
        if group.get("amsgrad") and "exp_avg_sq" in carried and "max_exp_avg_sq" not in carried:
            carried["max_exp_avg_sq"] = carried["exp_avg_sq"].clone()
        if group.get("centered") and "square_avg" in carried and "grad_avg" not in carried:
            carried["grad_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        if carried:
            new.state[param] = carried
