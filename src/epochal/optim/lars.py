"""LARS: layer-wise adaptive rate scaling (You, Gitman & Ginsburg, *Large Batch Training of
Convolutional Networks*, 2017, arXiv:1708.03888).

Each parameter tensor ("layer") gets a local learning rate proportional to the ratio of its weight
norm to its gradient norm, ``trust = eta * ||w|| / (||g|| + eps)``, so that every layer moves by
about the same relative amount however large the batch. As in most later uses (SimCLR, BYOL,
Goyal et al.), normalisation weights and biases are excluded from the adaptation: their groups
(``norm_or_bias=True`` from :func:`epochal.optim.param_groups`) take plain momentum SGD steps.

Weight decay is decoupled (``w <- w * (1 - lr * wd)``) like every epochal optimizer, instead of the
paper's ``g + wd * w`` inside the trust ratio; one step of a parameter ``w`` with gradient ``g`` is::

    trust = eta * ||w|| / (||g|| + eps)   (1 when ||w|| or ||g|| is 0, or the group is excluded)
    w     = w * (1 - lr * wd)
    buf   = momentum * buf + trust * g    (buf = trust * g on the first step)
    w     = w - lr * buf                  (nesterov: w - lr * (trust * g + momentum * buf))

Norms stay on the device (no host synchronisation).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

__all__ = ["LARS"]


class LARS(torch.optim.Optimizer):
    """Momentum SGD with layer-wise adaptive rate scaling and decoupled weight decay.

    Args:
        params: parameters or param-group dicts.
        lr: the global learning rate.
        momentum: the momentum coefficient.
        weight_decay: decoupled weight decay.
        trust_coefficient: ``eta`` in the trust ratio (0.001 in the paper).
        eps: added to the gradient norm.
        nesterov: use Nesterov momentum.
        exclude_norm_and_bias: skip the adaptation for groups with ``norm_or_bias=True``; a group
            may also set ``lars_adapt`` explicitly.

    Examples:
        >>> optimizer = LARS(param_groups(model, weight_decay=1e-6), lr=4.8, momentum=0.9)
    """

    decoupled_weight_decay = True

    def __init__(
        self,
        params: Iterable,
        lr: float = 1.0,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 0.001,
        eps: float = 1e-8,
        nesterov: bool = False,
        exclude_norm_and_bias: bool = True,
    ) -> None:
        for name, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
            if value < 0:
                raise ValueError(f"LARS {name} must be >= 0, got {value}")
        if trust_coefficient <= 0:
            raise ValueError(f"LARS trust_coefficient must be > 0, got {trust_coefficient}")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "trust_coefficient": trust_coefficient,
            "eps": eps,
            "nesterov": nesterov,
            "exclude_norm_and_bias": exclude_norm_and_bias,
        }
        super().__init__(params, defaults)

    @staticmethod
    def _adapts(group: dict) -> bool:
        if "lars_adapt" in group:
            return bool(group["lars_adapt"])
        return not (group["exclude_norm_and_bias"] and group.get("norm_or_bias", False))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Take one LARS step; ``closure`` re-evaluates the loss as for any torch optimizer."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
            adapt = self._adapts(group)
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if adapt:
                    w_norm = torch.linalg.vector_norm(p)
                    g_norm = torch.linalg.vector_norm(grad)
                    ratio = group["trust_coefficient"] * w_norm / (g_norm + group["eps"])
                    trust = torch.where((w_norm > 0) & (g_norm > 0), ratio, torch.ones_like(ratio))
                    grad = grad * trust
                if weight_decay != 0:
                    p.mul_(1 - lr * weight_decay)
                if momentum != 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = grad.detach().clone()
                    else:
                        buf.mul_(momentum).add_(grad)
                    grad = grad.add(buf, alpha=momentum) if group["nesterov"] else buf
                p.add_(grad, alpha=-lr)
        return loss
