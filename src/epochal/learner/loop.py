"""The Learner: one training loop, wrapped level by level in events, driven by training phases.

The loop has four levels, each a small method wrapped the same way by :meth:`Learner._run_level`:
fit (a list of :class:`~epochal.schedules.TrainingPhase`), epoch (train + validate), batch, and
the steps inside a batch (forward, loss, backward, optimizer step). Schedules are pure functions of
the optimizer-step count, so resume, gradient accumulation and world size never shift them.
Nothing in the batch loop reads a device value back to the host except at logging intervals.

Several processes (torchrun) train one model through the learner's *strategy*
(:mod:`epochal.distributed.strategy`): the few places where ranks act together (the module called
in training, the accumulation ``no_sync``, combining sums, rank 0's epoch record and checkpoint)
ask it, and a single process's strategy answers each trivially.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from epochal.callbacks.base import Callback
from epochal.data.adapters import as_data_loaders, as_evaluation_loader
from epochal.data.base import DataLoaders
from epochal.distributed import GlobalBatch, LRScaling, Strategy, auto_strategy
from epochal.events import (
    CancelBackward,
    CancelBatch,
    CancelEpoch,
    CancelFit,
    CancelStep,
    CancelTrain,
    CancelValidate,
)
from epochal.learner.checkpointing import LearnerCheckpointing
from epochal.learner.dispatch import LearnerCallbacks
from epochal.learner.host_memory import retain_freed_memory
from epochal.learner.tuning import LearnerTuning
from epochal.metrics import Metric, get_metric
from epochal.optim import build_optimizer, param_groups, switch_optimizer
from epochal.runs.lock import run_lock
from epochal.schedules.phase import TrainingPhase
from epochal.schedules.scheduler import PhaseSchedule
from epochal.utils import check_compile_mode, compile_options, to_device, unknown_name_error

__all__ = ["Learner"]

_PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
#: (before, after_cancel, after) event names of each loop level, built once (not per batch).
_LEVEL_EVENTS = {
    level: (f"before_{level}", f"after_cancel_{level}", f"after_{level}")
    for level in ("fit", "epoch", "train", "validate", "batch", "backward", "step")
}
#: fp32's autocast: one reusable no-op context instead of a new one per forward.
_NO_AUTOCAST = contextlib.nullcontext()


def _batch_size(targets: Any) -> int:
    while isinstance(targets, (tuple, list)):
        targets = targets[0]
    return int(targets.shape[0])


def _evaluation_batches(data) -> Iterable:
    """One pass over ``data`` in its fixed epoch-0 order (a loader, any iterable of batches, arrays)."""
    return as_evaluation_loader(data).iter_epoch(0)


class Learner(LearnerCallbacks, LearnerCheckpointing, LearnerTuning):
    """Trains a model on data with a loss, metrics, training phases and callbacks.

    Args:
        model: the network.
        data: a :class:`~epochal.data.DataLoaders`, a ``(train, valid)`` pair of loaders, one training
            loader, or ``(inputs, targets)`` tensors or NumPy arrays. A loader is one of epochal's, a
            ``torch.utils.data.DataLoader`` or any iterable of batches; batches are ``(inputs, targets)``,
            longer tuples (the last item is the target) or dicts (see :func:`epochal.data.from_loader`
            to name the keys and :mod:`epochal.data.adapters` for what resumes exactly).
        loss: the loss function ``loss(pred, target) -> scalar`` (default: cross-entropy).
        optimizer: optimizer name (``"sgd"``, ``"adamw"``, ...) or factory, used by phases that name none.
        lr: learning rate of phases that give none (``fit(epochs)`` trains at this constant rate).
        weight_decay: decoupled weight decay of phases that give none (not applied to norm and bias).
        metrics: :class:`~epochal.metrics.Metric` objects or names; validation also logs the loss.
        callbacks: callbacks to attach.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``... (default: CUDA when available).
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast; fp16 adds a GradScaler).
        channels_last: use the channels-last memory format for the model and 4-D inputs.
        compile: wrap the model in ``torch.compile`` (recompiled when freezing changes); a string
            names the ``torch.compile`` backend (``"inductor"``, ``"cudagraphs"``, ``"eager"``...).
        compile_mode: inductor's ``torch.compile(mode=...)``: ``"default"`` (None), ``"reduce-overhead"``
            (CUDA graphs), ``"max-autotune"`` (kernel search and CUDA graphs, airbench's choice),
            ``"max-autotune-no-cudagraphs"``; other backends take no mode. Outputs the learner keeps
            across calls (predictions, collected metric scores) are copies, so a CUDA graph's next
            replay cannot overwrite them.
        grad_accum: batches whose gradients are summed before each optimizer step.
        clip_grad_norm: clip the global gradient norm to this value.
        clip_grad_value: clip every gradient element to +-this value.
        log_every: optimizer steps between reads of the running loss (``after_log``).
        run_dir: a run folder; when set, metrics.jsonl, summary.json and the config are written there.
        config: the resolved configuration to save in the run folder (plain data).
        seed: the run's seed, recorded in the summary and used by loaders that need one.
        valid: validation data when ``data`` holds none (a loader or ``(inputs, targets)`` arrays).
        strategy: how the processes of a job train together: a
            :class:`~epochal.distributed.DataParallel` (DDP) or a single-process
            :class:`~epochal.distributed.Strategy`; default: DataParallel when this process is in a
            torchrun job (joining it if needed), else a single process. Plain torch DataLoaders
            and arrays are then split across the ranks; epochal's loaders take ``rank`` and
            ``world_size`` themselves (``epochal.distributed.world()``).
        lr_scaling: scale every learning rate with the global batch (per-rank batch x world size x
            ``grad_accum``): an :class:`~epochal.distributed.LRScaling` (``linear`` or ``sqrt`` of
            global / reference), recorded in the run summary; default: the rates as written.
        retain_host_memory: when training on the CPU, keep freed memory in the process for the next
            step instead of handing it back to the system and faulting it in again (glibc only;
            process-wide; see :mod:`epochal.learner.host_memory`): about a sixth faster steps at large
            batches, at the cost of the process keeping its peak memory.

    Examples:
        >>> learner = Learner(model, (train_loader, valid_loader), metrics=["accuracy"])  # torch DataLoaders too
        >>> learner.fit(one_cycle(5, lr_max=1e-2))
        >>> learner.validate()["valid/accuracy"]
    """

    def __init__(self, model: nn.Module, data: DataLoaders | Sequence, loss=None, optimizer="adamw",
                 lr: float = 1e-3, weight_decay: float = 0.0, metrics: Iterable[Metric | str] = (),
                 callbacks: Iterable[Callback] = (), *, device: str | torch.device | None = None,
                 precision: str = "fp32", channels_last: bool = False, compile: bool | str = False,
                 compile_mode: str | None = None, grad_accum: int = 1, clip_grad_norm: float | None = None,
                 clip_grad_value: float | None = None, log_every: int = 50,
                 run_dir: str | Path | None = None, config: dict | None = None, seed: int | None = None,
                 valid=None, strategy: Strategy | None = None, lr_scaling: LRScaling | None = None,
                 retain_host_memory: bool = True):
        if precision not in _PRECISIONS:
            raise unknown_name_error("precision", precision, _PRECISIONS)
        check_compile_mode(compile_mode)
        if grad_accum < 1:
            raise ValueError(f"grad_accum must be >= 1, got {grad_accum}")
        if log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {log_every}")
        if lr_scaling is not None and not isinstance(lr_scaling, LRScaling):
            raise TypeError(f"lr_scaling takes an epochal.distributed.LRScaling, got {lr_scaling!r}")
        self.strategy = strategy if strategy is not None else auto_strategy(device)
        self.device = self.strategy.set_device(device)
        world = self.strategy.world
        # epochal's own loaders pass through; torch DataLoaders and arrays get this rank's share
        self.data = as_data_loaders(data, valid, seed=seed or 0, rank=world.rank, world_size=world.world_size)
        self.lr_scaling, self.retain_host_memory = lr_scaling, retain_host_memory
        self.loss_fn = loss if loss is not None else nn.CrossEntropyLoss()
        if isinstance(self.loss_fn, nn.Module):  # class weights and other buffers follow the model
            self.loss_fn.to(self.device)
        self.optimizer_spec, self.lr, self.weight_decay = optimizer, lr, weight_decay
        self.metrics = [get_metric(m) for m in metrics]
        self.precision, self.channels_last, self.compile = precision, channels_last, compile
        self.compile_mode = compile_mode
        self.grad_accum, self.clip_grad_norm, self.clip_grad_value = grad_accum, clip_grad_norm, clip_grad_value
        self.log_every, self.seed, self.config = log_every, seed, config or {}
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.memory_format = torch.channels_last if channels_last else None
        model = self.strategy.prepare(model)  # SyncBatchNorm, when the strategy asks for it
        self.model = model.to(self.device, memory_format=self.memory_format or torch.preserve_format)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision == "fp16")
        self.optimizer: torch.optim.Optimizer | None = None
        self.schedule: PhaseSchedule | None = None
        self.history: list[dict[str, Any]] = []
        self.epoch_metrics: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.training = False
        self.valid_prefix = "valid"  # key prefix of validation metrics (averaged weights log under their own)
        self._compiled: dict[bool, nn.Module] = {}  # by "is the strategy's training wrapper"
        self._retired: list[nn.Parameter] = []  # parameters whose group's train_epochs passed in this fit
        self.callbacks: list[Callback] = []
        self._index_handlers()
        for cb in callbacks:
            self.add_callback(cb)
        if self.run_dir is not None:
            from epochal.callbacks.run_logger import RunLogger

            if not any(isinstance(cb, RunLogger) for cb in self.callbacks):
                self.add_callback(RunLogger())
        self._reset_state()

    def _run_level(self, body, level: str, cancel: type[Exception], finish=None) -> None:
        """``before_<level>``, body, ``after_<level>``; the level's cancel exception is caught.

        ``finish`` (bookkeeping that must happen even when the level is cancelled) runs just
        before ``after_<level>``.
        """
        before, cancelled, after = _LEVEL_EVENTS[level]
        try:
            self(before)
            body()
        except cancel as exc:
            if cancel is CancelFit:  # why the fit ended early, for the run summary and the caller
                self.stop_reason = str(exc) or type(exc).__name__
            self(cancelled)
        if finish is not None:
            finish()
        self(after)

    # ----------------------------------------------------------------- fit
    def fit(
        self, phases: float | TrainingPhase | Sequence[TrainingPhase], resume: str | Path | None = None
    ) -> list[dict]:
        """Train through ``phases`` (or a number of epochs at the learner's lr); return the history.

        Args:
            phases: a list of training phases, one phase, or a number of epochs.
            resume: a checkpoint file or run folder to continue from, exactly where it stopped.

        Raises:
            RunLockedError: another process is training the learner's run folder.
            RankFailure: under data-parallel training, another rank stopped answering.
        """
        # one process at a time trains a run folder: in a job, rank 0 holds the lock for all ranks
        with run_lock(self.run_dir if self.is_main else None), self.strategy.guard():
            return self._fit(phases, resume)

    def _fit(self, phases, resume) -> list[dict]:
        self.phases = self._as_phases(phases)
        self.strategy.check(self)  # ranks whose loaders disagree would hang: refuse before the first step
        steps = [self.steps_per_epoch(p) for p in self.phases]
        self.schedule = PhaseSchedule(self.phases, steps, default_lr=self.lr, lr_multiplier=self.lr_multiplier())
        self._reset_state()
        self.optimizer = None
        self.state.total_steps = self.schedule.total_steps
        if self.retain_host_memory and self.device.type == "cpu":
            retain_freed_memory()
        self._enter_phase(0, fire=False)
        if resume is not None:
            self.load_checkpoint(self.strategy.run_on_main(lambda: self.resolve_checkpoint(resume)))
        self.fit_start_time = time.perf_counter()
        self.error: BaseException | None = None
        self.stop_reason: str | None = None
        try:
            self._run_level(self._fit_body, "fit", CancelFit)
        except BaseException as exc:
            # callbacks still get after_fit to close displays and writers; they can read
            # learner.error. The original error is what the caller sees.
            self.error = exc
            with contextlib.suppress(Exception):
                self("after_fit")
            raise
        finally:
            self._restore_retired()
        return self.history

    def _as_phases(self, phases) -> list[TrainingPhase]:
        if isinstance(phases, TrainingPhase):
            return [phases]
        if isinstance(phases, (int, float)):
            if phases <= 0:
                raise ValueError(f"fit: the number of epochs must be > 0, got {phases}")
            return [TrainingPhase(epochs=phases, weight_decay=self.weight_decay)]
        phases = list(phases)
        if not phases or not all(isinstance(p, TrainingPhase) for p in phases):
            raise TypeError("fit takes a number of epochs, a TrainingPhase or a non-empty list of TrainingPhase")
        return phases

    def train_loader(self, phase: TrainingPhase | None = None):
        """The training loader of a phase (its own ``data`` or the learner's)."""
        data = getattr(phase, "data", None) if phase is not None else None
        if data is None:
            return self.data.train
        return data.train if isinstance(data, DataLoaders) else data

    def steps_per_epoch(self, phase: TrainingPhase | None = None) -> int:
        """Optimizer steps in one epoch of a phase's data (partial accumulations count as a step)."""
        return math.ceil(len(self.train_loader(phase)) / self.grad_accum)

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and prints (always, except on ranks 1.. of a job)."""
        return self.strategy.is_main

    def global_batch(self) -> GlobalBatch:
        """The samples behind one optimizer step: per-rank batch x world size x ``grad_accum``."""
        per_rank = getattr(self.data.train, "batch_size", None)
        return GlobalBatch(per_rank, self.strategy.world.world_size, self.grad_accum)

    def lr_multiplier(self) -> float:
        """The factor ``lr_scaling`` applies to every learning rate (1 without it)."""
        return self.lr_scaling.factor(self.global_batch().size) if self.lr_scaling is not None else 1.0

    def batch_summary(self) -> dict[str, Any]:
        """The global batch and the learning-rate scaling, as the run summary records them."""
        batch, scaling = self.global_batch(), self.lr_scaling or LRScaling()
        return {**batch.to_dict(), "lr_scaling": scaling.to_dict(batch.size)}

    def describe_batch(self) -> str:
        """One line: ``global batch 128 = 64 per rank x 2 ranks x 1 accumulation step; lr scaling ...``."""
        batch, scaling = self.global_batch(), self.lr_scaling or LRScaling()
        return f"{batch.describe()}; {scaling.describe(batch.size, self.lr)}"

    def _fit_body(self) -> None:
        self("before_phase")
        while self.state.step < self.state.total_steps:
            self._run_level(self._epoch_body, "epoch", CancelEpoch)
            self.state.epoch += 1
            self.state.batch = 0
            self._epoch_done = False
        self.state.phase = len(self.phases) - 1
        self("after_phase")

    def _epoch_body(self) -> None:
        self.epoch_metrics = {}
        self._run_level(self._train_body, "train", CancelTrain)
        self._epoch_done = True
        if self.data.valid is not None:
            self._run_level(self._validate_body, "validate", CancelValidate)
        self._record_epoch()

    def _train_body(self) -> None:
        self.model.train()
        self._retire_spent_groups()
        self._apply_freeze_modes()
        self.training = True
        loader = self.train_loader(self.phases[self.state.phase])
        n_batches = len(loader)
        stop_step = self._epoch_stop_step()
        self._zero_accumulators()
        resumed, self._resumed_loss = self._resumed_loss, None
        if resumed is not None and self.state.batch > 0:  # the epoch's loss so far, from the checkpoint
            self._epoch_loss_sum += resumed["sum"].to(self.device)
            self._epoch_loss_count += int(resumed["count"])
        for index, batch in enumerate(loader.iter_epoch(self.state.epoch, self.state.batch), self.state.batch):
            self.n_batches = n_batches
            self._set_batch(index, batch)
            self._run_level(self._train_batch_body, "batch", CancelBatch, finish=self._end_train_batch)
            if self.state.step >= stop_step:
                break
        self._log()

    def _retire_spent_groups(self) -> None:
        """Stop the gradients of parameter groups whose ``train_epochs`` have passed (checked each epoch).

        Their rate is 0 from their horizon on (:meth:`PhaseSchedule.compressed_lr`), so they no longer
        move; without ``requires_grad`` autograd also skips the backward work that only they need
        (airbench detaches its whitening bias after 3 epochs, which spares the first conv's input
        gradient). The weights are what they would be either way; the flags go back to the
        parameters' own with the next fit.
        """
        spent = [p for g in self.optimizer.param_groups
                 if g.get("train_epochs") is not None and self.state.step >= self.schedule.horizon(g["train_epochs"])
                 for p in g["params"] if p.requires_grad]
        if not spent:
            return
        for p in spent:
            p.requires_grad_(False)
            p.grad = None
        self._retired.extend(spent)
        self._drop_wrappers()

    def _restore_retired(self) -> None:
        if not self._retired:
            return
        for p in self._retired:
            p.requires_grad_(True)
        self._retired = []
        self._drop_wrappers()

    def _epoch_stop_step(self) -> int:
        """The step at which this epoch must end early: the fit's end or a phase that changes data."""
        k = self.state.phase
        for j in range(k + 1, len(self.phases)):
            p, q = self.phases[j - 1], self.phases[j]
            if p.data is not q.data or p.image_size != q.image_size:
                return self.schedule.boundaries[j]
        return self.state.total_steps

    def _set_batch(self, index: int, batch) -> None:
        self.iteration = index
        xb, yb = to_device(batch, self.device, memory_format=self.memory_format)
        self.xb, self.yb = xb, yb

    def _train_batch_body(self) -> None:
        stepping = self._step_due()
        with self.strategy.no_sync(self.model, not stepping):  # an accumulating micro-batch keeps its gradients local
            self._forward_and_loss()
            n = _batch_size(self.yb)
            self._loss_sum.add_(self.loss.detach().float(), alpha=n)
            self._loss_count += n
            self.state.samples += n
            self._run_level(self._backward_body, "backward", CancelBackward)
        if stepping:
            self._run_level(self._step_body, "step", CancelStep)

    def _step_due(self) -> bool:
        return (self.iteration + 1) % self.grad_accum == 0 or self.iteration == self.n_batches - 1

    def _forward_and_loss(self) -> None:
        with self.autocast():
            self("before_forward")
            self.pred = self._call_model(self.xb)
            self("after_forward")
            self("before_loss")
            self.loss = self.loss_fn(self.pred, self.yb)
            self("after_loss")

    def _backward_body(self) -> None:
        loss = self.loss
        if self.grad_accum > 1:
            group = self.iteration // self.grad_accum * self.grad_accum
            size = min(self.grad_accum, self.n_batches - group)
            loss = loss / size if size > 1 else loss
        (self.scaler.scale(loss) if self.scaler.is_enabled() else loss).backward()

    def _step_body(self) -> None:
        self.schedule.apply(self.optimizer, self.state.step)
        if self.clip_grad_norm is not None or self.clip_grad_value is not None:
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
            if self.clip_grad_value is not None:
                torch.nn.utils.clip_grad_value_(params, self.clip_grad_value)
            if self.clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, self.clip_grad_norm, foreach=True)
        if self.scaler.is_enabled():
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:  # what the disabled scaler would do, without its checks at every step
            self.optimizer.step()

    def _end_train_batch(self) -> None:
        """Advance the counters, log at intervals and enter the next phase at its boundary.

        This runs before ``after_batch``, so a checkpoint written there holds the resume
        position and the phase (and optimizer) of the next step. A cancelled batch still ends
        its optimizer step: schedules count steps, so the plan never shifts.
        """
        self.state.batch = self.iteration + 1
        if not self._step_due():
            return
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        if self.state.step % self.log_every == 0:
            self._log()
        boundaries = self.schedule.boundaries
        while self.state.phase + 1 < len(self.phases) and self.state.step >= boundaries[self.state.phase + 1]:
            self("after_phase")
            self._enter_phase(self.state.phase + 1)

    def _zero_accumulators(self) -> None:
        self._loss_sum = torch.zeros((), device=self.device)
        self._loss_count = 0
        self._epoch_loss_sum = torch.zeros((), device=self.device)
        self._epoch_loss_count = 0

    def _log(self) -> None:
        """Read the running loss (of every rank) back from the device once and fire ``after_log``."""
        loss_sum, count = self.strategy.combine_sum(self._loss_sum, self._loss_count)
        if count == 0:
            return
        self._epoch_loss_sum += loss_sum
        self._epoch_loss_count += count
        self.running = {"loss": float(loss_sum) / count, "lr": self.current_lr}
        self._loss_sum.zero_()
        self._loss_count = 0
        self("after_log")

    @property
    def current_lr(self) -> float:
        """The learning rate of the last parameter group (the head under discriminative rates)."""
        return float(self.optimizer.param_groups[-1]["lr"]) if self.optimizer else float("nan")

    # ----------------------------------------------------------------- phases and optimizers
    def _enter_phase(self, index: int, fire: bool = True) -> None:
        """Make phase ``index`` current: switch optimizer or data when the phase asks for it."""
        self.state.phase = index
        phase = self.phases[index]
        spec, kwargs = self.schedule.optimizer_spec(index)
        spec = spec if spec is not None else self.optimizer_spec
        if self.optimizer is None:
            wd = self.schedule.values(self.schedule.boundaries[index])["weight_decay"]
            wd = self.weight_decay if wd is None else wd
            groups = param_groups(self.model, weight_decay=wd, lr=self.lr)
            self.optimizer = build_optimizer(spec, groups, **kwargs)
        elif (spec, kwargs) != self._optimizer_key:
            self.optimizer = switch_optimizer(self.optimizer, spec, **kwargs)
        self._optimizer_key = (spec, kwargs)
        loader = self.train_loader(phase)
        if phase.image_size is not None and hasattr(loader, "set_image_size"):
            loader.set_image_size(phase.image_size)
        if fire:
            self("before_phase")

    # ----------------------------------------------------------------- model call, precision
    @property
    def model_call(self) -> nn.Module:
        """The module the loop calls, compiled when asked: in training, the strategy's wrapper (DDP in a
        job, which averages gradients over ranks); in evaluation, the bare model (no collective per
        batch, so ranks may evaluate different numbers of batches)."""
        module = self.strategy.wrap(self.model) if self.training else self.model
        if not self.compile:
            return module
        key = module is not self.model
        if key not in self._compiled:
            self._compiled[key] = torch.compile(module, **compile_options(self.compile, self.compile_mode))
        return self._compiled[key]

    def _call_model(self, inputs):
        """The model on one batch of inputs (a tuple of tensors is spread over the arguments)."""
        return self.model_call(*inputs) if isinstance(inputs, tuple) else self.model_call(inputs)

    def recompile(self) -> None:
        """Drop the compiled and distributed wrappers (after freezing or surgery); the next batch makes them anew."""
        self._drop_wrappers()
        if self.compile:
            torch._dynamo.reset()

    def _drop_wrappers(self) -> None:
        """Forget the compiled and DDP wrappers; dynamo's cache stays (its guards see changed ``requires_grad``)."""
        self._compiled = {}
        self.strategy.reset()  # DDP registers the parameters that train when it is built

    def autocast(self):
        """The autocast context for the learner's precision (a no-op in fp32)."""
        dtype = _PRECISIONS[self.precision]
        if dtype is None:
            return _NO_AUTOCAST
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    # ----------------------------------------------------------------- validation and prediction
    def _validate_body(self) -> None:
        self.model.eval()
        self.training = False
        self.strategy.sync_buffers(self.model)  # every rank evaluates rank 0's BatchNorm statistics, as DDP trains
        for metric in self.metrics:
            metric.reset()
        loss_sum, count = torch.zeros((), device=self.device), 0
        loader = self.data.valid
        batches = _evaluation_batches(loader)
        with torch.no_grad():
            for index, batch in enumerate(batches):
                self._set_batch(index, batch)
                self._run_level(self._valid_batch_body, "batch", CancelBatch)
                n = _batch_size(self.yb)
                loss_sum.add_(self.loss.detach().float(), alpha=n)
                count += n
                for metric in self.metrics:
                    metric.update(self.pred.float(), self.yb)
        # each rank evaluated its share: sums and counts of all of them, every sample once
        loss_sum, count = self.strategy.combine_validation(loader, loss_sum, count, self.metrics)
        prefix = self.valid_prefix
        self.epoch_metrics[f"{prefix}/loss"] = float(loss_sum) / count if count else float("nan")
        self.metric_directions[f"{prefix}/loss"] = False
        for metric in self.metrics:
            key = f"{prefix}/{metric.name}"
            self.epoch_metrics[key] = metric.compute()
            self.metric_directions[key] = metric.higher_is_better

    def _valid_batch_body(self) -> None:
        self._forward_and_loss()

    def validate(self, data=None, prefix: str = "valid") -> dict[str, float]:
        """Evaluate on ``data`` (default: the validation loader) and return ``<prefix>/<metric>`` values.

        ``data`` may be any kind the learner takes as validation data: a loader, an iterable of
        batches or ``(inputs, targets)`` arrays. ``prefix`` names the keys (and their directions in
        ``metric_directions``): SWA and EMA evaluate their averaged weights through this same level
        as ``valid_swa``/``valid_ema``.
        """
        saved, saved_prefix = self.data, self.valid_prefix
        if data is not None:
            world = self.strategy.world
            valid = as_evaluation_loader(data, world.rank, world.world_size)
            self.data = DataLoaders(self.data.train, valid, self.data.classes, self.data.info)
        self.valid_prefix = prefix
        try:
            self.epoch_metrics = {}
            self._run_level(self._validate_body, "validate", CancelValidate)
            return dict(self.epoch_metrics)
        finally:
            self.data, self.valid_prefix = saved, saved_prefix

    def predict(self, data, activation: str | None = None, with_targets: bool = False):
        """Model outputs for every batch of ``data`` (concatenated on the CPU).

        Args:
            data: a loader, an iterable of batches or ``(inputs, targets)`` arrays (targets are ignored).
            activation: ``None``, ``"softmax"`` or ``"sigmoid"``.
            with_targets: also return the concatenated targets.
        """
        if activation not in (None, "softmax", "sigmoid"):
            raise unknown_name_error("activation", activation, ["softmax", "sigmoid", "None"])
        self.model.eval()
        self.training = False  # the bare model: prediction never waits for other ranks
        outputs, targets = [], []
        batches = _evaluation_batches(data)
        with torch.no_grad(), self.autocast():
            for batch in batches:
                xb, yb = to_device(batch, self.device, memory_format=self.memory_format)
                outputs.append(self._call_model(xb).to(torch.float32, copy=True))  # a copy: see compile_mode
                targets.append(yb)
        preds = torch.cat(outputs)
        if activation == "softmax":
            preds = preds.softmax(dim=-1)
        elif activation == "sigmoid":
            preds = preds.sigmoid()
        preds = preds.cpu()
        return (preds, torch.cat(targets).cpu()) if with_targets else preds

    # ----------------------------------------------------------------- epoch records
    def _record_epoch(self) -> None:
        if self._epoch_loss_count:
            self.epoch_metrics["train/loss"] = float(self._epoch_loss_sum) / self._epoch_loss_count
            self.metric_directions["train/loss"] = False
        record = {"epoch": self.state.epoch_number, "step": self.state.step, "phase": self.state.phase,
                  "lr": self.current_lr, **self.epoch_metrics}
        shared = self.strategy.from_main(record)  # every rank decides (stop, reduce, save) on rank 0's numbers
        if shared is not record:
            self.epoch_metrics.clear()
            self.epoch_metrics.update({k: v for k, v in shared.items() if k not in ("epoch", "step", "phase", "lr")})
        self.history.append(shared)

    def _reset_state(self) -> None:
        from epochal.state import TrainState

        self.state = TrainState()
        self.history = []
        self.metric_directions: dict[str, bool] = {}
        self._epoch_done = False
        self._resumed_loss = None
        self._zero_accumulators()

    # small conveniences
    def __repr__(self) -> str:
        return (f"Learner(model={type(self.model).__name__}, device={self.device}, precision={self.precision}, "
                f"callbacks={[type(c).__name__ for c in self.callbacks]})")

