"""Muon: momentum orthogonalised by a Newton-Schulz iteration, for the filters of hidden layers.

Keller Jordan, Yuchen Jin, Vlado Boza, Jiacheng You, Franz Cesista, Laker Newhouse and Jeremy
Bernstein, *Muon: An optimizer for hidden layers in neural networks* (2024,
https://kellerjordan.github.io/posts/muon/), the optimizer of the CIFAR-10 speed record
``airbench94_muon``. Each step, the (Nesterov) momentum ``M`` of a weight, viewed as a matrix
(a conv filter bank ``(out, in, kh, kw)`` as ``(out, in * kh * kw)``), is replaced by an
approximation of its orthogonal polar factor ``U V^T`` (``M = U S V^T``), computed by a few steps
of the quintic Newton-Schulz iteration

    X <- a X + (b A + c A^2) X,   A = X X^T,   X_0 = M / ||M||_F,   (a, b, c) = (3.4445, -4.7750, 2.0315)

whose coefficients maximise the slope at zero, so that a handful of steps brings every singular
value into roughly [0.7, 1.2] instead of converging exactly. The update is therefore scale-free:
only the momentum's direction matters.

One optimizer covers a whole model. A parameter takes the Muon step when its group says
``muon=True``, or, when the group leaves ``muon`` unset, when it has at least two dimensions;
every other parameter (biases, norm shifts, groups marked ``muon=False`` such as a classifier)
takes a Nesterov SGD step with decoupled weight decay. A single optimizer spec thus splits a model
by parameter kind, and :class:`~epochal.optim.GroupRule` moves parameters between the two.

Relation to :class:`torch.optim.Muon` (torch >= 2.9): that class takes only 2-D parameters, always
iterates in bfloat16 and has no weight normalisation, so it cannot train airbench's conv filters.
On 2-D parameters with the same settings (``ns_dtype=torch.bfloat16``) this class takes the same
steps, which the tests check whenever the installed torch has it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

__all__ = ["NS_COEFFICIENTS", "Muon", "zeropower_via_newtonschulz"]

#: The quintic Newton-Schulz coefficients ``(a, b, c)`` of Jordan et al. (2024).
NS_COEFFICIENTS: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)

_ADJUST_LR = ("original", "match_rms_adamw", "none")
_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64, "float16": torch.float16}


def zeropower_via_newtonschulz(
    matrix: torch.Tensor,
    steps: int = 5,
    coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    eps: float = 1e-7,
    dtype: torch.dtype = torch.bfloat16,
) -> torch.Tensor:
    """Approximate the orthogonal polar factor ``U V^T`` of a matrix ``U S V^T``.

    Args:
        matrix: a 2-D tensor, or a 3-D batch of matrices of one shape (each is normalised and
            iterated on its own; one batched product per step serves them all).
        steps: Newton-Schulz steps (airbench94_muon uses 3, torch and the Muon paper 5).
        coefficients: ``(a, b, c)`` of the quintic iteration.
        eps: floor of the Frobenius norm the matrix is first divided by.
        dtype: the dtype the iteration runs in (bfloat16 on GPUs; float32 is faster on CPUs
            without native bfloat16 matrix products).

    Returns:
        A tensor of ``matrix``'s shape in ``dtype`` whose singular values lie near 1.
    """
    if matrix.ndim not in (2, 3):
        raise ValueError(
            f"zeropower_via_newtonschulz needs a 2-D matrix or a 3-D batch of them, got shape {tuple(matrix.shape)}"
        )
    if not 1 <= steps < 100:
        raise ValueError(f"steps must be in [1, 100), got {steps}")
    a, b, c = coefficients
    fused = torch.addmm if matrix.ndim == 2 else torch.baddbmm
    x = matrix.to(dtype)
    transposed = x.shape[-2] > x.shape[-1]
    if transposed:  # iterate on the wide side: the Gram matrix is the smaller one
        x = x.mT
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.mT
        x = fused(x, fused(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.mT if transposed else x


def _adjusted_lr(lr: float, adjust_lr_fn: str | None, shape: torch.Size) -> float:
    """torch.optim.Muon's rate adjustments (same names), so the two give the same steps."""
    rows, cols = shape[0], math.prod(shape[1:])
    if adjust_lr_fn in (None, "original"):
        return lr * math.sqrt(max(1.0, rows / cols))
    if adjust_lr_fn == "match_rms_adamw":
        return lr * 0.2 * math.sqrt(max(rows, cols))
    return lr


