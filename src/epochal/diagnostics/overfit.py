"""Overfitting one batch, and the model-side causes of failing to: the learning rate, missing
gradients, dead outputs.

"Overfit a single batch" is Karpathy's first step in "A Recipe for Training Neural Networks"
(2019): with augmentation and regularisation off, a correct model, loss and optimizer drive the
loss of one small batch to (near) zero and its accuracy to 100% within a few hundred steps. When
they do not, something is broken before any hyperparameter matters. The functions here train in
place; :func:`~epochal.diagnostics.sanity_check` wraps them in the learner's transactional
snapshot, so the learner is left exactly as it was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from epochal.diagnostics.report import Check
from epochal.optim import build_optimizer, param_groups

__all__ = [
    "SWEEP_RATES",
    "OverfitRun",
    "batch_accuracy",
    "dead_outputs_check",
    "dropout_modules",
    "gradient_flow_check",
    "lr_sweep_check",
    "overfit_check",
    "train_on_batch",
    "train_without_dropout",
    "trainable_check",
]

#: Learning rates of the short sweep run when the batch was not overfit.
SWEEP_RATES: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
_RELU = (nn.ReLU, nn.ReLU6)
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def dropout_modules(model: nn.Module) -> list[nn.Module]:
    """The dropout and stochastic-depth (``DropPath``) modules of ``model`` that drop anything."""
    return [m for m in model.modules() if (isinstance(m, _DROPOUT) or type(m).__name__ == "DropPath")
            and getattr(m, "p", getattr(m, "rate", 1.0)) > 0]


def train_without_dropout(model: nn.Module) -> None:
    """Training mode (BatchNorm uses batch statistics) with dropout and stochastic depth off:
    regularisation that keeps a network from fitting one batch exactly."""
    model.train()
    for module in dropout_modules(model):
        module.eval()


@dataclass
class OverfitRun:
    """What training on one batch did: the loss and accuracy per step, and where gradients went."""

    lr: float
    losses: list[float] = field(default_factory=list)
    accuracies: list[float | None] = field(default_factory=list)
    reached: bool = False
    without_gradient: list[str] = field(default_factory=list)
    nonfinite_gradient: list[str] = field(default_factory=list)

    @property
    def diverged(self) -> bool:
        """A non-finite loss, or a last loss above the first (after at least a few steps)."""
        return any(not math.isfinite(v) for v in self.losses) or (
            len(self.losses) >= 5 and self.losses[-1] > self.losses[0])

    def loss_at(self, step: int) -> float:
        return self.losses[min(step, len(self.losses)) - 1]


def batch_accuracy(pred: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
    """Share of samples predicted right: argmax for class indices, every label for multi-hot rows."""
    pred = pred.detach().float()
    if targets.ndim == 1 and not targets.is_floating_point() and pred.ndim == 2 and pred.shape[1] > 1:
        return (pred.argmax(dim=1) == targets).float().mean()
    if targets.is_floating_point() and targets.shape == pred.shape and pred.ndim == 2 and pred.shape[1] > 1:
        return ((pred > 0) == (targets > 0.5)).all(dim=1).float().mean()
    return None  # regression: the loss alone decides


def _call(model: nn.Module, inputs):
    return model(*inputs) if isinstance(inputs, tuple) else model(inputs)


def _clip(learner, scaler, optimizer, params) -> None:
    if learner.clip_grad_norm is None and learner.clip_grad_value is None:
        return
    scaler.unscale_(optimizer)
    grads = [p for p in params if p.grad is not None]
    if learner.clip_grad_value is not None:
        nn.utils.clip_grad_value_(grads, learner.clip_grad_value)
    if learner.clip_grad_norm is not None:
        nn.utils.clip_grad_norm_(grads, learner.clip_grad_norm)


def train_on_batch(learner, batch, loss_fn, lr: float, max_steps: int, loss_target: float,
                   grad_steps: int = 3) -> OverfitRun:
    """Train ``learner.model`` in place on one batch at a constant ``lr`` (no weight decay, no dropout).

    Stops when the batch is fit (accuracy 1 and loss <= ``loss_target``; for regression, loss <=
    ``loss_target`` times the first loss), when the loss is no longer finite, or after
    ``max_steps``. Gradients of the first ``grad_steps`` steps are summed to find parameters that
    get none (a zero-initialised layer gets its first gradient at step two).
    """
    model = learner.model
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("train_on_batch: the model has no trainable parameter")
    optimizer = build_optimizer(learner.optimizer_spec, param_groups(model, weight_decay=0.0, lr=lr))
    scaler = torch.amp.GradScaler(learner.device.type, enabled=learner.precision == "fp16")
    inputs, targets = batch
    run = OverfitRun(lr)
    seen = torch.zeros(len(named), device=learner.device)
    train_without_dropout(model)
    for step in range(max_steps):
        with learner.autocast():
            pred = _call(model, inputs)
            loss = loss_fn(pred, targets)
        scaler.scale(loss).backward()
        if step < grad_steps:
            seen += torch.stack([p.grad.detach().float().abs().sum() if p.grad is not None
                                 else torch.zeros((), device=learner.device) for _, p in named])
        _clip(learner, scaler, optimizer, [p for _, p in named])
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        accuracy = batch_accuracy(pred, targets)
        run.losses.append(float(loss.detach()))  # a probe, not the hot loop: one read per step is the point
        run.accuracies.append(None if accuracy is None else float(accuracy))
        target = loss_target if accuracy is not None else loss_target * run.losses[0]
        if not math.isfinite(run.losses[-1]):
            break
        if run.losses[-1] <= target and (accuracy is None or run.accuracies[-1] == 1.0):
            run.reached = True
            break
    totals = seen.tolist()
    run.without_gradient = [n for (n, _), t in zip(named, totals) if t == 0]
    run.nonfinite_gradient = [n for (n, _), t in zip(named, totals) if not math.isfinite(t)]
    return run


def _trend(run: OverfitRun) -> str:
    accuracy = run.accuracies[-1]
    shown = "" if accuracy is None else f", batch accuracy {run.accuracies[0]:.2f} -> {accuracy:.2f}"
    return f"loss {run.losses[0]:.4g} -> {run.losses[-1]:.4g}{shown} in {len(run.losses)} steps"


def overfit_check(run: OverfitRun, batch_size: int, loss_target: float) -> Check:
    value = {"steps": len(run.losses), "first_loss": run.losses[0], "last_loss": run.losses[-1],
             "min_loss": min(run.losses), "accuracy": run.accuracies[-1], "lr": run.lr}
    if run.reached:
        return Check("overfit", True, value, f"overfit one batch of {batch_size}: {_trend(run)}")
    goal = (f"loss <= {loss_target:g} x the first loss" if run.accuracies[-1] is None  # regression, reconstruction
            else f"loss <= {loss_target:g} and accuracy 1.0")
    return Check("overfit", False, value,
                 f"could not overfit one batch of {batch_size} ({_trend(run)}; target {goal}): "
                 "see the checks below for causes")


def _layers(names: list[str], shown: int = 6) -> str:
    text = ", ".join(names[:shown])
    return text + (f" and {len(names) - shown} more" if len(names) > shown else "")


def gradient_flow_check(run: OverfitRun) -> Check:
    """Every trainable parameter got a finite, non-zero gradient in the first steps."""
    value = {"without_gradient": run.without_gradient, "nonfinite_gradient": run.nonfinite_gradient}
    if run.without_gradient:
        return Check("gradient_flow", False, value,
                     f"no gradient reaches {_layers(run.without_gradient)}: these parameters are unused in the "
                     "forward pass, cut off by a detach()/no_grad, or behind a dead activation")
    if run.nonfinite_gradient:
        return Check("gradient_flow", False, value,
                     f"non-finite gradients in {_layers(run.nonfinite_gradient)}: the loss or the learning rate "
                     "blows up (see lr_sweep)")
    return Check("gradient_flow", True, value, "every trainable parameter gets a gradient")


def trainable_check(model: nn.Module) -> Check:
    """The model has parameters that the optimizer may change."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    value = {"trainable": trainable, "total": total}
    if trainable == 0:
        return Check("trainable", False, value,
                     f"the model is frozen: none of its {total:,} parameters requires a gradient "
                     "(call learner.unfreeze() or check requires_grad)")
    frozen = f" ({total - trainable:,} frozen)" if trainable < total else ""
    return Check("trainable", True, value, f"{trainable:,} trainable parameters{frozen}")


