"""Small helpers shared across areas (no epochal imports here)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["did_you_mean", "to_device", "unknown_name_error"]


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown_name_error(kind: str, name: str, choices: Iterable[str]) -> ValueError:
    """A ValueError naming the bad value, the valid ones and the closest match."""
    choices = sorted(str(c) for c in choices)
    return ValueError(f"unknown {kind} {name!r}: valid values are {choices}{did_you_mean(name, choices)}")


def to_device(obj, device, non_blocking: bool = True, memory_format=None):
    """Move tensors nested in tuples, lists and dicts to ``device`` (no copy when already there)."""
    import torch

    if isinstance(obj, torch.Tensor):
        if memory_format is not None and obj.ndim == 4 and obj.is_floating_point():
            return obj.to(device, non_blocking=non_blocking, memory_format=memory_format)
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(o, device, non_blocking, memory_format) for o in obj)
    if isinstance(obj, dict):
        return {k: to_device(v, device, non_blocking, memory_format) for k, v in obj.items()}
    return obj
