"""Output conventions shared by every command.

* ``--json``: the last line of stdout is one JSON object (progress and logs go to stderr).
* Errors: exit status 1 and one line on stderr, ``error: <message>`` (plus ``{"error": ...}`` on
  stdout with ``--json``); no traceback unless ``epochal --debug`` asked for it. In a job of several
  processes (torchrun) the message starts with ``rank N:`` and also goes to torchrun's error file,
  so its failure table shows it.
* Ctrl-C: ``interrupted`` on stderr and exit status 130 (``train`` says where it stopped and how
  to resume).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from epochal.utils import json_safe, shorten

__all__ = ["DEBUG", "DeviceOpt", "JsonOpt", "command", "console", "emit_json", "one_line"]

#: ``--json`` of every command.
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object as the last stdout line.")]
#: ``--device`` of every command that runs a model.
DeviceOpt = Annotated[
    str | None, typer.Option("--device", help="cpu, cuda, cuda:1 ... (default: CUDA when available).")
]

#: Set by ``epochal --debug``: re-raise errors with their traceback.
DEBUG = {"enabled": False}

#: Exceptions that mean the user asked for something that cannot be done (not a bug in epochal).
_USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    FileNotFoundError,
    NotADirectoryError,
    PermissionError,
    ImportError,
    KeyError,
    TypeError,
)


def _user_errors() -> tuple[type[BaseException], ...]:
    from epochal.distributed import RankFailure
    from epochal.runs.lock import RunLockedError
    from epochal.state import CheckpointError
    from epochal.utils import DiskFullError

    # RankFailure: the diagnosis is the message; the traceback of a wait in a collective says no more
    return (*_USER_ERRORS, CheckpointError, RunLockedError, DiskFullError, RankFailure)


def emit_json(obj: dict[str, Any]) -> None:
    """Print ``obj`` as one JSON line on stdout (NaN and infinities as null)."""
    sys.stdout.flush()
    print(json.dumps(json_safe(obj), default=str), flush=True)


#: The longest error line printed: enough for a report of several keys, never a screenful of data.
MAX_ERROR_CHARS = 2000


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (multi-line validation reports joined with '; '), cut to
    :data:`MAX_ERROR_CHARS`."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    text = "; ".join(line.strip() for line in text.splitlines() if line.strip()) or type(exc).__name__
    return shorten(text, MAX_ERROR_CHARS)


def console():
    """A rich console on stdout for tables (wide when piped, so rows are not folded at 80 columns)."""
    from rich.console import Console

    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(soft_wrap=True, width=160 if piped else None)


def _in_job(exc: BaseException, message: str) -> str:
    """``message`` prefixed with this process's rank, and recorded for torchrun, in a job of several."""
    from epochal.distributed import launched, rank_prefix, record_failure

    if not launched():
        return message
    prefix = rank_prefix()
    message = message if message.startswith(prefix) else f"{prefix}{message}"
    record_failure(exc, message)
    return message


def command(fn: Callable) -> Callable:
    """Wrap a command: user errors become one line on stderr and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        json_output = bool(kwargs.get("json_output", False))
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:  # Ctrl-C outside a fit (which reports its own): say so, exit as shells expect
            if DEBUG["enabled"]:
                raise
            print("interrupted", file=sys.stderr, flush=True)
            raise typer.Exit(130) from None
        except Exception as exc:
            if DEBUG["enabled"]:
                raise
            message = one_line(exc)
            if not isinstance(exc, _user_errors()):
                message = f"{type(exc).__name__}: {message} (run `epochal --debug ...` for the traceback)"
            message = _in_job(exc, message)
            if json_output:
                emit_json({"error": message})
            print(f"error: {message}", file=sys.stderr, flush=True)
            raise typer.Exit(1) from None

    return wrapper
