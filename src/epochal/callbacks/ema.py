"""EMA: an exponential moving average of the weights, updated on the device every few steps.

Polyak and Juditsky's averaging with exponential weights (*Acceleration of Stochastic Approximation
by Averaging*, 1992), as used by Tan & Le's EfficientNet, timm's ``ModelEmaV2`` and most modern
recipes: after every ``update_every``-th optimizer step,

    ema <- d * ema + (1 - d) * weights,   d = decay, or min(decay, (1 + n) / (10 + n)) with warm-up

(``n``: updates so far; the warm-up of TensorFlow's ``ExponentialMovingAverage(num_updates=...)``
keeps the first averages close to the weights instead of to the random initialisation). The
update is one ``torch._foreach_lerp_`` over the parameters (and floating-point buffers), launched
on the model's device; ``d`` is computed on the host from the update count, so nothing is read
back from the device. It works unchanged with ``compile`` (the compiled module's tensors are the
model's own), mixed precision (the fp32 weights are averaged) and gradient accumulation (updates
count optimizer steps, not micro-batches).

Evaluation: after every validation of the live model the EMA weights are validated too, logged as
``valid_ema/<metric>`` beside ``valid/<metric>`` (so either can be monitored and both are in the
history): the EMA weights are copied into the model for the pass and the live weights put back
afterwards. BatchNorm buffers are averaged with the weights by default; ``bn_update=True``
recalibrates them for the EMA weights instead (one pass over the training data per evaluation).
Checkpoints hold the EMA tensors and the update count, so a resumed run continues exactly. At the
end of the fit the model holds the EMA weights (``final=True``) and the run folder gets
``checkpoints/ema.pt``.
"""

from __future__ import annotations

from typing import Any

from epochal.averaging import ExponentialMean
from epochal.callbacks.weight_averaging import WeightAveraging

__all__ = ["EMA"]


class EMA(WeightAveraging):
    """Exponential moving average of the weights, evaluated as ``valid_ema/<metric>``.

    Args:
        decay: the weight the average keeps at each update (0.999 ~ an average over the last
            1,000 updates; 0.9999 for long ImageNet runs).
        warmup: use ``min(decay, (1 + n) / (10 + n))`` at the ``n``-th update.
        update_every: optimizer steps between updates (the effective decay per step is
            ``decay ** (1 / update_every)``).
        average_buffers: average floating-point buffers (BatchNorm statistics) too; False copies
            them from the model at every update.
        bn_update: recalibrate BatchNorm statistics for the EMA weights before each evaluation and at
            the end (a pass over the training data), instead of trusting the averaged ones.
        bn_augment: keep the training loader's augmentation on during that pass.
        bn_batches: batches of that pass (None: the whole training loader).
        final: leave the EMA weights in the model (and ``checkpoints/ema.pt``) at the end.

    Examples:
        >>> ema = EMA(decay=0.999, warmup=True)
        >>> Learner(model, data, metrics=["accuracy"], callbacks=[ema]).fit(one_cycle(10, 0.1))
        >>> ema.averaged.n_averaged          # one update per optimizer step
    """

    kind = "ema"

    def __init__(self, decay: float = 0.999, warmup: bool = True, update_every: int = 1,
                 average_buffers: bool = True, bn_update: bool = False, bn_augment: bool = True,
                 bn_batches: int | None = None, final: bool = True):
        if isinstance(update_every, bool) or not isinstance(update_every, int) or update_every < 1:
            raise ValueError(f"EMA: update_every must be an int >= 1 (optimizer steps), got {update_every!r}")
        super().__init__(ExponentialMean(decay, warmup=warmup), average_buffers=average_buffers,
                         bn_update=bn_update, bn_augment=bn_augment, bn_batches=bn_batches, final=final)
        self.update_every = update_every

    def update_due(self, step: int) -> bool:
        return step % self.update_every == 0

    def keeps_calibration(self) -> bool:
        return False  # the average moves every few steps: recalibrated statistics are for one evaluation

    def description(self) -> dict[str, Any]:
        return {**super().description(), "update_every": self.update_every}
