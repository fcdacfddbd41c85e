"""TensorBoard: scalars, histograms and hyperparameters of a run, for TensorBoard's dashboards.

Everything is logged against the optimizer-step count, so running values (read at logging points)
and epoch metrics share one x axis, and a resumed run purges what the crashed run wrote after its
checkpoint. The hyperparameters and final metrics go through ``add_hparams`` so TensorBoard's
HParams view can compare runs side by side.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from epochal.callbacks.base import Callback

__all__ = ["TensorBoard", "flatten_hparams"]

_POSITION_KEYS = ("epoch", "step", "phase")


def _summary_writer():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise ImportError("the TensorBoard callback needs the 'tensorboard' package: "
                          "pip install 'epochal[tensorboard]'") from exc
    return SummaryWriter


def flatten_hparams(config: Mapping[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """Flatten nested config dicts to ``{"a.b.c": value}`` with values TensorBoard accepts.

    Numbers, strings and booleans are kept; None and any other value (lists, objects) become strings.
    """
    flat: dict[str, bool | int | float | str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_hparams(value, prefix=f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


class TensorBoard(Callback):
    """Log a run to TensorBoard event files.

    * every logging point (``after_log``): the running loss and learning rate
      (``running/loss``, ``running/lr``, and ``lr/group_<i>`` for every parameter group when there
      are several);
    * every epoch: every value of the epoch's history record (``train/loss``, ``valid/loss``,
      ``valid/<metric>``, ``lr``) and ``epoch`` (the epoch's number, from 1 as on the screen);
    * every ``histogram_every`` epochs: a histogram of every parameter (``weights/<name>``) and of
      its gradient at the epoch's last optimizer step (``grads/<name>``, loss scaling undone);
    * every ``embeddings_freq`` epochs: projector data (``add_embedding``) of ``embeddings_layer``'s
      outputs for the first ``embeddings_samples`` validation items, labelled with their classes
      (:mod:`epochal.callbacks.projector`);
    * at the end of the fit: the hyperparameters (``hparams``, or the learner's config flattened,
      or a summary of the learner's settings when it has no config) with the final value of every
      metric as ``hparam/<key>``.

    Args:
        log_dir: the folder of the event files (default: ``<run_dir>/tensorboard``).
        histogram_every: epochs between weight and gradient histograms (None: no histograms).
        hparams: hyperparameters to record instead of the learner's config.
        embeddings_freq: epochs between Embedding Projector writes (None or 0: none), as in Keras.
        embeddings_layer: the module (a ``named_modules`` name) whose outputs are projected;
            None: the inputs of the final linear layer (the pooled features of a classifier).
        embeddings_samples: validation items projected (the same first ones every time).

    Examples:
        >>> Learner(model, data, callbacks=[TensorBoard(histogram_every=5)], run_dir="runs/a").fit(20)
        $ tensorboard --logdir runs
    """

    order = 85
    rank_zero_only = True  # in a data-parallel job, rank 0 alone writes and prints

    def __init__(self, log_dir: str | Path | None = None, histogram_every: int | None = None,
                 hparams: Mapping[str, Any] | None = None, embeddings_freq: int | None = None,
                 embeddings_layer: str | None = None, embeddings_samples: int = 256):
        for key, value in (("embeddings_freq", embeddings_freq or 1), ("embeddings_samples", embeddings_samples)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TensorBoard: {key} must be an int >= 1, got {value!r}")
        self.embeddings_freq, self.embeddings_layer = embeddings_freq or None, embeddings_layer
        self.embeddings_samples = embeddings_samples
        if histogram_every is not None and (not isinstance(histogram_every, int) or histogram_every < 1):
            raise ValueError(f"TensorBoard: histogram_every must be None or an int >= 1, got {histogram_every!r}")
        _summary_writer()  # fail at construction, not after the first epoch, when tensorboard is missing
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.histogram_every = histogram_every
        self.hparams = dict(hparams) if hparams is not None else None
        self.writer = None

    @property
    def folder(self) -> Path:
        """Where the event files go."""
        return self.log_dir if self.log_dir is not None else self.in_run_dir("tensorboard", "log_dir")

    def before_fit(self) -> None:
        if self.writer is not None:  # a previous fit that died with an error left its writer open
            self.writer.close()
        if self.embeddings_freq is not None:  # an unknown layer fails now, not after the first epochs
            from epochal.callbacks.projector import embedding_layer

            embedding_layer(self.learner.model, self.embeddings_layer)
        step = self.learner.state.step
        # A resumed run continues from its checkpoint: hide what the interrupted run logged after it.
        self.writer = _summary_writer()(log_dir=str(self.folder), purge_step=step + 1 if step > 0 else None)

    def after_log(self) -> None:
        if self.writer is None:
            return
        step = self.learner.state.step
        for key, value in self.learner.running.items():
            self.writer.add_scalar(f"running/{key}", value, step)
        groups = self.learner.optimizer.param_groups
        if len(groups) > 1:
            for index, group in enumerate(groups):
                self.writer.add_scalar(f"lr/group_{index}", float(group["lr"]), step)

    def _histogram_epoch(self) -> bool:
        return self.histogram_every is not None and self.learner.state.epoch_number % self.histogram_every == 0

    def before_step(self) -> None:
        learner = self.learner
        if self.writer is None or not self._histogram_epoch() or learner.iteration != learner.n_batches - 1:
            return
        scale = float(learner.scaler.get_scale()) if learner.scaler.is_enabled() else 1.0
        step = learner.state.step + 1  # the step being taken, logged with the weights it produces
        for name, param in learner.model.named_parameters():
            if param.grad is not None:
                self.writer.add_histogram(f"grads/{name}", param.grad.detach().float().cpu() / scale, step)

    def after_epoch(self) -> None:
        learner = self.learner
        if self.writer is None or not learner.history or learner.history[-1]["epoch"] != learner.state.epoch_number:
            return
        record, step = learner.history[-1], learner.state.step
        self.writer.add_scalar("epoch", record["epoch"], step)
        for key, value in record.items():
            if key not in _POSITION_KEYS and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, step)
        if self._histogram_epoch():
            for name, param in learner.model.named_parameters():
                self.writer.add_histogram(f"weights/{name}", param.detach().float().cpu(), step)
        if self.embeddings_freq is not None and (learner.state.epoch + 1) % self.embeddings_freq == 0:
            self._write_embeddings(step)
        self.writer.flush()

    def _write_embeddings(self, step: int) -> None:
        from epochal.callbacks.projector import embedding_layer, layer_outputs, sample_labels

        learner = self.learner
        if learner.data.valid is None:
            return
        layer, use_inputs = embedding_layer(learner.model, self.embeddings_layer)
        points, targets = layer_outputs(learner.model, layer, use_inputs, learner.data.valid,
                                        self.embeddings_samples, learner.device, learner.memory_format)
        tag = self.embeddings_layer or "features"
        self.writer.add_embedding(points, metadata=sample_labels(targets, learner.data.classes),
                                  global_step=step, tag=tag)

    def hyperparameters(self) -> dict[str, bool | int | float | str]:
        """What is recorded in the HParams view."""
        if self.hparams is not None:
            return flatten_hparams(self.hparams)
        learner = self.learner
        if learner.config:
            return flatten_hparams(learner.config)
        spec = learner.optimizer_spec
        return flatten_hparams({
            "model": type(learner.model).__name__,
            "optimizer": spec if isinstance(spec, str) else getattr(spec, "__name__", type(spec).__name__),
            "lr": learner.lr, "weight_decay": learner.weight_decay,
            "batch_size": getattr(learner.data.train, "batch_size", None),
            "epochs": len(learner.history), "precision": learner.precision, "grad_accum": learner.grad_accum,
            "seed": learner.seed,
        })

    def after_fit(self) -> None:
        if self.writer is None:
            return
        history = self.learner.history
        final = {f"hparam/{k}": float(v) for k, v in (history[-1] if history else {}).items()
                 if "/" in k and isinstance(v, (int, float))}
        if final:
            self.writer.add_hparams(self.hyperparameters(), final, run_name=".", global_step=self.learner.state.step)
        self.writer.close()
        self.writer = None

    @property
    def name(self) -> str:
        return "tensorboard"
