"""Shared fixtures: the real data in ../shared (marked ``realdata``) and small helpers."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def _shared_or_skip(relative: str) -> Path:
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"real data not found at {path} (a fresh clone has no ../shared; CI here has it)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _shared_or_skip("")


@pytest.fixture(scope="session")
def cifar10_jpeg_dir(tmp_path_factory) -> Path:
    """The CIFAR-10 JPEG training images extracted once per session: ``<dir>/<class>/<file>.jpg``."""
    archive = _shared_or_skip("data/cifar10-jpeg-train.tar.gz")
    out = tmp_path_factory.mktemp("cifar10-jpeg")
    with tarfile.open(archive) as tar:
        tar.extractall(out, filter="data")
    return out / "cifar10" / "train"


@pytest.fixture(scope="session")
def adult_csv() -> Path:
    return _shared_or_skip("data/adult/adult.csv")
