"""Features of a frozen network computed once and kept on disk (feature extraction).

Training only a classifier on the pooled features of a frozen pretrained network is the
"off-the-shelf features" baseline of Razavian et al., *CNN Features off-the-shelf: an Astounding
Baseline for Recognition* (CVPR workshops 2014) and Donahue et al., *DeCAF* (ICML 2014). Since
the network does not change, its features are a pure function of (the frozen weights, the
delivered inputs): they are computed once and every epoch of every later run reads them.

The cache key is the digest of the frozen weights (:func:`state_digest`) and the fingerprint of
the loader's inputs (:func:`loader_fingerprint`: the packed images' source fingerprint, the rows,
size, normalisation and transform). Features are computed **without augmentation**: a random
flip or crop would give other inputs each epoch, which one cached tensor cannot stand for, so
the caller hands in an evaluation-transform loader. A cache file is written atomically and read
back with ``weights_only``; a file that does not load (truncated, or of another key) is
recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

from epochal.utils import atomic_write_bytes

__all__ = [
    "cached_features",
    "extract_features",
    "loader_fingerprint",
    "read_cached_features",
    "state_digest",
    "write_cached_features",
]

_FORMAT = 1


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """A SHA-256 of the names, shapes, dtypes and bytes of a state dict's tensors, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous().reshape(-1)
        digest.update(json.dumps([name, list(tensor.shape), str(tensor.dtype)]).encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def loader_fingerprint(loader) -> str:
    """A hash of what the inputs ``loader`` delivers depend on.

    A loader with a ``fingerprint()`` method of its own is asked; an
    :class:`~epochal.data.loaders.ImageLoader` over a packed cache is hashed from the cache's
    source fingerprint, its rows, delivered size, normalisation, transform and dtype.
    """
    own = getattr(loader, "fingerprint", None)
    if callable(own):
        return str(own())
    manifest = getattr(loader.images, "manifest", None)
    if manifest is None or "fingerprint" not in manifest:
        raise ValueError(
            f"{type(loader).__name__} gives no fingerprint of its inputs, so its features cannot be cached; "
            "use a loader built by image_folder_loaders"
        )
    norm = None if loader.normalize is None else loader.normalize.to_spec()
    settings = [manifest["fingerprint"], loader.image_size, norm, loader.augment.to_spec(), str(loader.dtype)]
    digest = hashlib.sha256(json.dumps(settings, default=str).encode())
    digest.update(np.ascontiguousarray(loader.rows.numpy()).tobytes())
    return digest.hexdigest()


@torch.no_grad()
def extract_features(
    features: Callable[[torch.Tensor], torch.Tensor], loader, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features, targets)`` of every sample of ``loader`` in its epoch-0 order, on the CPU.

    Args:
        features: maps a batch of inputs to ``(N, D)`` features (the frozen network, in eval mode).
        loader: an epoch-addressable loader without augmentation.
        device: where ``features`` runs.
    """
    outputs, targets = [], []
    for inputs, target in loader.iter_epoch(0):
        outputs.append(features(inputs.to(device)).float().cpu())
        targets.append(target.cpu())
    if not outputs:
        raise ValueError("the loader gave no batches to extract features from")
    return torch.cat(outputs), torch.cat(targets)


def read_cached_features(folder: str | os.PathLike | None, key: str) -> dict[str, torch.Tensor] | None:
    """The tensors of ``key`` in ``folder/<key>.pt``; None when absent, damaged or of another key."""
    path = None if folder is None else Path(folder) / f"{key}.pt"
    if path is None or not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("format") == _FORMAT and payload.get("key") == key:
            return dict(payload["tensors"])
    except Exception:  # noqa: BLE001 - a damaged cache file is recomputed and replaced
        pass
    return None


def write_cached_features(folder: str | os.PathLike | None, key: str, tensors: Mapping[str, torch.Tensor]) -> None:
    """Save ``tensors`` as ``folder/<key>.pt``, atomically (nothing without a folder)."""
    if folder is not None:
        payload = {"format": _FORMAT, "key": key, "tensors": dict(tensors)}
        atomic_write_bytes(Path(folder) / f"{key}.pt", lambda handle: torch.save(payload, handle))


def cached_features(
    folder: str | os.PathLike | None, key: str, compute: Callable[[], dict[str, torch.Tensor]]
) -> tuple[dict[str, torch.Tensor], bool]:
    """The tensors of ``key`` from ``folder/<key>.pt``, else ``compute()`` saved there.

    Args:
        folder: the cache folder (None: compute, keep nothing).
        key: the cache key (hex digest of the weights and data).
        compute: returns the tensors to cache.

    Returns:
        ``(tensors, hit)``: ``hit`` tells whether they came from the cache.
    """
    cached = read_cached_features(folder, key)
    if cached is not None:
        return cached, True
    tensors = compute()
    write_cached_features(folder, key, tensors)
    return tensors, False
