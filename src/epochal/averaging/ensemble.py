"""Ensembles: several models' predictions averaged with weights (equal, given, or fitted).

Snapshot ensembles (Huang et al., *Snapshot Ensembles: Train 1, get M for free*, ICLR 2017) and
fast geometric ensembles (Garipov et al., *Loss Surfaces, Mode Connectivity, and Fast Ensembling
of DNNs*, NeurIPS 2018) average the predictions of checkpoints of one run; weighted ensembles of
different runs or models are the staple of competitions. :class:`Ensemble` is an ``nn.Module``
over member modules, so it plugs in wherever a model does (``Learner.validate``, ``predict``,
test-time augmentation). How members are combined:

* ``"probs"`` (default): the weighted mean of the members' softmax probabilities; the module
  returns its logarithm, ``log sum_k w_k softmax(z_k)``, so cross-entropy, accuracy and
  ``softmax`` work on it unchanged (the softmax of log-probabilities is the probabilities);
* ``"logits"``: the weighted mean of the raw outputs (also for regression);
* ``"sigmoid"``: the weighted mean of sigmoid probabilities (multi-label), returned as logits.

Fitted weights minimise the held-out loss of the combination over the probability simplex:
``w = softmax(theta)``, ``theta`` found by L-BFGS from equal weights (Caruana et al.'s ensemble
selection does the same with greedy steps; a smooth parametrisation makes it a small convex-ish
problem that converges in a few dozen evaluations).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from epochal.utils import to_device, unknown_name_error

__all__ = ["COMBINES", "Ensemble", "combine_outputs", "fit_weights", "normalise_weights"]

#: How member outputs are combined.
COMBINES: tuple[str, ...] = ("probs", "logits", "sigmoid")


def normalise_weights(weights: Sequence[float] | torch.Tensor | None, n: int) -> torch.Tensor:
    """``n`` non-negative weights summing to 1 (None: equal); errors name the bad value."""
    if weights is None:
        return torch.full((n,), 1.0 / n, dtype=torch.float64)
    values = torch.as_tensor(weights, dtype=torch.float64).flatten()
    if values.numel() != n:
        raise ValueError(f"ensemble weights: {values.numel()} weights for {n} members; give one per member")
    if not torch.isfinite(values).all() or (values < 0).any() or values.sum() <= 0:
        raise ValueError(f"ensemble weights must be finite, >= 0 and not all 0, got {values.tolist()}")
    return values / values.sum()


def combine_outputs(outputs: Sequence[torch.Tensor], weights: torch.Tensor, combine: str = "probs") -> torch.Tensor:
    """Combine the members' outputs ``(N, C)`` with ``weights`` ``(K,)`` (see the module docstring)."""
    if combine not in COMBINES:
        raise unknown_name_error("ensemble combine", combine, COMBINES)
    stacked = torch.stack([o.float() for o in outputs])  # (K, N, C)
    w = weights.to(stacked.device, stacked.dtype).view(-1, *([1] * (stacked.ndim - 1)))
    if combine == "logits":
        return (w * stacked).sum(0)
    if combine == "probs":
        return torch.logsumexp(torch.log(w) + stacked.log_softmax(dim=-1), dim=0)
    probs = (w * stacked.sigmoid()).sum(0).clamp(1e-7, 1 - 1e-7)
    return torch.log(probs) - torch.log1p(-probs)


def _default_loss(combine: str) -> Callable:
    return F.binary_cross_entropy_with_logits if combine == "sigmoid" else F.cross_entropy


def fit_weights(outputs: Sequence[torch.Tensor], targets: torch.Tensor, combine: str = "probs",
                loss: Callable | None = None, max_iter: int = 100) -> torch.Tensor:
    """Weights on the simplex that minimise ``loss(combine_outputs(outputs, w), targets)``.

    Args:
        outputs: each member's outputs on the same held-out samples, ``(N, C)``.
        targets: the held-out targets.
        combine: see :data:`COMBINES`.
        loss: the loss to minimise (default: cross-entropy, binary cross-entropy for ``sigmoid``).
        max_iter: L-BFGS iterations.

    Returns:
        ``(K,)`` float64 weights summing to 1.
    """
    if len(outputs) < 2:
        return normalise_weights(None, len(outputs))
    loss = loss or _default_loss(combine)
    outputs = [o.detach().double().cpu() for o in outputs]
    targets = targets.detach().cpu()
    if targets.is_floating_point():
        targets = targets.double()
    theta = torch.zeros(len(outputs), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([theta], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        value = loss(combine_outputs(outputs, theta.softmax(0), combine).double(), targets)
        value.backward()
        return value

    optimizer.step(closure)
    weights = theta.detach().softmax(0)
    if not torch.isfinite(weights).all():
        raise RuntimeError("fitting the ensemble weights diverged; use equal or given weights")
    return weights


class Ensemble(nn.Module):
    """Several models whose predictions are combined with weights.

    Args:
        members: the member modules (in eval mode for evaluation, as any model).
        weights: one non-negative weight per member (normalised to sum to 1); None: equal.
        combine: ``"probs"``, ``"logits"`` or ``"sigmoid"`` (see the module docstring).

    Examples:
        >>> ensemble = Ensemble([model_a, model_b, model_c])
        >>> ensemble.fit_weights(valid_loader)              # held-out log loss, weights on the simplex
        >>> Learner(ensemble, data, metrics=["accuracy"]).validate()
    """

    def __init__(self, members: Sequence[nn.Module], weights: Sequence[float] | None = None, combine: str = "probs"):
        super().__init__()
        if not members:
            raise ValueError("an Ensemble needs at least one member")
        if combine not in COMBINES:
            raise unknown_name_error("ensemble combine", combine, COMBINES)
        self.members = nn.ModuleList(members)
        self.combine = combine
        self.register_buffer("weights", normalise_weights(weights, len(members)).float())

    def set_weights(self, weights: Sequence[float] | torch.Tensor | None) -> None:
        """Replace the weights (normalised; None: equal)."""
        self.weights.copy_(normalise_weights(weights, len(self.members)).to(self.weights))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return combine_outputs([member(*inputs) for member in self.members], self.weights, self.combine)

    @torch.no_grad()
    def member_outputs(self, data: Iterable) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Each member's outputs on every batch of ``data`` (on the CPU) and the targets."""
        device = self.weights.device
        outputs: list[list[torch.Tensor]] = [[] for _ in self.members]
        targets = []
        self.eval()
        batches = data.iter_epoch(0) if hasattr(data, "iter_epoch") else iter(data)
        for inputs, target in batches:
            inputs = to_device(inputs, device)
            inputs = inputs if isinstance(inputs, tuple) else (inputs,)
            for k, member in enumerate(self.members):
                outputs[k].append(member(*inputs).float().cpu())
            targets.append(target.cpu())
        return [torch.cat(o) for o in outputs], torch.cat(targets)

    def fit_weights(self, data: Iterable, loss: Callable | None = None, max_iter: int = 100) -> torch.Tensor:
        """Fit the weights on held-out ``data`` (see :func:`fit_weights`), set and return them."""
        outputs, targets = self.member_outputs(data)
        weights = fit_weights(outputs, targets, self.combine, loss, max_iter)
        self.set_weights(weights)
        return weights

    def extra_repr(self) -> str:
        weights = ", ".join(f"{w:.3f}" for w in self.weights.tolist())
        return f"combine={self.combine!r}, weights=[{weights}]"

