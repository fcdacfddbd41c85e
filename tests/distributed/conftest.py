"""Fixtures of the data-parallel tests; the helpers (torchrun, the tiny recipe) are in ddp_helpers.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # ddp_helpers and the workers, also for the worker processes

from ddp_helpers import RECIPE, write_table  # noqa: E402


@pytest.fixture
def tiny_recipe(tmp_path) -> Path:
    """A two-epoch tabular recipe on 90 generated rows (63 train, 27 valid)."""
    table = write_table(tmp_path / "table.csv")
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE.format(table=table, extra=""))
    return path
