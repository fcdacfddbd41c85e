"""Small helpers shared across areas (no epochal imports here).

Error messages that suggest the closest valid name, number and image-size validation, JSON-safe
values, atomic file writes and moving nested tensors to a device: each written once, so every area
words its errors and writes its files the same way.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import functools
import hashlib
import json
import math
import numbers
import os
import re
import reprlib
import secrets
import shutil
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

__all__ = [
    "DiskFullError",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_compile_mode",
    "check_number",
    "compile_options",
    "content_digest",
    "device_constant",
    "did_you_mean",
    "format_bytes",
    "host_to_device",
    "is_disk_full",
    "json_safe",
    "positive_number",
    "remove_stale_temps",
    "short_repr",
    "shorten",
    "size_pair",
    "temp_file_beside",
    "to_device",
    "unknown_argument_error",
    "unknown_name_error",
    "unsafe_pickle_message",
    "weights_only_detail",
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
    if len(name) > 200:  # no name is that long: a pasted value, not a typo
        return ""
    close = difflib.get_close_matches(name, choices, n=n, cutoff=cutoff)
    if not close and name:
        close = [c for c in choices if c and (c.startswith(name) or name.startswith(c))][:n]
    return template.format(", ".join(map(repr, close))) if close else ""


def shorten(text: str, limit: int = 300) -> str:
    """``text`` cut to about ``limit`` characters, saying how long it was."""
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[: max(limit - 30, 10)]}... ({len(text):,} characters)"


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple, _REPR.maxset = 3, 8, 8, 8, 8
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 80, 80, 40


def short_repr(value: Any, limit: int = 120) -> str:
    """A readable ``repr`` of a value quoted in an error: nested and long parts elided.

    Built without expanding the value, so a huge (or alias-shared) structure costs nothing.
    """
    if isinstance(value, str) and len(value) > _REPR.maxstring:
        return f"{value[: _REPR.maxstring - 20]!r}... ({len(value):,} characters)"
    return shorten(_REPR.repr(value), limit)


def unknown_name_error(kind: str, name: str, choices: Iterable[str]) -> ValueError:
    """A ValueError naming the bad value, the valid ones and the closest match."""
    choices = sorted(str(c) for c in choices)
    return ValueError(f"unknown {kind} {short_repr(name)}: valid values are {choices}{did_you_mean(name, choices)}")


def check_compile_mode(mode: str | None) -> str | None:
    """``mode`` when inductor's ``torch.compile(mode=...)`` knows it (None: its default), else a
    ValueError naming the modes of the installed torch."""
    if mode is None:
        return None
    from torch._inductor import list_mode_options

    modes = list_mode_options()
    if mode not in modes:
        raise unknown_name_error("torch.compile mode", mode, modes)
    return mode


def compile_options(compile: bool | str, mode: str | None = None) -> dict[str, str] | None:
    """The ``torch.compile`` keyword arguments of a ``compile=`` setting (None: not compiled): the
    backend (``True`` is inductor) and, for inductor alone, the ``mode``."""
    if not compile:
        return None
    backend = compile if isinstance(compile, str) else "inductor"
    return {"backend": backend, **({"mode": mode} if mode and backend == "inductor" else {})}


def unknown_argument_error(owner: str, key: str, accepted: Iterable[str]) -> ValueError:
    """``<owner> takes no argument 'k' (did you mean 'x'?); it takes a, b``."""
    accepted = [str(a) for a in accepted]
    return ValueError(
        f"{owner} takes no argument {short_repr(key)}{did_you_mean(key, accepted, ' (did you mean {}?)')}; "
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
def content_digest(*parts: Any) -> str:
    """A sha256 over tensors (dtype, shape and bytes) and plain data (as JSON), for cache keys."""
    import torch

    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            digest.update(str((part.dtype, tuple(part.shape))).encode())
            digest.update(part.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            digest.update(json.dumps(part, default=str).encode())
    return digest.hexdigest()


def json_safe(obj: Any) -> Any:
    """A copy of nested dicts, lists and tuples that JSON can hold: NaN and infinities become None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def format_bytes(n: float) -> str:
    """``n`` bytes for people: ``'512 B'``, ``'112.5 KiB'``, ``'3.2 GiB'``."""
    if abs(n) < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if abs(n) < 1024:
            return f"{n:.1f} {unit}"
    return f"{n / 1024:.1f} TiB"


