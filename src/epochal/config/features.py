"""Feature extraction: a frozen backbone's pooled features cached once, a small head trained on them.

``model.freeze: backbone`` keeps every layer but the classifier head's hidden layers and final
``fc`` frozen (BatchNorm statistics included). ``data.cache_features: true`` goes further: the
frozen part runs once over the training and validation images (without augmentation: the
evaluation transform), its pooled features are cached on disk under ``data.options.cache_dir``
(``features/<key>.pt``, keyed by the frozen weights' digest and the images' fingerprint, see
:mod:`epochal.data.feature_cache`), and each epoch only the head sees them: epochs take
milliseconds instead of a whole network's forward and backward passes (Razavian et al.,
*CNN Features off-the-shelf*, 2014).

The Learner's model stays the whole network, its forward replaced (for this run's model object
only) by the head on features: checkpoints, ``summary.json`` and so ``eval``, ``predict`` and
``export`` of the run see backbone and trained head as for any run.
"""

from __future__ import annotations

import functools
import hashlib
import warnings
from pathlib import Path

import torch
from torch import nn

from epochal.config.errors import ConfigError

__all__ = ["feature_data", "head_from_features", "pooled_features", "trainable_head"]


def _classifier_head(model: nn.Module, what: str):
    from epochal.models.layers import ClassifierHead

    head = getattr(model, "head", None)
    if not isinstance(head, ClassifierHead) or not hasattr(model, "forward_features"):
        raise ConfigError(
            f"{what} needs an image classifier with a ClassifierHead (stem -> stages -> head, such as resnet18, "
            f"regnet or airbench); {type(model).__name__} has none"
        )
    return head


