"""When a rank dies or hangs: end the job with a message that names the rank, within a timeout.

Two mechanisms cover the cases:

- **torchrun's own**: when a worker exits with an error or is killed, torchrun's agent ends the
  other workers at once (SIGTERM) and prints a failure table naming the first failed rank, its exit
  code or signal. :func:`record_failure` writes the error into torchrun's error file
  (``TORCHELASTIC_ERROR_FILE``) so that table shows epochal's message rather than "To enable
  traceback see...". Every line epochal prints for an error starts with ``rank N:``
  (:func:`rank_prefix`).
- **the survivors' own**, for a rank that hangs or a launcher that does not watch its workers:
  every rendezvous and collective waits at most :func:`~epochal.distributed.world.timeout`; the
  waiting ranks then fail, and :func:`diagnose` asks, with ``monitored_barrier`` on the gloo
  control group, which ranks no longer answer, and names them in a :class:`RankFailure`.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator

import torch.distributed as dist

from epochal.distributed.group import control_group
from epochal.distributed.world import world

__all__ = ["RankFailure", "diagnose", "guard", "is_communication_error", "rank_prefix", "record_failure"]

#: Pieces of the messages gloo and NCCL raise when a peer is gone or late.
_COMMUNICATION_SIGNS = ("gloo", "nccl", "connection closed", "connection reset", "timed out", "timeout",
                        "broken pipe", "peer")
#: The longest the diagnosis waits for the other ranks to answer.
_DIAGNOSIS_SECONDS = 10.0


class RankFailure(RuntimeError):
    """A collective failed because other ranks stopped answering.

    Attributes:
        rank: the rank that noticed.
        missing: the ranks that did not answer the diagnosis (empty when it could not tell).
    """

    def __init__(self, message: str, rank: int, missing: list[int]):
        super().__init__(message)
        self.rank, self.missing = rank, missing


def rank_prefix() -> str:
    """``"rank N: "`` in a job of several processes, else an empty string (for error lines)."""
    current = world()
    return f"rank {current.rank}: " if current.distributed else ""


def is_communication_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a failed rendezvous or collective (a peer gone, a timeout)."""
    if isinstance(exc, RankFailure):
        return False
    if isinstance(exc, dist.DistError):
        return True
    return isinstance(exc, RuntimeError) and any(sign in str(exc).lower() for sign in _COMMUNICATION_SIGNS)


def _missing_ranks(seconds: float) -> list[int] | None:
    """The ranks that do not reach a monitored barrier in ``seconds`` (None: this rank cannot tell)."""
    try:
        dist.monitored_barrier(group=control_group(), timeout=datetime.timedelta(seconds=seconds),
                               wait_all_ranks=True)
    except Exception as exc:  # only rank 0 learns who is late; the others only that rank 0 did not answer
        return _ranks_in(str(exc)) if world().is_main else None
    return []


def _ranks_in(text: str) -> list[int] | None:
    """The rank numbers of ``monitored_barrier``'s report (e.g. "Ranks 1, 3 failed to pass ...")."""
    import re

    found = re.search(r"[Rr]anks? ([\d, ]+) failed", text)
    if not found:
        return None
    return sorted({int(r) for r in re.findall(r"\d+", found.group(1))})


def diagnose(exc: BaseException) -> RankFailure | None:
    """A :class:`RankFailure` naming the ranks that stopped answering, for a failed collective.

    Returns:
        None when ``exc`` is not a communication failure or this is a single process.
    """
    current = world()
    if not current.distributed or not dist.is_initialized() or not is_communication_error(exc):
        return None
    gloo = control_group() is not None or dist.get_backend() == "gloo"
    missing = _missing_ranks(_DIAGNOSIS_SECONDS) if gloo else None
    original = " ".join(str(exc).split())[:300]
    if missing:
        who = ", ".join(str(r) for r in missing)
        message = (f"rank {current.rank}: rank {who} stopped answering (it died, hung or failed; its own message "
                   f"says why) while this rank waited for it in a collective: {original}")
    elif missing is not None and current.is_main:
        message = (f"rank {current.rank}: a collective failed, and every rank answered the check that followed: "
                   f"{original}")
    elif current.is_main:  # the check itself failed: a peer's connection is gone, so it died
        message = (f"rank {current.rank}: another rank died while this rank waited for it in a collective (torchrun's "
                   f"failure table names it, and its own message says why): {original}")
    else:
        message = (f"rank {current.rank}: a collective failed while this rank waited for the others (rank 0's "
                   f"message names the ranks that stopped answering): {original}")
    return RankFailure(message, current.rank, missing or [])


@contextlib.contextmanager
def guard() -> Iterator[None]:
    """Turn a failed collective inside the block into a :class:`RankFailure` that names the missing ranks."""
    try:
        yield
    except Exception as exc:
        failure = diagnose(exc)
        if failure is None:
            raise
        raise failure from exc


def record_failure(exc: BaseException, message: str | None = None) -> None:
    """Write ``exc`` into torchrun's error file, so its failure table shows epochal's message.

    Does nothing outside torchrun (no ``TORCHELASTIC_ERROR_FILE``) or when the file cannot be written.
    """
    if not os.environ.get("TORCHELASTIC_ERROR_FILE"):
        return
    with contextlib.suppress(Exception):
        from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

        if message is not None:
            exc = type(exc)(message) if _rebuildable(exc) else RuntimeError(message)
        ErrorHandler().record_exception(exc)


def _rebuildable(exc: BaseException) -> bool:
    try:
        type(exc)("probe")
    except Exception:
        return False
    return True
