"""WeightAveraging: what SWA and EMA share, the base of :class:`~epochal.callbacks.swa.SWA` and
:class:`~epochal.callbacks.ema.EMA`.

An averaged copy of the weights (:class:`~epochal.averaging.AveragedWeights`) is updated at points
the subclass chooses, evaluated after every validation of the live model, and becomes the model's
final weights when the fit ends. The evaluation is transactional (STYLE habit 6): the averaged
weights are copied into the model, BatchNorm is recalibrated for them when asked, the learner's
own validation level runs (``Learner.validate(prefix="valid_<kind>")``, so every callback sees
its events and the metrics' directions are recorded), and the live weights, BatchNorm buffers,
module modes and every random generator are put back afterwards, also on error. Restoring the
generators means the averaged evaluation never changes the live training trajectory: a run with
SWA follows, step for step, the run without it.

Files and checkpoints: every checkpoint holds the averaged tensors and their update count (the
callback's state), so a resumed run continues the same average bit for bit. At the end of a fit
that did not fail, the averaged weights are copied into the model and written to
``<run>/checkpoints/<kind>.pt``, and ``summary.json`` says so under ``final_weights``.

Data-parallel training (:mod:`epochal.distributed`): every rank keeps the same average (DDP keeps
the replicas identical), the BatchNorm recalibration passes over each rank's share of the
training data and then averages the statistics over the ranks
(:func:`~epochal.distributed.average_batchnorm_statistics`), and rank 0 alone writes the file.
"""

from __future__ import annotations

import contextlib
from typing import Any

from epochal.averaging import AveragedWeights, AveragingRule, recalibrate_bn
from epochal.callbacks.base import Callback
from epochal.distributed import average_batchnorm_statistics
from epochal.state import capture_rng, restore_rng, save_checkpoint

__all__ = ["WeightAveraging"]


