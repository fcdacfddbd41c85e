"""A full disk: checkpoints and packed shards say "no space left on <folder>", keep what was there
before and remove their partial files. On a real tmpfs when it can be mounted (root), and with
ENOSPC raised at the OS boundary (write, fsync, posix_fallocate) everywhere."""

from __future__ import annotations

import errno
import io
import os
import signal

import numpy as np
import pytest
import torch
import typer

from epochal.cli._output import command
from epochal.data import pack_image_cache
from epochal.data.folders import image_folder_items
from epochal.state import load_checkpoint, save_checkpoint
from epochal.utils import DiskFullError

PACK = """
import errno, sys
from epochal.data import pack_image_cache
from epochal.data.folders import image_folder_items
try:
    pack_image_cache(image_folder_items(sys.argv[1]), sys.argv[2], num_shards=2, workers=int(sys.argv[3]),
                     progress=False)
except OSError as error:
    if error.errno != errno.ENOSPC:
        raise
    print("ENOSPC", error, flush=True)
    sys.exit(3)
print("PACKED", flush=True)
"""


def test_checkpoint_on_a_full_tmpfs_keeps_the_previous_one(small_fs, temp_files):
    folder = small_fs("512k")
    path = save_checkpoint(folder / "last.pt", {"model": {"w": torch.arange(10.0)}, "step": 1})
    with pytest.raises(DiskFullError, match=rf"no space left on {folder} .*last.pt.*previous file is unchanged"):
        save_checkpoint(path, {"model": {"w": torch.zeros(1 << 18)}, "step": 2})  # 1 MiB of weights
    assert load_checkpoint(path)["step"] == 1 and temp_files(folder) == []


@pytest.mark.parametrize("workers", [0, 2])
def test_packing_into_a_full_tmpfs_reports_instead_of_dying(small_fs, pack_images, spawn, temp_files, workers):
    cache = small_fs("192k") / "cache"  # room for the first of two 115 kB shards, not the second
    child = spawn(PACK, pack_images, cache, workers)
    out, err = child.communicate(timeout=600)
    assert child.returncode != -signal.SIGBUS, "the packer died of a bus error"
    assert child.returncode == 3, err[-2000:]
    assert f"no space left on {cache}" in out and "shard-00001.u8" in out
    assert (cache / "shard-00000.u8").exists() and (cache / "shard-00000.json").exists()  # finished work kept
    assert temp_files(cache) == [] and not (cache / "manifest.json").exists()


class _FullDisk(io.RawIOBase):
    """A file that takes ``room`` bytes, then fails every write with ENOSPC (as the kernel does)."""

    def __init__(self, real, room: int):
        self.real, self.room = real, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.real.write(data)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_torch_save_into_a_full_disk_is_named_not_enforce_fail(tmp_path, monkeypatch, temp_files):
    path = save_checkpoint(tmp_path / "last.pt", {"step": 1})
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: _FullDisk(real_fdopen(fd, *a, **k), room=4096))
    with pytest.raises(DiskFullError, match=rf"no space left on {tmp_path} .*writing last.pt") as info:
        save_checkpoint(path, {"model": {"w": torch.zeros(100_000)}, "step": 2})
    assert "enforce fail" not in str(info.value)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1 and temp_files(tmp_path) == []


def test_enospc_at_fsync_is_a_full_disk_too(tmp_path, monkeypatch, temp_files):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DiskFullError, match="writing first.pt"):
        save_checkpoint(tmp_path / "first.pt", {"step": 1})
    assert list(tmp_path.iterdir()) == []


def test_a_shard_that_cannot_be_reserved_is_a_full_disk(pack_images, tmp_path, monkeypatch, temp_files):
    calls = []

    def fallocate(fd, offset, length):
        calls.append(length)
        if len(calls) == 2:  # the second shard
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, offset, length)

    real = os.posix_fallocate
    monkeypatch.setattr(os, "posix_fallocate", fallocate)
    cache = tmp_path / "cache"
    with pytest.raises(DiskFullError, match=rf"no space left on {cache} .*shard-00001.u8 \(a shard of"):
        pack_image_cache(image_folder_items(pack_images), cache, num_shards=2, workers=0, progress=False)
    assert calls == [150 * 3 * 16 * 16] * 2
    assert (cache / "shard-00000.u8").exists() and temp_files(cache) == []


def test_file_systems_without_fallocate_get_real_zeros(pack_images, tmp_path, monkeypatch):
    def unsupported(fd, offset, length):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    items = image_folder_items(pack_images)
    expected = pack_image_cache(items, tmp_path / "a", workers=0, progress=False).gather(torch.arange(300))
    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    packed = pack_image_cache(items, tmp_path / "b", workers=0, progress=False)
    assert np.array_equal(packed.gather(torch.arange(300)).numpy(), expected.numpy())


def test_the_cli_reports_a_full_disk_as_one_line_without_traceback_hint(tmp_path, capsys):
    @command
    def save(json_output: bool = False):
        raise DiskFullError(tmp_path / "checkpoints" / "last.pt", "; the previous file is unchanged")

    with pytest.raises(typer.Exit):
        save()
    err = capsys.readouterr().err
    assert err.startswith(f"error: no space left on {tmp_path / 'checkpoints'}") and "--debug" not in err
    assert err.count("\n") == 1
