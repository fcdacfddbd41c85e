"""Weight averaging and ensembles: the parts SWA, EMA and snapshot ensembles share.

Kept separate and composable, as in ``torch.optim.swa_utils``:

- :mod:`~epochal.averaging.rules`: how an average takes in one more snapshot (equal-weight running
  mean; exponential with decay and warm-up);
- :mod:`~epochal.averaging.weights`: an averaged copy of a model's parameters and buffers, swapped
  into the model for an evaluation and restored afterwards;
- :mod:`~epochal.averaging.batchnorm`: BatchNorm recalibration for averaged weights;
- :mod:`~epochal.averaging.ensemble`: several models' predictions combined with weights.

The callbacks that drive them during training are :class:`~epochal.callbacks.swa.SWA`,
:class:`~epochal.callbacks.ema.EMA` and
:class:`~epochal.callbacks.snapshot_ensemble.SnapshotEnsemble`.
"""

from epochal.averaging.batchnorm import augmentation, batch_norms, cumulative_statistics, recalibrate_bn
from epochal.averaging.ensemble import COMBINES, Ensemble, combine_outputs, fit_weights, normalise_weights
from epochal.averaging.rules import AveragingRule, EqualMean, ExponentialMean
from epochal.averaging.weights import AveragedWeights

__all__ = [
    "COMBINES",
    "AveragedWeights",
    "AveragingRule",
    "Ensemble",
    "EqualMean",
    "ExponentialMean",
    "augmentation",
    "batch_norms",
    "combine_outputs",
    "cumulative_statistics",
    "fit_weights",
    "normalise_weights",
    "recalibrate_bn",
]