class WeightAveraging(Callback):
    """Base class of the weight-averaging callbacks (not used directly).

    Args:
        rule: the averaging rule.
        average_buffers: average floating-point buffers too, or copy them at every update.
        bn_update: recalibrate BatchNorm statistics for the averaged weights before evaluating them.
        bn_augment: keep the training loader's augmentation on during the recalibration pass.
        bn_batches: batches of the recalibration pass (None: the whole training loader).
        final: make the averaged weights the model's final weights at the end of the fit.

    Attributes:
        averaged: the :class:`~epochal.averaging.AveragedWeights` (None before the first fit).
        kind: ``"swa"`` or ``"ema"``; names the logged keys (``valid_<kind>/...``) and the file.
    """

    order = 50  # updates before ModelCheckpoint (100) saves, final weights before RunLogger (90) and EarlyStopping (95)
    kind = "averaged"

    def __init__(self, rule: AveragingRule, average_buffers: bool, bn_update: bool, bn_augment: bool,
                 bn_batches: int | None, final: bool):
        if bn_batches is not None and (not isinstance(bn_batches, int) or bn_batches < 1):
            raise ValueError(f"{type(self).__name__}: bn_batches must be None or an int >= 1, got {bn_batches!r}")
        self.rule, self.average_buffers = rule, average_buffers
        self.bn_update, self.bn_augment, self.bn_batches = bool(bn_update), bool(bn_augment), bn_batches
        self.final = bool(final)
        self.averaged: AveragedWeights | None = None
        self.final_checkpoint: str | None = None
        self._calibrated_at: int | None = None  # n_averaged when BatchNorm was last recalibrated for it
        self._in_fit = self._evaluating = False
        self._seen_step = 0

    @property
    def prefix(self) -> str:
        """The key prefix of the averaged model's validation metrics."""
        return f"valid_{self.kind}"

    # ----------------------------------------------------------------- fit
    def before_fit(self) -> None:
        learner = self.learner
        self._check_conflicts()
        if learner.state.step == 0 or self.averaged is None:  # a new fit (a resumed one was loaded)
            self.averaged = AveragedWeights(learner.model, self.rule, self.average_buffers)
            self._calibrated_at, self.final_checkpoint = None, None
        self._seen_step = learner.state.step
        self._in_fit = True

    def after_batch(self) -> None:
        step = self.learner.state.step
        if not self.learner.training or step == self._seen_step:
            return  # validation, or a micro-batch of gradient accumulation: no optimizer step ended
        self._seen_step = step
        if self.update_due(step):
            self.update()

    def update_due(self, step: int) -> bool:
        """Whether the optimizer step ``step`` (1-based count) ends with an update."""
        raise NotImplementedError

    def update(self) -> None:
        """Fold the model's current weights into the average."""
        self.averaged.update(self.learner.model)

    def after_validate(self) -> None:
        if self._in_fit and not self._evaluating:
            self.evaluate()

    def after_fit(self) -> None:
        self._in_fit = False
        if getattr(self.learner, "error", None) is None and self.final and self.averaged is not None \
                and self.averaged.n_averaged > 0:
            self.use_averaged_weights()

    # ----------------------------------------------------------------- evaluation
    @contextlib.contextmanager
    def _transaction(self):
        """Live weights, buffers, module modes and RNGs as they were after the block, also on error."""
        model = self.learner.model
        modes = [(m, m.training) for m in model.modules()]
        rng = capture_rng()
        try:
            with self.averaged.swapped_into(model):
                yield model
        finally:
            for module, mode in modes:
                module.training = mode
            restore_rng(rng)

    def recalibrate(self) -> int:
        """Recompute the BatchNorm statistics of the model as it is now, on the current phase's training data."""
        learner = self.learner
        phases = getattr(learner, "phases", None)
        loader = learner.train_loader(phases[learner.state.phase] if phases else None)
        seen = recalibrate_bn(learner.model, loader, augment=self.bn_augment, max_batches=self.bn_batches,
                              device=learner.device, memory_format=learner.memory_format, autocast=learner.autocast)
        # in a data-parallel job each rank passed over its own share: the statistics of all the shares
        # together are those of one pass over the whole training set (a no-op for one process)
        average_batchnorm_statistics(learner.model)
        return seen

    def keeps_calibration(self) -> bool:
        """Whether recalibrated statistics are stored in the average (they stay valid until it changes)."""
        return not self.average_buffers

    def _calibrate_swapped(self) -> None:
        if not self.bn_update or self._calibrated_at == self.averaged.n_averaged:
            return
        self.recalibrate()
        if self.keeps_calibration():
            self.averaged.take_buffers(self.learner.model)
            self._calibrated_at = self.averaged.n_averaged

    def evaluate(self) -> dict[str, float]:
        """Validate the averaged weights (``valid_<kind>/...``), merged into the epoch's metrics; returns them.

        Before the first update the averaged model is the live model, so its values are the live
        model's (copied, not evaluated twice); monitors of ``valid_<kind>/...`` have a value from the
        first epoch on.
        """
        learner = self.learner
        saved = dict(learner.epoch_metrics)
        if self.averaged is None or self.averaged.n_averaged == 0:
            metrics = {f"{self.prefix}/{k.split('/', 1)[1]}": v for k, v in saved.items() if k.startswith("valid/")}
            for key in metrics:
                learner.metric_directions[key] = learner.metric_directions.get(f"valid/{key.split('/', 1)[1]}", False)
        else:
            self._evaluating = True
            try:
                with self._transaction():
                    self._calibrate_swapped()
                    metrics = learner.validate(prefix=self.prefix)
            finally:
                self._evaluating = False
        learner.epoch_metrics = {**saved, **metrics}
        return metrics

    # ----------------------------------------------------------------- final weights
    def use_averaged_weights(self) -> None:
        """Make the averaged (and, with ``bn_update``, recalibrated) weights the model's own; write ``<kind>.pt``."""
        learner = self.learner
        rng = capture_rng()
        try:
            self.averaged.copy_to(learner.model)
            if self.bn_update and self._calibrated_at != self.averaged.n_averaged:
                modes = [(m, m.training) for m in learner.model.modules()]
                self.recalibrate()
                for module, mode in modes:
                    module.training = mode
        finally:
            restore_rng(rng)
        if learner.run_dir is not None:
            path = learner.run_dir / "checkpoints" / f"{self.kind}.pt"
            if learner.is_main:  # every rank holds the same averaged weights: rank 0 alone writes them
                path.parent.mkdir(parents=True, exist_ok=True)
                state = {k: v.detach().clone() for k, v in learner.model.state_dict().items()}
                save_checkpoint(path, {"model": state, "averaging": self.description()})
            self.final_checkpoint = str(path.relative_to(learner.run_dir))

    def description(self) -> dict[str, Any]:
        """What the averaged weights are (plain data for the summary and the file)."""
        return {"kind": self.kind, "updates": self.averaged.n_averaged if self.averaged else 0,
                **self.rule.to_config(), "bn_update": self.bn_update}

    def run_summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {"averaging": {self.kind: self.description()}}
        if self.final_checkpoint is not None:
            summary["final_weights"] = {"source": self.kind, "checkpoint": self.final_checkpoint,
                                        "updates": self.averaged.n_averaged}
        return summary

    def _check_conflicts(self) -> None:
        from epochal.callbacks.early_stopping import EarlyStopping

        name = type(self).__name__
        for cb in self.learner.callbacks:
            if cb is self or not self.final:
                continue
            if isinstance(cb, WeightAveraging) and cb.final:
                raise ValueError(f"{name} and {type(cb).__name__} both make their averaged weights the final "
                                 f"ones; pass final=False to one of them")
            if isinstance(cb, EarlyStopping) and cb.restore_best_weights:
                raise ValueError(f"EarlyStopping(restore_best_weights=True) would replace {name}'s final averaged "
                                 "weights by the best live weights; drop one of the two")

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {"averaged": self.averaged.state_dict() if self.averaged is not None else None,
                "calibrated_at": self._calibrated_at}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("averaged") is None:
            self.averaged = None
            return
        self.averaged = AveragedWeights(self.learner.model, self.rule, self.average_buffers)
        self.averaged.load_state_dict(state["averaged"])
        self._calibrated_at = state.get("calibrated_at")
