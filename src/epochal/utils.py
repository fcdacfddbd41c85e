"""Small helpers shared across areas (no epochal imports here).

Error messages that suggest the closest valid name, number and image-size validation, JSON-safe
values, atomic file writes and moving nested tensors to a device: each written once, so every area
words its errors and writes its files the same way.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import numbers
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "check_number",
    "device_constant",
    "did_you_mean",
    "host_to_device",
    "json_safe",
    "positive_number",
    "size_pair",
    "to_device",
    "unknown_argument_error",
    "unknown_name_error",
    "write_json_atomic",
]


# ----------------------------------------------------------------------------- suggestions
def did_you_mean(
    name: str, choices: Iterable[str], template: str = "; did you mean {}?", n: int = 1, cutoff: float = 0.6
) -> str:
    """``template`` filled with the closest choices (``'x'`` or ``'x', 'y'``), or an empty string.

    The closest are difflib's matches; when there are none, a choice that ``name`` begins (``lr`` ->
    ``lr_max``) or that begins ``name`` is suggested instead.

    Args:
        name: the unknown name.
        choices: the valid names.
        template: where the quoted suggestions go, e.g. ``" (did you mean {}?)"``.
        n: the most suggestions.
        cutoff: difflib's similarity threshold in [0, 1].
    """
    name, choices = str(name), [str(c) for c in choices]
    close = difflib.get_close_matches(name, choices, n=n, cutoff=cutoff)
    if not close and name:
        close = [c for c in choices if c and (c.startswith(name) or name.startswith(c))][:n]
    return template.format(", ".join(map(repr, close))) if close else ""


def unknown_name_error(kind: str, name: str, choices: Iterable[str]) -> ValueError:
    """A ValueError naming the bad value, the valid ones and the closest match."""
    choices = sorted(str(c) for c in choices)
    return ValueError(f"unknown {kind} {name!r}: valid values are {choices}{did_you_mean(name, choices)}")


def unknown_argument_error(owner: str, key: str, accepted: Iterable[str]) -> ValueError:
    """``<owner> takes no argument 'k' (did you mean 'x'?); it takes a, b``."""
    accepted = [str(a) for a in accepted]
    return ValueError(
        f"{owner} takes no argument {key!r}{did_you_mean(key, accepted, ' (did you mean {}?)')}; "
        f"it takes {', '.join(accepted)}"
    )


# ----------------------------------------------------------------------------- numbers and sizes
def check_number(
    value: Any, what: str, low: float | None = None, high: float | None = None, low_inclusive: bool = True
) -> float:
    """``value`` as a float after checking it is a finite real number (not a bool) within bounds.

    Raises:
        ValueError: naming ``what``, the bound it breaks and the value.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    value = float(value)
    if low is not None and (value < low or (value == low and not low_inclusive)):
        raise ValueError(f"{what} must be {'>=' if low_inclusive else '>'} {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{what} must be <= {high}, got {value}")
    return value


def positive_number(value: Any, what: str) -> float:
    """``value`` as a float after checking it is a finite number > 0."""
    return check_number(value, what, low=0.0, low_inclusive=False)


def _positive_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def size_pair(size: Any, what: str = "size") -> tuple[int, int]:
    """``(height, width)`` from an int (a square) or a pair of positive ints.

    Raises:
        ValueError: naming ``what`` and the value when it is neither.
    """
    if _positive_int(size):
        return int(size), int(size)
    if isinstance(size, tuple | list) and len(size) == 2 and all(_positive_int(s) for s in size):
        return int(size[0]), int(size[1])
    raise ValueError(f"{what} must be a positive int or (height, width), got {what}={size!r}")


# ----------------------------------------------------------------------------- files
def json_safe(obj: Any) -> Any:
    """A copy of nested dicts, lists and tuples that JSON can hold: NaN and infinities become None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def atomic_write_bytes(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync, then rename over ``path``.

    An interrupted or failed write leaves the previous file untouched, and two processes writing
    the same path never interleave their bytes. Missing parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` as UTF-8, atomically (see :func:`atomic_write_bytes`)."""
    data = text.encode("utf-8")
    return atomic_write_bytes(path, lambda handle: handle.write(data))


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON (non-finite floats as null, other unknown types as strings), atomically."""
    return atomic_write_text(path, json.dumps(json_safe(obj), indent=indent, default=str) + "\n")


# ----------------------------------------------------------------------------- tensors
def host_to_device(tensor, device):
    """Copy a (small) CPU tensor to ``device`` without making the host wait for the device.

    A copy from ordinary (pageable) host memory synchronises the CUDA stream first, even with
    ``non_blocking=True``: the next batch's preparation would wait for the current training
    step to finish. Staging through pinned memory makes the copy truly asynchronous.
    """
    import torch

    device = torch.device(device)
    if tensor.device == device or device.type == "cpu":
        return tensor.to(device)
    if tensor.device.type == "cpu" and device.type == "cuda":
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


@functools.lru_cache(maxsize=256)
def device_constant(values: tuple, dtype, device):
    """A constant tensor of ``values`` on ``device``, made once and cached (do not modify it).

    ``torch.tensor(values, device="cuda")`` copies from pageable memory and so synchronises the
    stream; code that runs per batch asks for its constants here instead.
    """
    import torch

    return host_to_device(torch.tensor(values, dtype=dtype), torch.device(device))


def to_device(obj, device, non_blocking: bool = True, memory_format=None):
    """Move tensors nested in tuples, lists and dicts to ``device`` (no copy when already there)."""
    import torch

    if isinstance(obj, torch.Tensor):
        # a tensor already in place is returned as is: cheaper than a no-op .to() in the batch loop
        if memory_format is not None and obj.ndim == 4 and obj.is_floating_point():
            if obj.device == device and obj.is_contiguous(memory_format=memory_format):
                return obj
            return obj.to(device, non_blocking=non_blocking, memory_format=memory_format)
        if obj.device == device:
            return obj
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, tuple | list):
        moved = [to_device(o, device, non_blocking, memory_format) for o in obj]
        return tuple(moved) if type(obj) is tuple else moved if type(obj) is list else type(obj)(moved)
    if isinstance(obj, dict):
        return {k: to_device(v, device, non_blocking, memory_format) for k, v in obj.items()}
    return obj
