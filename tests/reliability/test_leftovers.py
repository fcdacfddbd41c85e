"""What killed writers leave behind: temporary files are cleaned once their writer is dead (never
while it lives), and packing workers die with their parent. Real processes, killed with SIGKILL."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import torch
from torch import nn

from epochal.data import pack_image_cache
from epochal.data.base import ArrayLoader
from epochal.data.decode import load_rgb_array
from epochal.data.folders import image_folder_items
from epochal.learner import Learner
from epochal.utils import remove_stale_temps

# Writes part of a file atomically, says READY, then waits (for a kill, or for stdin to close).
WRITER = """
import sys
from epochal.utils import atomic_write_bytes

def write(handle):
    handle.write(b"partial " * 1000)
    handle.flush()
    print("READY", flush=True)
    sys.stdin.read()
    handle.write(sys.argv[2].encode())

atomic_write_bytes(sys.argv[1], write)
"""

# Packs, with a decoder that blocks in the given process kind: READY <pid> once blocked.
BLOCKED_PACK = """
import os, sys, threading
import epochal.data.packed as packed
from epochal.data.folders import image_folder_items

real, parent = packed.load_rgb_array, os.getpid()

def blocking(path, size=None, fit="crop"):
    if path.endswith("007.png"):
        print("READY", os.getpid(), flush=True)
        threading.Event().wait()  # forever: only a kill ends this process
    return real(path, size, fit)

packed.load_rgb_array = blocking  # forked workers inherit it
packed.pack_image_cache(image_folder_items(sys.argv[1]), sys.argv[2], workers=int(sys.argv[3]), progress=False)
"""


def _killed(child) -> None:
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL


def test_temps_of_killed_writers_are_removed_and_a_live_writers_is_kept(tmp_path, spawn, read_line):
    target = tmp_path / "last.pt"
    killed, alive = spawn(WRITER, target, "killed"), spawn(WRITER, target, "alive")
    assert read_line(killed.stdout) == "READY" and read_line(alive.stdout) == "READY"
    names = [p.name for p in tmp_path.iterdir()]
    of_killed = [n for n in names if f"-{killed.pid}-" in n]
    of_alive = [n for n in names if f"-{alive.pid}-" in n]
    assert len(names) == 2 and len(of_killed) == len(of_alive) == 1  # the temp names carry the writer
    _killed(killed)
    assert [p.name for p in remove_stale_temps(tmp_path)] == of_killed
    assert [p.name for p in tmp_path.iterdir()] == of_alive
    alive.communicate("", timeout=120)
    assert alive.returncode == 0
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"] and target.read_bytes().endswith(b"alive")


def test_a_fit_removes_the_checkpoint_temps_of_killed_runs(tmp_path, spawn, read_line):
    run = tmp_path / "run"
    child = spawn(WRITER, run / "checkpoints" / "last.pt", "never")
    assert read_line(child.stdout) == "READY"
    _killed(child)
    assert len(list((run / "checkpoints").iterdir())) == 1
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    learner = Learner(nn.Linear(4, 2), (ArrayLoader(x, y, batch_size=8), ArrayLoader(x, y, batch_size=8)),
                      device="cpu", run_dir=run)
    learner.fit(1)
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]


def test_a_repack_removes_the_shard_temp_of_a_killed_packer(pack_images, tmp_path, spawn, read_line):
    cache = tmp_path / "cache"
    child = spawn(BLOCKED_PACK, pack_images, cache, 0)
    assert read_line(child.stdout).startswith("READY")
    _killed(child)
    leftovers = [p.name for p in cache.iterdir() if ".tmp" in p.name]
    assert len(leftovers) == 1 and leftovers[0].startswith(".shard-00000.u8.")
    items = image_folder_items(pack_images)
    packed = pack_image_cache(items, cache, workers=0, progress=False)
    assert sorted(p.name for p in cache.iterdir()) == [
        "classes.json", "manifest.json", "shard-00000.json", "shard-00000.u8", "targets.npy"]
    assert np.array_equal(packed.gather(torch.tensor([7]))[0].numpy(), load_rgb_array(items.paths[7]))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the blocked decoder is inherited by forked workers only")
def test_pack_workers_die_with_their_killed_parent(pack_images, tmp_path, spawn, read_line, wait_gone):
    child = spawn(BLOCKED_PACK, pack_images, tmp_path / "cache", 2)
    _, worker = read_line(child.stdout).split()
    assert int(worker) != child.pid  # the blocked decoder runs in a worker process
    _killed(child)
    assert wait_gone(int(worker), timeout=60), f"worker {worker} outlived its killed parent"
