"""The one list of training-loop events and the cancel exceptions.

Every level of the loop (fit, phase, epoch, train/validate, batch and the steps inside a batch)
is wrapped the same way: ``before_<level>``, the work, ``after_<level>``; when a callback raises
the cancel exception for that level, ``after_cancel_<level>`` runs and then ``after_<level>``
still runs, so cleanup code always has a place to live.

``after_log`` is the one event that is not a pair: it fires every ``log_every`` optimizer steps
and at the end of each training epoch, after the learner has read its running values back from
the device once (``learner.running``). Callbacks that show or record per-step values use it, so
that nothing else in the batch loop waits for the device.
"""

from __future__ import annotations

__all__ = [
    "EVENTS",
    "CancelBackward",
    "CancelBatch",
    "CancelEpoch",
    "CancelFit",
    "CancelStep",
    "CancelTrain",
    "CancelValidate",
]

#: Every event a callback may implement, in the order they first occur in a fit.
EVENTS: tuple[str, ...] = (
    "before_fit",
    "before_phase",
    "before_epoch",
    "before_train",
    "before_batch",
    "before_forward",
    "after_forward",
    "before_loss",
    "after_loss",
    "before_backward",
    "after_backward",
    "before_step",
    "after_step",
    "after_cancel_backward",
    "after_cancel_step",
    "after_log",
    "after_batch",
    "after_cancel_batch",
    "after_train",
    "after_cancel_train",
    "before_validate",
    "after_validate",
    "after_cancel_validate",
    "after_epoch",
    "after_cancel_epoch",
    "after_phase",
    "after_fit",
    "after_cancel_fit",
)


class CancelFit(Exception):
    """Stop training cleanly: ``after_cancel_fit`` then ``after_fit`` run."""


class CancelEpoch(Exception):
    """Skip the rest of the current epoch (no validation for it)."""


class CancelTrain(Exception):
    """Skip the rest of the training part of the epoch; validation still runs."""


class CancelValidate(Exception):
    """Skip the rest of validation."""


class CancelBatch(Exception):
    """Skip the rest of the current batch (no backward or step for it)."""


class CancelBackward(Exception):
    """Skip the backward pass of the current batch."""


class CancelStep(Exception):
    """Skip the optimizer step of the current batch (gradients are still zeroed)."""
