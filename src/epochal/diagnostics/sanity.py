"""The sanity check: overfit one batch, and test the likely causes when anything is wrong.

:func:`sanity_check` runs every check of :data:`~epochal.diagnostics.report.CHECKS` on a learner:

* data: inputs and targets in equal numbers, labels not constant and related to the inputs (a
  permutation test), inputs normalised, no validation sample duplicated in training;
* model: some parameter trainable; one batch of training data, with augmentation and
  regularisation (weight decay, label smoothing, dropout, stochastic depth) off, overfit (loss near
  zero and accuracy 100%) within a bounded number of steps, with every trainable parameter
  receiving a gradient and outputs that are not dead;
* when the batch is not overfit, a short learning-rate sweep from the same starting weights tells
  whether the rate was too low, too high or diverging.

The whole check is a probe: weights, BatchNorm buffers, optimizer, callbacks, loop state and RNGs
are restored afterwards, also on error (:meth:`~epochal.learner.Learner.probe`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

from torch import nn

from epochal.diagnostics.batches import batch_count, collect, unaugmented
from epochal.diagnostics.data_checks import (
    data_label_count_check,
    duplicates_check,
    input_normalization_check,
    label_signal_check,
    labels_constant_check,
)
from epochal.diagnostics.overfit import (
    SWEEP_RATES,
    dead_outputs_check,
    dropout_modules,
    gradient_flow_check,
    lr_sweep_check,
    overfit_check,
    train_on_batch,
    trainable_check,
)
from epochal.diagnostics.report import CHECKS, Check, SanityReport
from epochal.utils import check_number, unknown_name_error

__all__ = ["sanity_check"]


def _check_loss(loss_fn: Callable) -> tuple[Callable, str | None]:
    """The loss to overfit with: label smoothing off (its floor is not zero)."""
    if isinstance(loss_fn, nn.CrossEntropyLoss) and loss_fn.label_smoothing > 0:
        plain = copy.deepcopy(loss_fn)
        plain.label_smoothing = 0.0
        return plain, f"label smoothing {loss_fn.label_smoothing:g} is off for the check (its loss cannot reach 0)"
    return loss_fn, None


def _dropout_note(model: nn.Module) -> str | None:
    kinds = sorted({type(m).__name__ for m in dropout_modules(model)})
    return f"{', '.join(kinds)} off for the check" if kinds else None


def _not_run(name: str, why: str) -> Check:
    return Check(name, None, None, f"not run: {why}")


def sanity_check(learner, batch_size: int | None = None, max_steps: int = 200, lr: float | None = None,
                 loss_target: float = 0.05, sweep_steps: int | None = None, sample_size: int = 2048,
                 skip: Iterable[str] = ()) -> SanityReport:
    """Overfit one batch and run the data and model checks; the learner is left exactly as it was.

    Args:
        learner: the :class:`~epochal.learner.Learner` to check (its model, loss, optimizer, data).
        batch_size: samples in the batch to overfit (default: the training loader's batch size).
        max_steps: steps after which the overfit gives up.
        lr: constant learning rate of the overfit (default: the learner's ``lr``).
        loss_target: the loss the batch must reach, with accuracy 1.0 (regression: this fraction
            of the first loss).
        sweep_steps: steps per rate of the learning-rate sweep (default ``max(10, max_steps // 4)``).
        sample_size: training samples used by the label and normalisation checks.
        skip: names of checks not to run (see :data:`~epochal.diagnostics.report.CHECKS`).

    Returns:
        A :class:`~epochal.diagnostics.report.SanityReport`; ``report.passed`` is False when any
        check failed.

    Raises:
        ValueError: for bad arguments, or a learner in a data-parallel job (the check is one process's).
    """
    world = learner.strategy.world
    if world.distributed:
        # the overfit trains the bare model on one rank's batch: replicas would part and probe() restore
        # only each rank's own copy; one process is the check's whole point anyway
        raise ValueError(f"sanity_check: runs in one process, but this learner is rank {world.rank} of a "
                         f"data-parallel job of {world.world_size}; run `epochal sanity` (or overfit_batch) "
                         "without torchrun/--nproc and with trainer.devices unset")
    skip = set(skip)
    for name in skip:
        if name not in CHECKS:
            raise unknown_name_error("sanity check", name, CHECKS)
    if max_steps < 1 or (batch_size is not None and batch_size < 1) or sample_size < 1:
        raise ValueError(f"sanity_check: max_steps ({max_steps}), batch_size ({batch_size}) and sample_size "
                         f"({sample_size}) must be >= 1")
    check_number(loss_target, "sanity_check loss_target", low=0.0, low_inclusive=False)
    lr = check_number(learner.lr if lr is None else lr, "sanity_check lr", low=0.0, low_inclusive=False)
    sweep_steps = sweep_steps or max(10, max_steps // 4)
    with learner.probe():
        return _run(learner, batch_size, max_steps, lr, loss_target, sweep_steps, sample_size, skip)


def _run(learner, batch_size, max_steps, lr, loss_target, sweep_steps, sample_size, skip) -> SanityReport:
    loader = learner.train_loader(None)
    plain, note = unaugmented(loader)
    loss_fn, loss_note = _check_loss(learner.loss_fn)
    n = batch_size or getattr(loader, "batch_size", None) or 64
    where = {"device": learner.device, "memory_format": learner.memory_format}
    checks: dict[str, Check] = {}

    def run(name: str, fn: Callable[[], Check]) -> Check:
        checks[name] = _not_run(name, "skipped") if name in skip else fn()
        return checks[name]

    count = run("data_label_count", lambda: data_label_count_check(plain))
    batch = collect(plain, n, **where)
    sample = collect(plain, sample_size, **where) if {"label_signal", "input_normalization"} - skip else batch
    targets = getattr(loader, "targets", None)
    if getattr(loader, "reconstruct", False):  # an autoencoder's data: there are no labels to check
        for name in ("labels_constant", "label_signal"):
            checks[name] = _not_run(name, "the targets are the inputs (a model that reconstructs them)")
    else:
        run("labels_constant", lambda: labels_constant_check(targets if targets is not None else sample[1]))
        run("label_signal", lambda: label_signal_check(*sample))
    run("input_normalization", lambda: input_normalization_check(sample[0]))
    run("duplicates", lambda: duplicates_check(loader, learner.data.valid))
    trainable = run("trainable", lambda: trainable_check(learner.model))
    blocked = ("the inputs and targets are misaligned" if count.passed is False
               else "the model has no trainable parameter" if trainable.passed is False else None)
    if blocked or "overfit" in skip:
        for name in ("overfit", "gradient_flow", "dead_outputs", "lr_sweep"):
            checks[name] = _not_run(name, blocked or "the overfit is skipped")
    else:
        _overfit(learner, batch, loss_fn, lr, max_steps, loss_target, sweep_steps, run)
    settings = {"batch_size": batch_count(batch[1]), "max_steps": max_steps, "lr": lr, "loss_target": loss_target,
                "sweep_steps": sweep_steps, "sample_size": batch_count(sample[1]),
                "notes": [text for text in (note, loss_note, _dropout_note(learner.model)) if text]}
    return SanityReport([checks[name] for name in CHECKS], settings)


def _overfit(learner, batch, loss_fn, lr, max_steps, loss_target, sweep_steps, run) -> None:
    """The overfit and its model-side checks, each training run from the same starting weights."""
    try:
        with learner.probe():
            result = train_on_batch(learner, batch, loss_fn, lr, max_steps, loss_target)
            run("dead_outputs", lambda: dead_outputs_check(learner, batch[0]))
    except Exception as exc:  # a loss or forward pass that cannot run at all is the finding
        message = f"training on one batch raised {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        run("overfit", lambda: Check("overfit", False, {"error": message}, message))
        for name in ("gradient_flow", "dead_outputs", "lr_sweep"):
            run(name, lambda name=name: _not_run(name, "the overfit raised an error"))
        return
    run("overfit", lambda: overfit_check(result, batch_count(batch[1]), loss_target))
    run("gradient_flow", lambda: gradient_flow_check(result))
    if result.reached:
        run("lr_sweep", lambda: _not_run("lr_sweep", "the batch was overfit"))
        return

    def sweep() -> Check:
        runs = {}
        for rate in SWEEP_RATES:
            with learner.probe():
                runs[rate] = train_on_batch(learner, batch, loss_fn, rate, sweep_steps, loss_target)
        return lr_sweep_check(result, runs, sweep_steps)

    run("lr_sweep", sweep)
