"""The repository holds only files meant to be there (a shell slip once committed a file named by a table row)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Letters, digits and ``_ . / + -``: no spaces, pipes, brackets or quotes in a tracked path.
PLAIN_PATH = re.compile(r"[A-Za-z0-9_./+-]+")


def test_every_tracked_path_is_a_plain_name():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing to list")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    odd = [p for p in tracked.decode().split("\0") if p and not PLAIN_PATH.fullmatch(p)]
    assert not odd, f"tracked files with odd names (a redirect gone wrong?): {odd}"
