"""Distillation: train a student on a teacher's soft targets (Hinton, Vinyals & Dean 2015).

The rule: during training, after the student's forward pass the teacher (in eval mode, without
gradients, in the learner's precision and on its device) gives its logits for the same batch, and
the learner's loss (the *hard* term, the recipe's own loss on the labels) becomes

    loss = alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * loss

(:class:`~epochal.losses.DistillationLoss`). Validation is left alone: ``valid/loss`` stays the
hard loss, so a distilled student and one trained alone are compared on the same number.

The Learner needs no change: the teacher runs at ``after_forward`` (it needs the batch's inputs,
which the loss never sees) and the loss is rewritten at ``after_loss``, before any other callback
(``TerminateOnNaN``) reads it.

Cached logits: with ``cache_dir`` the teacher's logits of each training sample are kept (filled as
batches come, so the first epoch pays for the teacher and later ones do not) and saved there,
keyed by the teacher's weights, the precision and device type, and the training data's
fingerprint (images, rows, size, normalisation, augmentation and its seed). A sample's logits are
only the same every epoch when its input is: with augmentation on, caching is switched off with a
warning, so an augmented batch never gets the logits of another view.

Nothing goes into checkpoints: the teacher is fixed, and a resumed run reopens the same cache.

Under data-parallel training (:mod:`epochal.distributed`) every rank runs its own copy of the
teacher on its own share of each batch; the logit cache is switched off with a warning there.

Examples:
    >>> teacher = restore_model("runs/2026-11-23_16-12-40-default")[0]   # epochal.config.inference
    >>> student = epochal.create_model("airbench", widths=[16, 32, 64])
    >>> Learner(student, data, callbacks=[Distillation(teacher, temperature=4, alpha=0.9)]).fit(10)
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from epochal.callbacks.base import Callback
from epochal.losses.distillation import DistillationLoss
from epochal.state import CheckpointError, load_checkpoint, save_checkpoint
from epochal.utils import content_digest, host_to_device

__all__ = ["Distillation"]

#: What a training loader must offer for its teacher logits to be cached.
_CACHE_NEEDS = ("batch_positions", "fingerprint", "augmented", "targets")


class _LogitCache:
    """Teacher logits per training sample, filled batch by batch, saved atomically to ``path``.

    Which samples are filled is tracked on the host, so a lookup never waits for the device.
    """

    def __init__(self, path: Path, key: str, n: int, device: torch.device):
        self.path, self.key, self.device = path, key, device
        self.filled = torch.zeros(n, dtype=torch.bool)
        self.logits: torch.Tensor | None = None
        self.dirty = False
        if path.is_file():
            self._load(n)

    def _load(self, n: int) -> None:
        try:
            payload = load_checkpoint(self.path)
        except CheckpointError as exc:
            warnings.warn(f"Distillation: ignoring the unreadable logit cache {self.path} ({exc})", stacklevel=3)
            return
        if payload.get("key") == self.key and len(payload.get("filled", ())) == n:
            self.filled = payload["filled"].to(torch.bool)
            self.logits = payload["logits"].to(self.device)

    def get(self, positions: torch.Tensor) -> torch.Tensor | None:
        if self.logits is None or not bool(self.filled[positions].all()):
            return None
        return self.logits[host_to_device(positions, self.device)]

    def put(self, positions: torch.Tensor, logits: torch.Tensor) -> None:
        if self.logits is None:
            self.logits = torch.zeros(len(self.filled), logits.shape[-1], device=self.device)
        self.logits[host_to_device(positions, self.device)] = logits.detach().float()
        self.filled[positions] = True
        self.dirty = True

    def save(self) -> None:
        if self.dirty and self.logits is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            save_checkpoint(self.path, {"key": self.key, "logits": self.logits.cpu(), "filled": self.filled})
            self.dirty = False


class Distillation(Callback):
    """Knowledge distillation from a teacher model into the learner's model (the student).

    Args:
        teacher: the teacher network (any ``nn.Module`` giving logits over the student's classes);
            it is moved to the learner's device, put in eval mode and frozen. A run folder's
            model: ``epochal.config.inference.restore_model(run)[0]`` (what the recipe key
            ``distillation.teacher`` does).
        temperature: ``T`` of the soft targets (Hinton et al. use 1-20; 4 is common on CIFAR).
        alpha: weight of the soft term in [0, 1]; ``1 - alpha`` weighs the learner's own loss.
        cache_dir: keep the teacher's logits of the training samples in this folder (reused by
            later epochs and later runs of the same teacher on the same data); refused, with a
            warning, when the training data are augmented.

    Attributes:
        loss: the :class:`~epochal.losses.DistillationLoss` combining both terms.
        teacher_logits: the teacher's logits of the current training batch (between
            ``after_forward`` and ``after_loss``).
        cache_hits: training batches whose logits came from the cache in this fit.

    Examples:
        >>> learner = Learner(student, data, callbacks=[Distillation(teacher, temperature=4.0, alpha=0.9)])
        >>> learner.fit(one_cycle(10, 0.1))
    """

    order = -5  # the loss is rewritten before any other callback reads it at after_loss

    def __init__(self, teacher: nn.Module, temperature: float = 4.0, alpha: float = 0.9,
                 cache_dir: str | Path | None = None):
        if not isinstance(teacher, nn.Module):
            raise TypeError(
                f"Distillation: teacher must be an nn.Module, got {type(teacher).__name__}; for a run folder "
                "use epochal.config.inference.restore_model(run)[0] or the recipe key distillation.teacher"
            )
        self.teacher = teacher
        self.loss = DistillationLoss(temperature, alpha)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.teacher_logits: torch.Tensor | None = None
        self.cache_hits = 0
        self._cache: _LogitCache | None = None
        self._loader = None
        self._teacher_key: str | None = None
        self._refused = False

    # ----------------------------------------------------------------- events
    def before_fit(self) -> None:
        learner = self.learner
        self.teacher.to(learner.device, memory_format=learner.memory_format or torch.preserve_format)
        self.teacher.eval()
        self.teacher.requires_grad_(False)
        self.cache_hits, self._refused, self._teacher_key = 0, False, None

    def before_train(self) -> None:
        self._loader = self.learner.train_loader(self.learner.phases[self.learner.state.phase])
        cache = self._open_cache(self._loader) if self.cache_dir is not None else None
        if self._cache is not None and cache is not self._cache:
            self._cache.save()
        self._cache = cache

    def after_forward(self) -> None:
        if self.learner.training:
            self.teacher_logits = self._batch_logits()

    def after_loss(self) -> None:
        if self.learner.training and self.teacher_logits is not None:
            soft = self.loss.soft(self.learner.pred, self.teacher_logits)
            self.learner.loss = self.loss.combine(soft, self.learner.loss)
            self.teacher_logits = None

    def after_train(self) -> None:
        if self._cache is not None:
            self._cache.save()  # once per epoch: the only read of the cached logits back to the host

    def after_fit(self) -> None:
        if self._cache is not None:
            self._cache.save()
        self._cache, self._loader, self.teacher_logits = None, None, None

    # ----------------------------------------------------------------- the teacher
    def _batch_logits(self) -> torch.Tensor:
        learner = self.learner
        positions = None
        if self._cache is not None:
            positions = self._loader.batch_positions(learner.state.epoch, learner.iteration)
            cached = self._cache.get(positions)
            if cached is not None:
                self.cache_hits += 1
                return cached
        inputs = learner.xb
        with torch.no_grad(), learner.autocast():
            logits = self.teacher(*inputs) if isinstance(inputs, tuple) else self.teacher(inputs)
        if self._cache is not None:
            self._cache.put(positions, logits)
        return logits

    def _open_cache(self, loader) -> _LogitCache | None:
        missing = [name for name in _CACHE_NEEDS if not hasattr(loader, name)]
        reason = None
        world = self.learner.strategy.world
        if world.distributed:
            # every rank fills its own share of one file: the ranks' saves would overwrite each other
            reason = f"a data-parallel job ({world.world_size} ranks) would write one cache file from every rank"
        elif missing:
            reason = f"the training loader ({type(loader).__name__}) has no {', '.join(missing)}"
        elif loader.augmented:
            reason = ("the training data are augmented, so a sample's input differs from epoch to epoch and "
                      "cached logits would belong to another view; switch augmentation off to cache")
        if reason is not None:
            if not self._refused:
                warnings.warn(f"Distillation: teacher logits are not cached: {reason}; "
                              "the teacher runs on every batch", stacklevel=2)
            self._refused = True
            return None
        key = content_digest(self._teacher_fingerprint(), loader.fingerprint())
        if self._cache is not None and self._cache.key == key:
            return self._cache
        path = self.cache_dir / f"teacher-logits-{key[:24]}.pt"
        return _LogitCache(path, key, len(loader.targets), self.learner.device)

    def _teacher_fingerprint(self) -> str:
        """The teacher's class and weights, and the precision and device type its logits come from."""
        if self._teacher_key is None:
            state = sorted(self.teacher.state_dict().items())
            self._teacher_key = content_digest(
                [type(self.teacher).__qualname__, [name for name, _ in state]],
                *(tensor for _, tensor in state),
                [self.learner.precision, self.learner.device.type],
            )
        return self._teacher_key

    def __repr__(self) -> str:
        return (f"Distillation(teacher={type(self.teacher).__name__}, temperature={self.loss.temperature}, "
                f"alpha={self.loss.alpha}, cache_dir={self.cache_dir})")