class DiskFullError(OSError):
    """The file system of ``path`` has no space left (or the quota is used up).

    Raised instead of whatever the writer reported (torch's ``enforce fail``, a worker's bus
    error): the partial file is removed and a previous file of that name is left as it was.

    Attributes:
        path: the file that could not be written.
    """

    def __init__(self, path: str | os.PathLike, detail: str = ""):
        self.path = Path(path)
        try:
            free = f" ({format_bytes(shutil.disk_usage(self.path.parent).free)} free)"
        except OSError:
            free = ""
        message = (f"no space left on {self.path.parent}{free} while writing {self.path.name}{detail}; "
                   "free some space there or write elsewhere")
        super().__init__(errno.ENOSPC, message, str(self.path))

    def __str__(self) -> str:
        return self.strerror


def is_disk_full(error: BaseException | None) -> bool:
    """Whether ``error`` (or an error it was raised from or during) is ENOSPC or EDQUOT."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def _writer_tag() -> str:
    """``<host>-<pid>``: the writer part of temporary names, so a later run can tell a dead writer's file."""
    host = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"
    return f"{host}-{os.getpid()}"


_TEMP_NAME = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-[A-Za-z0-9_]+\.tmp$")


def temp_file_beside(path: str | os.PathLike) -> tuple[int, Path]:
    """Create ``.<name>.<host>-<pid>-<random>.tmp`` beside ``path``; return its descriptor and path.

    The name says which process writes it, so :func:`remove_stale_temps` can remove the leftovers
    of killed writers without ever touching the file of a live one. The file gets the mode a new
    file gets from ``open()`` (``0o666`` less the umask), so the file it becomes does too.
    """
    path = Path(path)
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{_writer_tag()}-{secrets.token_hex(4)}.tmp"
        try:
            # 0o666 and the umask, as for any new file (mkstemp's 0o600 would make run files private)
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file beside {path}")


def _process_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill would terminate it there: never judge, never remove
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of writers on this host that no longer run (killed mid-write).

    Returns:
        The removed files (a live writer's temporary file is never removed).
    """
    host = _writer_tag().rsplit("-", 1)[0]
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None or match["host"] != host or not entry.is_file(follow_symlinks=False):
            continue
        if int(match["pid"]) != os.getpid() and not _process_alive(int(match["pid"])):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


class _RecordingFile:
    """A file whose ``write`` remembers the OS error it raised (torch reports it as RuntimeError)."""

    def __init__(self, handle: IO[bytes]):
        self._handle, self.error = handle, None

    def write(self, data) -> int:
        try:
            return self._handle.write(data)
        except OSError as error:
            self.error = error
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


def atomic_write_bytes(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync, then rename over ``path``.

    An interrupted or failed write leaves the previous file untouched, and two processes writing
    the same path never interleave their bytes. Missing parent folders are created.

    Raises:
        DiskFullError: the file system is full (the temporary file is removed).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file_beside(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            recording = _RecordingFile(handle)
            try:
                write(recording)
                handle.flush()
                os.fsync(handle.fileno())
            except Exception as error:
                if is_disk_full(recording.error) or is_disk_full(error):
                    kept = "; the previous file is unchanged" if path.exists() else ""
                    raise DiskFullError(path, kept) from error
                raise
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
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


def unsafe_pickle_message(path: str | os.PathLike, exc: BaseException) -> str | None:
    """What to say when ``torch.load(weights_only=True)`` refused ``path`` for holding code, else None.

    torch's own message suggests ``weights_only=False``, which runs the file's code; this one says
    what epochal accepts and how to convert a file the user trusts.
    """
    text = str(exc)
    found = re.search(r"Unsupported global: GLOBAL (\S+)|but got (<class [^>]+>)", text)
    if "weights only load failed" not in text.lower() or found is None:
        return None  # not refused for code: damaged bytes (see weights_only_detail)
    what = f" ({found.group(1) or found.group(2)})"
    return (
        f"refusing to load {path}: it holds Python objects{what}, and unpickling them can run any code; epochal "
        "reads only its own checkpoints (tensors and plain data) and .safetensors weights. If you trust the "
        f"file, convert it once in your own code: epochal.convert_trusted_checkpoint({str(path)!r}, "
        "'weights.safetensors') unpickles it and saves its state_dict as safetensors (see docs/learner.md, "
        "'Checkpoint safety')"
    )


def weights_only_detail(exc: BaseException) -> str:
    """The reason in a ``torch.load(weights_only=True)`` error, without torch's advice around it."""
    text = str(exc)
    _, marker, rest = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in (rest if marker else text).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


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
