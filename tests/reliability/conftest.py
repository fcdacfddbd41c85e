"""Fixtures of the reliability tests: a small real file system, helper processes, images to pack."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture
def small_fs(tmp_path):
    """``make(size)`` mounts a tmpfs of ``size`` (e.g. ``"256k"``) and returns it; needs root."""
    mounted = []

    def make(size: str) -> Path:
        point = tmp_path / f"fs-{uuid.uuid4().hex[:8]}"
        point.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'mount failed'}); "
                        "the simulated full-disk tests cover this")
        mounted.append(point)
        return point

    yield make
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


@pytest.fixture
def spawn():
    """``spawn(code, *args)`` starts ``python -c code args`` (this checkout importable, pipes for
    stdin and stdout); children still running at the end of the test are killed."""
    started: list[subprocess.Popen] = []
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}

    def start(code: str, *args) -> subprocess.Popen:
        child = subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=env, text=True,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        started.append(child)
        return child

    yield start
    for child in started:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=60)


def _read_line(stream, timeout: float = 300) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, f"no output within {timeout} s"
    return stream.readline().strip()


def _wait_gone(pid: int, timeout: float = 60) -> bool:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        return bool(ready)
    finally:
        os.close(fd)


@pytest.fixture
def read_line():
    """``read_line(pipe, timeout)``: the next line of a child's output; fails when none comes in time."""
    return _read_line


@pytest.fixture
def wait_gone():
    """``wait_gone(pid, timeout)``: whether process ``pid`` (any, not only a child) ends in time."""
    if not hasattr(os, "pidfd_open"):
        pytest.skip("needs os.pidfd_open (Linux)")
    return _wait_gone


@pytest.fixture
def pack_images(tmp_path) -> Path:
    """300 random 16x16 PNG images in two classes (three worker tasks of 128 rows)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for i in range(300):
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture
def temp_files():
    """``temp_files(folder)``: names of temporary files under ``folder`` (any epochal naming)."""
    return lambda folder: sorted(p.name for p in Path(folder).rglob("*") if ".tmp" in p.name)
