"""LAMB: layer-wise adaptive moments (You et al., *Large Batch Optimization for Deep Learning:
Training BERT in 76 minutes*, ICLR 2020, arXiv:1904.00962).

Adam's bias-corrected update ``r = m_hat / (sqrt(v_hat) + eps)`` is rescaled per parameter tensor by
the trust ratio ``||w|| / ||r||``, the LARS idea applied to Adam. Norm weights and biases
(``norm_or_bias=True`` groups) are excluded from the rescaling. Weight decay is decoupled
(``w <- w * (1 - lr * wd)``) instead of being added to ``r`` inside the trust ratio, so that a
phase's ``weight_decay`` means the same as for AdamW. The state uses Adam's key names
(``step``, ``exp_avg``, ``exp_avg_sq``) so moments carry over when switching from Adam(W).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

__all__ = ["LAMB"]


class LAMB(torch.optim.Optimizer):
    """Adam with a per-tensor trust ratio and decoupled weight decay.

    Args:
        params: parameters or param-group dicts.
        lr: learning rate.
        betas: Adam's ``(beta1, beta2)``; ``beta1`` follows a phase's momentum.
        eps: added to ``sqrt(v_hat)``.
        weight_decay: decoupled weight decay.
        exclude_norm_and_bias: skip the trust ratio for groups with ``norm_or_bias=True``.

    Examples:
        >>> optimizer = LAMB(param_groups(model, weight_decay=0.01), lr=2e-3)
    """

    decoupled_weight_decay = True

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        exclude_norm_and_bias: bool = True,
    ) -> None:
        if lr < 0 or weight_decay < 0:
            raise ValueError(f"LAMB lr and weight_decay must be >= 0, got {lr} and {weight_decay}")
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"LAMB betas must be in [0, 1), got {betas}")
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "exclude_norm_and_bias": exclude_norm_and_bias,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Take one LAMB step; ``closure`` re-evaluates the loss as for any torch optimizer."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, weight_decay = group["lr"], group["weight_decay"]
            adapt = not (group["exclude_norm_and_bias"] and group.get("norm_or_bias", False))
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                step = float(state["step"])  # a CPU scalar: no device synchronisation
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.lerp_(p.grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                denom = (exp_avg_sq / (1 - beta2**step)).sqrt_().add_(group["eps"])
                update = exp_avg / (1 - beta1**step) / denom
                if adapt:
                    w_norm = torch.linalg.vector_norm(p)
                    u_norm = torch.linalg.vector_norm(update)
                    trust = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
                    update.mul_(trust)
                if weight_decay != 0:
                    p.mul_(1 - lr * weight_decay)
                p.add_(update, alpha=-lr)
        return loss
