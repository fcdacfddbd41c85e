"""Decoupled weight decay for any torch optimizer: SGDW, RMSpropW and :func:`decoupled`.

Loshchilov & Hutter, *Decoupled Weight Decay Regularization* (ICLR 2019), show that adding
``wd * w`` to the gradient (L2 regularisation, what torch's ``weight_decay`` does for SGD, RMSprop
and Adam) is not weight decay once the update is rescaled by momentum or adaptive denominators. The
decoupled form shrinks the weights directly, ``w <- w * (1 - lr * wd)``, before the optimizer's own
update, exactly as :class:`torch.optim.AdamW` does. Using it everywhere means a phase's
``weight_decay`` means the same thing whatever optimizer the phase uses.

The mixin keeps the parent's coupled ``weight_decay`` at zero while the parent steps, so the
``weight_decay`` key of every param group holds the decoupled coefficient.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["SGDW", "DecoupledWeightDecay", "RMSpropW", "decoupled", "is_decoupled"]


#: Optimizer class -> its parent's undecorated ``step`` (see ``DecoupledWeightDecay._parent_step``).
_PARENT_STEPS: dict[type, Callable] = {}


class DecoupledWeightDecay:
    """Mixin that turns an optimizer's ``weight_decay`` into decoupled decay.

    Place it before a :class:`torch.optim.Optimizer` subclass in the bases. Before every step, each
    parameter that has a gradient is multiplied by ``1 - lr * weight_decay`` of its group; the
    parent then steps with ``weight_decay=0``. With a fused parent under ``torch.amp.GradScaler``
    the shrink is skipped on steps whose gradients overflowed, like the parent's own update.
    """

    decoupled_weight_decay = True

    @torch.no_grad()
    def _decay_weights(self) -> None:
        found_inf = getattr(self, "found_inf", None)
        for group in self.param_groups:  # type: ignore[attr-defined]
            rate = group["lr"] * group["weight_decay"]
            if isinstance(rate, float | int) and rate == 0:
                continue
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if isinstance(found_inf, torch.Tensor):
                factor = 1 - rate * (1 - found_inf.to(params[0].device, torch.float32))
                torch._foreach_mul_(params, factor)
            else:
                torch._foreach_mul_(params, 1 - rate)

    def _parent_step(self) -> Callable:
        # torch wraps the step of every optimizer class it instantiates with its hook runner; the
        # subclass's step is wrapped already, so call the parent's undecorated step or the
        # step hooks would run twice. Found once per class: this runs at every step.
        function = _PARENT_STEPS.get(type(self))
        if function is None:
            step = super().step  # type: ignore[misc]
            function = getattr(step, "__func__", None)
            if function is None:
                return step
            if getattr(function, "hooked", False):
                function = function.__wrapped__
            _PARENT_STEPS[type(self)] = function
        return function.__get__(self)

    def step(self, closure: Callable[[], float] | None = None):
        groups = self.param_groups  # type: ignore[attr-defined]
        for group in groups:
            decay = group["weight_decay"]
            if not isinstance(decay, float | int) or decay != 0:
                break
        else:  # nothing to decay: the parent's step as it is
            return self._parent_step()(closure)
        self._decay_weights()
        saved = [group["weight_decay"] for group in groups]
        for group in groups:
            group["weight_decay"] = 0.0
        try:
            return self._parent_step()(closure)
        finally:
            for group, weight_decay in zip(groups, saved, strict=True):
                group["weight_decay"] = weight_decay


class SGDW(DecoupledWeightDecay, torch.optim.SGD):
    """SGD (with optional momentum / Nesterov) and decoupled weight decay.

    The update is ``w <- w * (1 - lr * wd)`` followed by torch's SGD step.

    Examples:
        >>> optimizer = SGDW(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    """


class RMSpropW(DecoupledWeightDecay, torch.optim.RMSprop):
    """RMSprop with decoupled weight decay whose momentum may be switched on mid-training.

    torch's RMSprop only creates a momentum buffer when a parameter's state is first made with
    ``momentum > 0``; a schedule that raises momentum later would crash it. Missing buffers are
    created (zeros) the first time a group steps with momentum.
    """

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        for group in self.param_groups:
            if group["momentum"] > 0:
                for p in group["params"]:
                    state = self.state.get(p)
                    if p.grad is not None and state and "momentum_buffer" not in state:
                        state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return super().step(closure)


_DECOUPLED_CACHE: dict[type, type] = {}


def is_decoupled(cls: type) -> bool:
    """Whether an optimizer class already applies decoupled weight decay."""
    return bool(getattr(cls, "decoupled_weight_decay", False)) or issubclass(cls, torch.optim.AdamW)


def decoupled(cls: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    """The decoupled-weight-decay variant of an optimizer class (``cls`` itself when it already is).

    Args:
        cls: a :class:`torch.optim.Optimizer` subclass that takes a ``weight_decay`` argument.

    Returns:
        A subclass named ``<cls>W`` built with :class:`DecoupledWeightDecay`, cached per class.

    Raises:
        TypeError: when ``cls`` is not an optimizer class.

    Examples:
        >>> AdagradW = decoupled(torch.optim.Adagrad)
    """
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise TypeError(f"decoupled() needs a torch.optim.Optimizer subclass, got {cls!r}")
    if is_decoupled(cls):
        return cls
    known = {torch.optim.Adam: torch.optim.AdamW, torch.optim.SGD: SGDW, torch.optim.RMSprop: RMSpropW}
    if cls in known:
        return known[cls]
    if cls not in _DECOUPLED_CACHE:
        _DECOUPLED_CACHE[cls] = type(f"{cls.__name__}W", (DecoupledWeightDecay, cls), {})
    return _DECOUPLED_CACHE[cls]