@torch.no_grad()
def dead_outputs_check(learner, inputs) -> Check:
    """The outputs depend on the input, and no ReLU layer is zero for the whole batch."""
    model = learner.model
    dead: dict[str, list[float]] = {}

    def hook(name):
        def record(module, args, output):
            if output.ndim < 2:
                return
            alive = output.detach().reshape(output.shape[0], output.shape[1], -1).ne(0).any(dim=2).any(dim=0)
            dead.setdefault(name, []).append(float(1.0 - alive.float().mean()))
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if isinstance(m, _RELU)]
    try:
        with learner.autocast():
            pred = _call(model, inputs).float()
    finally:
        for handle in handles:
            handle.remove()
    spread = float(pred.reshape(len(pred), -1).std(dim=0).max()) if len(pred) > 1 else float("nan")
    all_dead = sorted(n for n, fractions in dead.items() if max(fractions) >= 1.0)
    value = {"logit_spread": spread, "dead_relu_layers": all_dead,
             "dead_fraction": {n: max(f) for n, f in dead.items()}}
    if spread == spread and spread <= 1e-6 * (1.0 + float(pred.abs().max())):
        return Check("dead_outputs", False, value,
                     f"the outputs are the same for every input (largest spread over the batch {spread:.2g}): "
                     + (f"the ReLU layers {_layers(all_dead)} output zero for the whole batch" if all_dead
                        else "the output layer is saturated or cut off from the input"))
    if all_dead:
        return Check("dead_outputs", False, value,
                     f"dead ReLUs: {_layers(all_dead)} output zero for the whole batch, so no gradient passes "
                     "(a too-high learning rate or a large negative bias)")
    return Check("dead_outputs", True, value, f"outputs vary with the input (spread {spread:.3g})")


