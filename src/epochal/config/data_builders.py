"""Builders of a run's data from the recipe's ``data`` section (and the checks of its options)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from epochal.config.errors import check_kwargs

__all__ = [
    "build_data",
    "check_augment",
    "check_data_options",
    "label_counts",
    "mixup_alpha_for",
    "resolve_data_path",
]

_DATA_SUPPLIED = {
    "image_folder": ("root", "valid_pct", "seed", "image_size", "batch_size", "augment", "device", "balance"),
    "tabular": ("data", "target", "valid_pct", "seed", "batch_size", "device", "balance"),
}


def _data_builder(kind: str) -> Callable:
    from epochal import data

    return data.image_folder_loaders if kind == "image_folder" else data.tabular_loaders


#: Loader options that belong to distributed training: set by its launcher for each process.
_DISTRIBUTED = ("rank", "world_size")


def check_data_options(data) -> None:
    """Raise ValueError for a ``data.options`` key the loader builder does not take."""
    for key in _DISTRIBUTED:
        if key in data.options:
            raise ValueError(
                f"{key!r} in data.options is set for each process by distributed training (torchrun), "
                "not by a recipe; a single process given it would train on a share of the data"
            )
    check_kwargs(
        _data_builder(data.kind),
        data.options,
        f"in data.options (for kind {data.kind!r})",
        skip=_DATA_SUPPLIED[data.kind],
    )


def check_augment(spec: list[Any]) -> None:
    """Raise ValueError for an augmentation list that :func:`~epochal.data.augment.build_augmentations` refuses."""
    from epochal.data.augment import build_augmentations

    build_augmentations(_resolve_augment(spec, None))


def resolve_data_path(path: str | None) -> str:
    """A bundled data set name (``cifar10-mini``) or an existing file or folder."""
    from epochal.data import DATASETS, get_dataset

    if path is None:
        raise ValueError("no data: set data.path in the recipe or pass --data DIR")
    if Path(path).exists():
        return str(path)
    if path in DATASETS:
        return str(get_dataset(path))
    raise FileNotFoundError(f"data path {path!r} does not exist (and is not a registered data set: {sorted(DATASETS)})")


def mixup_alpha_for(macs: int) -> float:
    """MixUp strength (Zhang et al., *mixup: Beyond Empirical Risk Minimization*, 2018) for a model
    of ``macs`` multiply-accumulates per image at its default input size.

    Small models underfit and gain little from mixing; large ones overfit and gain more, so
    alpha grows with size: 0.1 below 1 GMAC, 0.2 below 4, 0.3 below 12, 0.4 above.
    """
    gmacs = macs / 1e9
    return 0.1 if gmacs < 1 else 0.2 if gmacs < 4 else 0.3 if gmacs < 12 else 0.4


def _model_macs(name: str) -> int:
    """Multiply-accumulates per sample of the registered model ``name`` at its default input size."""
    from epochal.models import model_summaries

    return next(row["macs"] for row in model_summaries(name) if row["name"] == name)


def _resolve_augment(spec: list[Any], model_name: str | None) -> list[Any]:
    """Replace ``alpha: auto`` of a mixing entry by :func:`mixup_alpha_for` the model's size.

    Without a model (validating the recipe alone) ``auto`` becomes 1.0, only to check the rest of
    the entry.
    """
    resolved = []
    for entry in spec:
        if isinstance(entry, Mapping) and entry.get("alpha") == "auto":
            alpha = mixup_alpha_for(_model_macs(model_name)) if model_name is not None else 1.0
            entry = {**entry, "alpha": alpha}
        resolved.append(entry)
    return resolved


def build_data(config, device: torch.device | str | None = None, rank: int = 0, world_size: int = 1):
    """The :class:`~epochal.data.DataLoaders` of ``config.data`` (validation split seeded by ``seed``).

    Args:
        config: the recipe.
        device: where batches are delivered.
        rank: this process's share in a data-parallel job (every rank splits the same
            data the same way, then reads its own part; ``data.batch_size`` is per rank).
        world_size: the number of processes of that job.
    """
    data = config.data
    kwargs: dict[str, Any] = {
        "valid_pct": data.valid_pct,
        "seed": config.seed,
        "batch_size": data.batch_size,
        "device": device,
    }
    if world_size > 1:
        kwargs.update(rank=rank, world_size=world_size)
    if data.balance is not None:
        kwargs["balance"] = data.balance
    path = resolve_data_path(data.path)
    if data.kind == "image_folder":
        kwargs.update(
            root=path,
            image_size=data.image_size,
            augment=_resolve_augment(data.augment, config.model.name) if data.augment else None,
        )
    else:
        kwargs.update(data=path, target=data.target)
    return _data_builder(data.kind)(**kwargs, **data.options)


def label_counts(
    info: Mapping[str, Any], targets: torch.Tensor | None = None
) -> tuple[torch.Tensor | None, int | None]:
    """Training samples per class (multi-label: carrying each label) and training samples, if known."""
    counts = info.get("class_counts")
    if counts:
        values = torch.tensor(list(counts.values()) if isinstance(counts, Mapping) else list(counts), dtype=torch.float)
        n_samples = info.get("train_size")
        if n_samples is None and not info.get("multi_label"):
            n_samples = int(values.sum())
        return values, n_samples
    if targets is None or not info.get("num_classes"):
        return None, None
    targets = targets.cpu()
    if targets.ndim == 2:
        return targets.float().sum(0), len(targets)
    return torch.bincount(targets.long(), minlength=int(info["num_classes"])).float(), len(targets)
