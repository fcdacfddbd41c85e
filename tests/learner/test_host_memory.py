"""The Learner keeps freed host memory on the CPU (glibc ``mallopt``), once per process, when asked."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from epochal.data.base import ArrayLoader
from epochal.learner import Learner, host_memory

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

#: a 64 MiB tensor, then glibc's own count of bytes it holds in mmap'ed blocks (mallinfo2: glibc >= 2.33)
PROBE = textwrap.dedent("""
    import ctypes, sys, torch
    from epochal.learner.host_memory import retain_freed_memory

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    applied = retain_freed_memory() if sys.argv[1] == "retain" else None
    before = libc.mallinfo2()
    big = torch.empty(64 * 2**20, dtype=torch.uint8)
    held = libc.mallinfo2()
    del big
    after = libc.mallinfo2()
    print(applied, held.hblkhd - before.hblkhd, after.arena - before.arena)
""")


def _probe(mode: str) -> tuple[str, int, int]:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120,
                          check=True)
    applied, mmapped, arena = done.stdout.split()
    return applied, int(mmapped), int(arena)


@pytest.mark.skipif(not GLIBC, reason="glibc's allocator only")
def test_large_blocks_come_from_the_heap_and_stay_there_once_retained():
    applied, mmapped, _ = _probe("system")
    assert applied == "None" and mmapped > 48 * 2**20  # by default glibc mmaps the block (and unmaps it)
    applied, mmapped, arena = _probe("retain")
    assert applied == "True" and mmapped == 0  # no mmap: the block is heap memory ...
    assert arena > 48 * 2**20  # ... and after `del` the heap still holds it (part came from free heap space)


def _learner(**kwargs) -> Learner:
    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    return Learner(nn.Linear(4, 2), (ArrayLoader(x, y, batch_size=8), None), optimizer="sgd", device="cpu", **kwargs)


def test_fit_on_the_cpu_retains_freed_memory_unless_told_not_to(monkeypatch):
    calls = []
    monkeypatch.setattr("epochal.learner.loop.retain_freed_memory", lambda: calls.append(1) or True)
    _learner().fit(1)
    assert calls == [1]
    _learner(retain_host_memory=False).fit(1)
    assert calls == [1]


def test_retain_is_decided_once_per_process(monkeypatch):
    monkeypatch.setattr(host_memory, "_applied", None)
    seen = []
    monkeypatch.setattr(host_memory, "_set_mallopt", lambda: seen.append(1) or False)
    assert host_memory.retain_freed_memory() is False and host_memory.retain_freed_memory() is False
    assert seen == [1]