def lr_sweep_check(run: OverfitRun, sweep: dict[float, OverfitRun], steps: int) -> Check:
    """Whether another learning rate trains the batch clearly better than the one used."""
    finals = {rate: r.losses[-1] for rate, r in sweep.items()}
    usable = {rate: loss for rate, loss in finals.items() if math.isfinite(loss) and not sweep[rate].diverged}
    value = {"lr": run.lr, "steps": steps, "sweep": [[rate, loss] for rate, loss in finals.items()]}
    if not usable:
        return Check("lr_sweep", False, value | {"best_lr": None},
                     f"every rate from {min(sweep):g} to {max(sweep):g} diverges or stalls in {steps} steps: "
                     "the problem is not the learning rate (see the other checks)")
    best = min(usable, key=usable.get)
    value["best_lr"] = best
    own = run.loss_at(steps)
    found = f"at lr {best:g} the loss reached {usable[best]:.4g} in {steps} steps"
    if run.diverged:
        return Check("lr_sweep", False, value,
                     f"lr {run.lr:g} diverges ({_trend(run)}); {found}: lower the learning rate")
    if usable[best] < 0.5 * own and best > run.lr:
        return Check("lr_sweep", False, value,
                     f"lr {run.lr:g} is too low (loss {own:.4g} after {steps} steps); {found}: raise it")
    if usable[best] < 0.5 * own and best < run.lr:
        return Check("lr_sweep", False, value,
                     f"lr {run.lr:g} is too high (loss {own:.4g} after {steps} steps); {found}: lower it")
    return Check("lr_sweep", True, value,
                 f"no rate of the sweep does clearly better than lr {run.lr:g} ({found}): the rate is not the cause")
