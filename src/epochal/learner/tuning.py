"""The learning-rate finder and freezing, mixed into :class:`~epochal.learner.Learner`.

The LR finder is the range test of Smith, "Cyclical Learning Rates for Training Neural Networks"
(2017), as popularised by fastai: train a few hundred steps with a learning rate growing from tiny
to huge, record the loss, and read a good rate off the curve. It is a *probe*: weights, BatchNorm
buffers, the optimizer, callbacks, the loop state and every RNG are restored afterwards, bit for
bit, also when the probe fails. Freezing and ``fine_tune`` follow ULMFiT (Howard & Ruder 2018).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from epochal.optim import build_optimizer, freeze_to, param_groups, set_frozen_norm_eval
from epochal.schedules import lr_finder_schedule, one_cycle, plot_lr_find, smooth_losses, suggest_lr
from epochal.state import capture_rng, restore_rng

__all__ = ["LRFinderResult", "LearnerTuning"]


@dataclass
class LRFinderResult:
    """What :meth:`LearnerTuning.lr_find` measured and suggests.

    Attributes:
        lrs: the rates probed (up to where the probe stopped).
        losses: the raw training loss at each rate (NaN/inf kept as they were).
        smoothed: the debiased exponential moving average of the losses.
        suggestions: ``{"valley", "steep", "min_div10"}``.
        suggestion: the rate to use (by the chosen rule), ready for ``one_cycle(epochs, suggestion)``.
        plot: the PNG path when a plot was asked for.
    """

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestions: dict[str, float] = field(default_factory=dict)
    suggestion: float = float("nan")
    plot: Path | None = None


class LearnerTuning:
    """``lr_find``, ``overfit_batch``, ``freeze``/``freeze_to``/``unfreeze`` and ``fine_tune``."""

    _freeze_record = None

    # ----------------------------------------------------------------- transactional snapshot
    @contextlib.contextmanager
    def _probe(self):
        """Run a block on the learner and restore every piece of state afterwards, also on error."""
        model_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        modes = [(m, m.training) for m in self.model.modules()]
        flags = [(p, p.requires_grad) for p in self.model.parameters()]
        grads = [(p, None if p.grad is None else p.grad.detach().clone()) for p in self.model.parameters()]
        saved = {name: getattr(self, name) for name in
                 ("optimizer", "schedule", "state", "history", "epoch_metrics", "running", "training")}
        scaler_state = self.scaler.state_dict()  # the probe's fp16 steps move the loss scale
        saved_callbacks = list(self.callbacks)
        rng = capture_rng()
        try:
            with self.removed_callbacks(*saved_callbacks):
                yield
        finally:
            self.model.load_state_dict(model_state)
            for module, mode in modes:
                module.train(mode)
            for param, flag in flags:
                param.requires_grad_(flag)
            for param, grad in grads:
                param.grad = grad
            for name, value in saved.items():
                setattr(self, name, value)
            if scaler_state:
                self.scaler.load_state_dict(scaler_state)
            restore_rng(rng)

    def probe(self):
        """A context manager for temporary work on the learner: on exit (also on error) the weights,
        BatchNorm buffers, train/eval modes, ``requires_grad`` flags, gradients, optimizer, schedule,
        loop state, loss scaler, callbacks and every RNG are what they were on entry. Callbacks are
        detached inside, so no event fires.

        Examples:
            >>> with learner.probe():
            ...     learner.fit(1)      # an experiment that leaves no trace
        """
        return self._probe()

    def overfit_batch(self, batch_size: int | None = None, max_steps: int = 200, lr: float | None = None,
                      loss_target: float = 0.05, skip=(), **kwargs):
        """The sanity check: overfit one training batch and test the likely causes when that or
        anything else fails; the learner is unchanged afterwards.

        Args:
            batch_size: samples of the batch (default: the training loader's batch size).
            max_steps: steps after which the overfit gives up.
            lr: the overfit's constant rate (default: the learner's ``lr``).
            loss_target: the loss to reach, with batch accuracy 1.0.
            skip: names of checks not to run.
            **kwargs: ``sweep_steps``, ``sample_size`` (see :func:`epochal.diagnostics.sanity_check`).

        Returns:
            A :class:`~epochal.diagnostics.SanityReport` (``passed``, ``failed``, ``to_dict()``).
        """
        from epochal.diagnostics import sanity_check  # diagnostics builds on the learner, not the reverse

        return sanity_check(self, batch_size=batch_size, max_steps=max_steps, lr=lr, loss_target=loss_target,
                            skip=skip, **kwargs)

    def lr_find(self, start: float = 1e-7, end: float = 10.0, num: int = 100, mode: str = "exp",
                stop_div: bool = True, div_factor: float = 4.0, plot: str | Path | None = None,
                log_x: bool | None = None, rule: str = "min_div10") -> LRFinderResult:
        """Probe learning rates from ``start`` to ``end`` over ``num`` steps; the learner is unchanged after.

        Args:
            start: the first and last rate.
            end: as for ``start``.
            num: the number of optimizer steps (batches) to probe.
            mode: ``"exp"`` (geometric steps) or ``"linear"``.
            stop_div: stop once the smoothed loss exceeds ``div_factor`` times its minimum or is not finite.
            div_factor: see ``stop_div``.
            plot: write the loss-vs-rate curve to this PNG path.
            log_x: log-scaled rate axis (default: True for ``exp`` mode).
            rule: which suggestion becomes ``result.suggestion`` (fastai's rules, see
                :func:`~epochal.schedules.suggest_lr`): ``"min_div10"`` (fastai's ``minimum``: a
                tenth of the rate at the loss minimum), ``"valley"`` (fastai's default: about
                half-way down the longest descent) or ``"steep"`` (the steepest descent). The
                default is ``min_div10`` because it trained best as the peak of a from-scratch
                ``one_cycle``: on 3,000 CIFAR-10 JPEGs it beat 10x and 0.1x itself, where fastai's
                valley (6x lower on that curve) lost to 10x itself
                (``tests/learner/test_lr_find_realdata.py``).

        Returns:
            An :class:`LRFinderResult`; ``result.suggestion`` feeds ``one_cycle`` directly.
        """
        if rule not in ("min_div10", "valley", "steep"):
            raise ValueError(f"lr_find: rule must be 'min_div10', 'valley' or 'steep', got {rule!r}")
        rates = lr_finder_schedule(start, end, num, mode)
        with self._probe():
            losses = self._lr_probe(rates, stop_div, div_factor)
        smoothed = smooth_losses(losses)
        # fastai skips a tenth of the steps asked for, also when divergence stopped the probe early
        suggestions = suggest_lr(rates[: len(losses)], smoothed, skip_start=num // 10)
        result = LRFinderResult(rates[: len(losses)], losses, smoothed, suggestions, suggestions[rule])
        if plot is not None and self.is_main:  # in a job, rank 0 draws the one plot
            result.plot = plot_lr_find(result.lrs, smoothed, suggestions, path=plot,
                                       log_x=(mode == "exp") if log_x is None else log_x)
        return result

    def _lr_probe(self, rates: list[float], stop_div: bool, div_factor: float) -> list[float]:
        groups = param_groups(self.model, weight_decay=self.weight_decay, lr=rates[0])
        optimizer = build_optimizer(self.optimizer_spec, groups)
        loader = self.train_loader(None)
        self.model.train()
        self.training = True  # the strategy's training module: in a job, the probe trains on the global batch
        self._apply_freeze_modes()
        losses: list[float] = []
        best = math.inf
        epoch, batches = 0, iter(loader.iter_epoch(0))
        for rate in rates:
            batch = next(batches, None)
            if batch is None:
                epoch += 1
                batches = iter(loader.iter_epoch(epoch))
                batch = next(batches)
            for group in optimizer.param_groups:
                group["lr"] = rate * group.get("lr_scale", 1.0)
            self._set_batch(len(losses), batch)
            self._forward_and_loss()  # callbacks are detached during the probe: no events fire
            self.scaler.scale(self.loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
            optimizer.zero_grad(set_to_none=True)
            # a probe, not the hot loop: one read per step is the point; in a job, the mean over the ranks'
            # equal batches, so every rank sees the same curve and stops at the same step
            value = float(self.strategy.sum(self.loss.detach().float().clone())) / self.strategy.world.world_size
            losses.append(value)
            smooth = smooth_losses(losses)[-1]
            best = min(best, smooth)
            if stop_div and (not math.isfinite(smooth) or smooth > div_factor * best) and len(losses) > 3:
                break
        return losses

    # ----------------------------------------------------------------- freezing
    def freeze_to(self, n: int, train_bn: bool = True):
        """Freeze the first ``n`` layer groups (negative counts from the end); see :func:`epochal.optim.freeze_to`."""
        self._freeze_record = freeze_to(self.model, n, train_bn=train_bn)
        self.recompile()
        return self._freeze_record

    def freeze(self, train_bn: bool = True):
        """Freeze every layer group but the head."""
        return self.freeze_to(-1, train_bn=train_bn)

    def unfreeze(self):
        """Make every layer group trainable."""
        return self.freeze_to(0)

    def _apply_freeze_modes(self) -> None:
        """After ``model.train()``: keep frozen norm layers in eval mode when ``train_bn=False``."""
        if self._freeze_record is not None and self._freeze_record.eval_norm_modules:
            set_frozen_norm_eval(self.model, self._freeze_record)

    def fine_tune(self, epochs: float, base_lr: float = 2e-3, freeze_epochs: float = 1, lr_mult: float = 100,
                  pct_start: float = 0.3, div: float = 5.0, train_bn: bool = True) -> list[dict[str, Any]]:
        """Transfer learning: train the head with the body frozen, then everything with discriminative rates.

        Args:
            epochs: epochs of the unfrozen stage.
            base_lr: the head's peak rate in the frozen stage; the unfrozen stage peaks at half of it.
            freeze_epochs: epochs of the frozen stage (0 skips it).
            lr_mult: the ratio between the head's and the stem's rates in the unfrozen stage.
            pct_start: one-cycle shape of both stages.
            div: as for ``pct_start``.
            train_bn: keep BatchNorm of frozen groups trainable.

        Returns:
            The history of both stages.
        """
        history: list[dict[str, Any]] = []
        if freeze_epochs > 0:
            self.freeze(train_bn=train_bn)
            history += self.fit(one_cycle(freeze_epochs, base_lr, div=div, pct_start=0.99))
        base_lr /= 2
        self.unfreeze()
        history += self.fit(one_cycle(epochs, slice(base_lr / lr_mult, base_lr), div=div, pct_start=pct_start))
        return history
