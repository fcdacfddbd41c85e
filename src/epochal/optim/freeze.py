"""Freezing layer groups for transfer learning (Howard & Ruder, ULMFiT, 2018: gradual unfreezing).

``freeze_to(model, n)`` stops gradients for layer groups ``0 .. n-1`` and lets the rest train.
Normalisation layers inside frozen groups stay trainable by default (``train_bn=True``): a
pretrained body's BatchNorm statistics and affine weights must adapt to the new data set, which is
one of the cheapest, most effective fine-tuning tricks (fastai's default). With ``train_bn=False``
their weights are frozen too and modules with running statistics are put in eval mode; since
``model.train()`` undoes that, call :func:`set_frozen_norm_eval` after it (the Learner does).

Frozen parameters stay in the optimizer (their gradients are None, so optimizers skip them), so
unfreezing needs no new optimizer. Every function returns a :class:`FreezeRecord` of what changed;
:func:`frozen` is the transactional form that restores flags and modes on exit, also on error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from torch import nn

from epochal.optim.groups import NORM_TYPES, get_layer_groups, unwrap_model

__all__ = ["FreezeRecord", "freeze", "freeze_to", "frozen", "set_frozen_norm_eval", "unfreeze"]


@dataclass(frozen=True)
class FreezeRecord:
    """What a freezing call did.

    Attributes:
        n_groups: the number of layer groups.
        frozen_groups: indices of the groups now frozen.
        train_bn: whether norm layers in frozen groups stay trainable.
        newly_frozen: names of parameters whose ``requires_grad`` went from True to False.
        newly_trainable: names of parameters whose ``requires_grad`` went from False to True.
        eval_norm_modules: names of norm modules with running statistics held in eval mode.
    """

    n_groups: int
    frozen_groups: tuple[int, ...]
    train_bn: bool
    newly_frozen: tuple[str, ...]
    newly_trainable: tuple[str, ...]
    eval_norm_modules: tuple[str, ...]


def freeze_to(model: nn.Module, n: int, train_bn: bool = True) -> FreezeRecord:
    """Freeze layer groups ``[0, n)`` and unfreeze the others.

    Args:
        model: a model with layer groups (see :func:`~epochal.optim.get_layer_groups`).
        n: the number of leading groups to freeze; negative counts from the end like a Python
            index (``-1`` freezes all but the last group), ``0`` unfreezes everything.
        train_bn: keep normalisation layers of frozen groups trainable and in train mode.

    Returns:
        The :class:`FreezeRecord`.

    Raises:
        ValueError: when ``n`` is outside ``[-n_groups, n_groups]``.

    Examples:
        >>> record = freeze_to(model, -1)        # train the head (and BatchNorm) only
        >>> record.frozen_groups
        (0,)
    """
    model = unwrap_model(model)
    groups = get_layer_groups(model)
    count = len(groups)
    if not isinstance(n, int) or isinstance(n, bool) or not -count <= n <= count:
        raise ValueError(
            f"n must be an int in [{-count}, {count}] for a model with {count} layer groups, got {n!r}"
        )
    n = n % count if n < 0 else n
    names = {id(p): name for name, p in model.named_parameters(remove_duplicate=False)}
    module_names = {id(m): name for name, m in model.named_modules(remove_duplicate=False)}
    before = {id(p): p.requires_grad for p in model.parameters()}
    in_groups = {id(p) for g in groups for p in g.parameters()}
    leftovers = [p for p in model.parameters() if id(p) not in in_groups]
    eval_modules: list[str] = []
    for index, group in enumerate(groups):
        if index < n:
            eval_modules += _freeze_module(group, train_bn, model.training, module_names)
        else:
            for module in group.modules():
                if isinstance(module, NORM_TYPES):
                    module.train(model.training)
            group.requires_grad_(True)
    for param in leftovers:
        param.requires_grad_(n < count)
    now = {id(p): p.requires_grad for p in model.parameters()}
    newly_frozen = tuple(names[i] for i, was in before.items() if was and not now[i])
    newly_trainable = tuple(names[i] for i, was in before.items() if not was and now[i])
    return FreezeRecord(count, tuple(range(n)), train_bn, newly_frozen, newly_trainable, tuple(eval_modules))


def freeze(model: nn.Module, train_bn: bool = True) -> FreezeRecord:
    """Freeze every layer group but the last (the head); see :func:`freeze_to`."""
    return freeze_to(model, -1, train_bn=train_bn)


def unfreeze(model: nn.Module) -> FreezeRecord:
    """Make every parameter trainable again and norm layers follow the model's mode."""
    return freeze_to(model, 0)


def set_frozen_norm_eval(model: nn.Module, record: FreezeRecord) -> int:
    """Put the norm modules a ``train_bn=False`` freeze holds in eval mode back into eval mode.

    Call after ``model.train()``, which switches every module to train mode.

    Returns:
        The number of modules set to eval mode.
    """
    wanted = set(record.eval_norm_modules)
    count = 0
    for name, module in unwrap_model(model).named_modules(remove_duplicate=False):
        if name in wanted:
            module.eval()
            count += 1
    return count


@contextmanager
def frozen(model: nn.Module, n: int = -1, train_bn: bool = True) -> Iterator[FreezeRecord]:
    """Freeze the first ``n`` layer groups inside a ``with`` block, then restore every flag and mode.

    Examples:
        >>> with frozen(model, -1) as record:
        ...     train_head(model)
    """
    model = unwrap_model(model)
    flags = [(p, p.requires_grad) for p in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield freeze_to(model, n, train_bn=train_bn)
    finally:
        for param, flag in flags:
            param.requires_grad_(flag)
        for module, mode in modes:
            module.training = mode


def _freeze_module(
    group: nn.Module, train_bn: bool, training: bool, module_names: dict[int, str]
) -> list[str]:
    eval_modules = []
    for module in group.modules():
        is_norm = isinstance(module, NORM_TYPES)
        for param in module.parameters(recurse=False):
            param.requires_grad_(train_bn and is_norm)
        if is_norm:
            keep_stats = train_bn or not getattr(module, "track_running_stats", False)
            module.train(training if keep_stats else False)
            if not keep_stats:
                eval_modules.append(module_names.get(id(module), ""))
    return eval_modules