def _dtype_name(value) -> str | None:
    """The name of an iteration dtype (names keep optimizer state plain data)."""
    if isinstance(value, torch.dtype):
        value = str(value).removeprefix("torch.")
    if value is None or value in _DTYPES:
        return value
    raise ValueError(f"ns_dtype={value!r} is not valid; use one of {sorted(_DTYPES)} or None (bfloat16 on CUDA)")


class Muon(torch.optim.Optimizer):
    """Muon for matrices and conv filters, Nesterov SGD for everything else, in one optimizer.

    Args:
        params: parameters or parameter groups; a group's ``muon`` key (True/False) chooses the
            update for all its parameters, unset means Muon for parameters with ``ndim >= 2``.
        lr: learning rate.
        momentum: momentum of both updates (SGD groups usually set their own, e.g. 0.85).
        nesterov: Nesterov momentum.
        weight_decay: decoupled weight decay, ``w <- w * (1 - lr * weight_decay)`` per step.
        ns_steps: Newton-Schulz steps.
        ns_coefficients: ``(a, b, c)`` of the iteration.
        eps: norm floor of the iteration.
        adjust_lr_fn: scale of the Muon rate per matrix shape ``(A, B)``, as torch.optim.Muon:
            ``"original"`` (default) ``sqrt(max(1, A/B))``, ``"match_rms_adamw"`` ``0.2 sqrt(max(A, B))``,
            ``"none"``.
        normalize_weights: before each Muon step, rescale the weight to Frobenius norm
            ``sqrt(out_features)`` (airbench94_muon); weight decay then has no effect on it.
        ns_dtype: dtype of the iteration (``"bfloat16"``, ``"float32"`` or a torch dtype); None
            is bfloat16 for CUDA parameters and float32 elsewhere.

    Examples:
        >>> groups = [{"params": convs}, {"params": biases + [head.weight], "muon": False, "momentum": 0.85}]
        >>> optimizer = Muon(groups, lr=0.24, momentum=0.6, ns_steps=3, normalize_weights=True)
    """

    #: Weight decay is applied here, decoupled; :func:`epochal.optim.decoupled` leaves the class alone.
    decoupled_weight_decay = True

    def __init__(
        self,
        params: Iterable,
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        weight_decay: float = 0.0,
        ns_steps: int = 5,
        ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
        eps: float = 1e-7,
        adjust_lr_fn: str | None = None,
        normalize_weights: bool = False,
        ns_dtype: str | torch.dtype | None = None,
    ) -> None:
        if lr < 0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        if adjust_lr_fn is not None and adjust_lr_fn not in _ADJUST_LR:
            raise ValueError(f"adjust_lr_fn={adjust_lr_fn!r} is not valid; use one of {_ADJUST_LR} or None")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "nesterov": nesterov,
            "weight_decay": weight_decay,
            "ns_steps": ns_steps,
            "ns_coefficients": tuple(ns_coefficients),
            "eps": eps,
            "adjust_lr_fn": adjust_lr_fn,
            "normalize_weights": normalize_weights,
            "ns_dtype": _dtype_name(ns_dtype),
            "muon": None,
        }
        super().__init__(params, defaults)
        for index, group in enumerate(self.param_groups):
            group["ns_dtype"] = _dtype_name(group["ns_dtype"])
            flat = [p for p in group["params"] if p.ndim < 2]
            if group["muon"] is True and flat:
                raise ValueError(
                    f"param group {group.get('name', index)} has muon=True but holds parameters with fewer "
                    f"than 2 dimensions {[tuple(p.shape) for p in flat]}; Muon orthogonalises matrices only"
                )

    def _split(self, group: dict) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(parameters taking the Muon step, parameters taking the SGD step) that have gradients."""
        with_grad = [p for p in group["params"] if p.grad is not None]
        if group["muon"] is None:
            return [p for p in with_grad if p.ndim >= 2], [p for p in with_grad if p.ndim < 2]
        return (with_grad, []) if group["muon"] else ([], with_grad)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        """One step of every group (see the class docstring)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        pending = []
        for group in self.param_groups:
            muon_params, sgd_params = self._split(group)
            if muon_params:
                pending.append((group, muon_params, self._momentum_updates(group, muon_params)))
            if sgd_params:
                self._sgd_step(group, sgd_params)
        if pending:
            orthogonal = self._orthogonalise(pending)
            for (group, params, _), updates in zip(pending, orthogonal, strict=True):
                self._muon_apply(group, params, updates)
        return loss

    def _buffers(self, params: list[torch.Tensor]) -> list[torch.Tensor]:
        buffers = []
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            buffers.append(state["momentum_buffer"])
        return buffers

    def _momentum_updates(self, group: dict, params: list[torch.Tensor]) -> list[torch.Tensor]:
        """The (Nesterov) momentum of each parameter, in torch.optim.Muon's averaging form.

        airbench's summing form differs by the factor ``1 - momentum``, which the normalised
        iteration ignores.
        """
        momentum, grads, buffers = group["momentum"], [p.grad for p in params], self._buffers(params)
        torch._foreach_lerp_(buffers, grads, 1 - momentum)
        return torch._foreach_lerp(grads, buffers, momentum) if group["nesterov"] else buffers

    def _orthogonalise(self, pending: list) -> list[list[torch.Tensor]]:
        """Newton-Schulz for every update, one batched iteration per shape and setting.

        The iteration depends on neither the rate nor the momentum, so matrices of one shape
        from every group share it: fewer, larger kernels, which matters on GPUs.
        """
        results: list[list] = [[None] * len(params) for _, params, _ in pending]
        batches: dict[tuple, list] = {}
        for g, (group, _, updates) in enumerate(pending):
            name = group["ns_dtype"] or ("bfloat16" if updates[0].is_cuda else "float32")
            settings = (group["ns_steps"], tuple(group["ns_coefficients"]), group["eps"], _DTYPES[name])
            for i, update in enumerate(updates):
                matrix = update.reshape(len(update), -1)
                batches.setdefault((tuple(matrix.shape), update.device, *settings), []).append((g, i, matrix))
        for (_, _, steps, coefficients, eps, dtype), items in batches.items():
            if len(items) == 1:
                outputs = [zeropower_via_newtonschulz(items[0][2], steps, coefficients, eps, dtype)]
            else:
                stacked = torch.stack([matrix for _, _, matrix in items])
                outputs = zeropower_via_newtonschulz(stacked, steps, coefficients, eps, dtype).unbind(0)
            for (g, i, _), output in zip(items, outputs, strict=True):
                results[g][i] = output
        return results

    def _muon_apply(self, group: dict, params: list[torch.Tensor], updates: list[torch.Tensor]) -> None:
        """Decay, normalise (airbench) and step each weight along its orthogonalised update."""
        lr, decay, eps = float(group["lr"]), group["weight_decay"], group["eps"]
        if lr * decay != 0:
            torch._foreach_mul_(params, 1 - lr * decay)
        if group["normalize_weights"]:
            factors = torch._foreach_norm(params)
            torch._foreach_clamp_min_(factors, eps)
            torch._foreach_reciprocal_(factors)
            torch._foreach_mul_(factors, [math.sqrt(p.shape[0]) for p in params])
            torch._foreach_mul_(params, factors)
        steps = [update.view(p.shape).to(p.dtype) for p, update in zip(params, updates, strict=True)]
        rates = [_adjusted_lr(lr, group["adjust_lr_fn"], p.shape) for p in params]
        if len(set(rates)) == 1:
            torch._foreach_add_(params, steps, alpha=-rates[0])
        else:
            for p, step, rate in zip(params, steps, rates, strict=True):
                p.add_(step, alpha=-rate)

    def _sgd_step(self, group: dict, params: list[torch.Tensor]) -> None:
        """torch.optim.SGD's step (dampening 0) after decoupled decay, on foreach kernels."""
        lr, momentum, decay = float(group["lr"]), group["momentum"], group["weight_decay"]
        grads = [p.grad for p in params]
        if lr * decay != 0:
            torch._foreach_mul_(params, 1 - lr * decay)
        if momentum == 0:
            torch._foreach_add_(params, grads, alpha=-lr)
            return
        buffers = self._buffers(params)
        torch._foreach_mul_(buffers, momentum)
        torch._foreach_add_(buffers, grads)
        updates = torch._foreach_add(grads, buffers, alpha=momentum) if group["nesterov"] else buffers
        torch._foreach_add_(params, updates, alpha=-lr)