def pooled_features(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The ``(N, D)`` features the head's first layer sees: backbone, head norm, pooling, flatten."""
    head = model.head
    return head.flatten(head.pool(head.norm(model.forward_features(images))))


def head_from_features(model: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """The rest of ``model.head`` (hidden layers, dropout, ``fc``, scale) on pooled ``features``."""
    head = model.head
    logits = head.fc(head.dropout(head.hidden(features)))
    return logits * head.scale if head.scale != 1.0 else logits


def trainable_head(model: nn.Module) -> list[nn.Module]:
    """The modules ``model.freeze: backbone`` leaves trainable: the head's hidden layers and ``fc``."""
    head = _classifier_head(model, "model.freeze 'backbone'")
    return [head.hidden, head.fc]


def freeze_backbone(model: nn.Module) -> int:
    """Freeze every parameter but :func:`trainable_head`'s; returns the number of trainable parameters."""
    keep = {id(p) for module in trainable_head(model) for p in module.parameters()}
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in keep)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class BackboneEval:
    """Keeps the frozen backbone's norm layers in eval mode after every ``model.train()``.

    Frozen BatchNorm layers must not update their running statistics on the new data: they are
    part of what was learnt. Registered as a forward pre-hook, it costs a flag check per batch.
    """

    def __init__(self, model: nn.Module):
        trainable = {id(m) for module in trainable_head(model) for m in module.modules()}
        self.norms = [
            m for m in model.modules()
            if id(m) not in trainable and isinstance(m, nn.modules.batchnorm._NormBase)
        ]

    def __call__(self, module: nn.Module, args) -> None:
        if module.training:
            for norm in self.norms:
                norm.eval()


def apply_freeze(config, model: nn.Module) -> None:
    """``model.freeze: backbone`` applied to the run's ``model`` (a warning without ``model.weights``)."""
    if config.model.freeze != "backbone":
        return
    if not config.model.weights:
        warnings.warn(
            "model.freeze 'backbone' without model.weights: the frozen backbone keeps its random "
            "initialisation; set model.weights to a run folder or checkpoint",
            stacklevel=3,
        )
    freeze_backbone(model)
    model.register_forward_pre_hook(BackboneEval(model))


def _eval_loader(loader, valid):
    """``loader``'s rows in order, with the validation transform (no augmentation), no balancing,
    all of them in one process (a rank's share is cut from it, see :func:`_features_of`)."""
    from epochal.data.augment.evaluation import eval_transform

    augment = valid.augment if valid is not None else eval_transform(loader.image_size)
    return loader.with_rows(
        loader.rows, augment=augment, shuffle=False, balance=None, drop_last=False, rank=0, world_size=1,
        batch_size=getattr(valid, "batch_size", loader.batch_size),
    )


def _cache_key(model: nn.Module, loader) -> str:
    from epochal.data.feature_cache import loader_fingerprint, state_digest

    trainable = {id(p) for module in trainable_head(model) for p in module.parameters()}
    frozen = {k: v for k, v in model.state_dict(keep_vars=True).items() if id(v) not in trainable}
    parts = [state_digest(frozen), loader_fingerprint(loader), type(model).__name__]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def _features_of(model: nn.Module, loader, folder: Path | None, device, world=None):
    """``(features, targets, hit)`` of every row of ``loader`` (an :func:`_eval_loader`).

    In a data-parallel job (``world`` of several ranks) rank 0 looks the key up and shares a hit;
    on a miss each rank computes one contiguous share of the rows, every rank gathers the whole
    (in row order, so the tensors are those of one process), and rank 0 writes the cache file.
    """
    from epochal.data.feature_cache import (
        cached_features,
        extract_features,
        read_cached_features,
        write_cached_features,
    )
    from epochal.distributed import all_gather_uneven, run_on_main

    def compute(share) -> dict[str, torch.Tensor]:
        was_training = model.training
        model.to(device).eval()
        try:
            x, y = extract_features(functools.partial(pooled_features, model), share, device)
        finally:
            model.train(was_training)
        return {"features": x, "targets": y}

    key = _cache_key(model, loader)
    if world is None or world.world_size == 1:
        tensors, hit = cached_features(folder, key, functools.partial(compute, loader))
        return tensors["features"], tensors["targets"], hit
    cached = run_on_main(lambda: read_cached_features(folder, key))
    if cached is not None:
        return cached["features"], cached["targets"], True
    n, size = len(loader.rows), world.world_size
    rows = loader.rows[world.rank * n // size : (world.rank + 1) * n // size]
    mine = compute(loader.with_rows(rows)) if len(rows) else {"features": None, "targets": None}
    gathered = {name: all_gather_uneven(None if t is None else t.to(device)) for name, t in mine.items()}
    tensors = {name: t.cpu() for name, t in gathered.items()}
    if world.is_main:
        write_cached_features(folder, key, tensors)
    return tensors["features"], tensors["targets"], False


def feature_data(config, model: nn.Module, data, device, world=None):
    """Replace ``data`` by loaders of ``model``'s cached pooled features and ``model.forward`` by its head.

    In a data-parallel job the ranks share the extraction (each computes a share of the rows and
    all gather the whole, rank 0 writes the cache), then each reads its own share of every epoch.

    Args:
        config: the run's config (``data.cache_features`` set, ``model.freeze: backbone``).
        model: the whole network, its weights loaded.
        data: the image :class:`~epochal.data.DataLoaders` built from ``config.data``.
        device: where features are computed and batches delivered.
        world: this process's :class:`~epochal.distributed.World` (None: one process).

    Returns:
        :class:`~epochal.data.DataLoaders` of features with ``data``'s classes and info (plus
        ``feature_cache``: the cache folder and whether each split was a hit).
    """
    from epochal.data import DataLoaders, TensorLoader

    _classifier_head(model, "data.cache_features")
    cache_dir = config.data.options.get("cache_dir")
    folder = Path(cache_dir).expanduser() / "features" if cache_dir else None
    shard = {"rank": world.rank, "world_size": world.world_size} if world is not None else {}
    x, y, train_hit = _features_of(model, _eval_loader(data.train, data.valid), folder, device, world)
    per_rank = len(y) // shard.get("world_size", 1)
    train = TensorLoader(
        x, y, batch_size=config.data.batch_size, shuffle=True, balance=config.data.balance,
        device=device, seed=config.seed, drop_last=data.train.drop_last and per_rank > config.data.batch_size,
        **shard,
    )
    valid, valid_hit = None, None
    if data.valid is not None:
        every = data.valid.with_rows(data.valid.rows, rank=0, world_size=1)  # all rows; the shares come after
        vx, vy, valid_hit = _features_of(model, every, folder, device, world)
        valid = TensorLoader(vx, vy, batch_size=data.valid.batch_size, shuffle=False, device=device, **shard)
    # the run folder's model is the whole network; for this run it computes the head on features
    model.forward = functools.partial(head_from_features, model)
    cache = {"folder": str(folder) if folder else None, "train_hit": train_hit, "valid_hit": valid_hit}
    return DataLoaders(train=train, valid=valid, classes=data.classes, info={**data.info, "feature_cache": cache})
