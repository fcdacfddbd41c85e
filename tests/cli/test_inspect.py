"""``epochal compare``: keys stay whole and values wrap, at any width; each number is listed once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from epochal.config import load_config


def _run_folder(root: Path, recipe: str, epochs_run: int) -> Path:
    config = load_config(recipe).to_dict()
    run = root / f"run-{recipe}"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    summary = {"status": "stopped" if epochs_run < config["epochs"] else "finished", "epochs": epochs_run,
               "final": {"epoch": epochs_run, "valid/loss": 0.5, "valid/accuracy": 0.8}, "wall_s": 12.5}
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def _compare(runs: list[Path], columns: int) -> list[str]:
    env = {**os.environ, "COLUMNS": str(columns)}
    proc = subprocess.run([sys.executable, "-m", "epochal.cli.main", "compare", *map(str, runs)],
                          capture_output=True, text=True, env=env, check=True, timeout=120)
    return proc.stdout.splitlines()


@pytest.mark.parametrize("columns", [120, 80])
def test_compare_keeps_keys_whole_and_wraps_long_values(tmp_path, columns):
    default, tabular = load_config("default").to_dict(), load_config("tabular-adult").to_dict()
    runs = [_run_folder(tmp_path, "default", default["epochs"]), _run_folder(tmp_path, "tabular-adult", 3)]
    lines = _compare(runs, columns)
    assert max(len(line) for line in lines) <= columns
    keys = [line.split("│")[1].strip() for line in lines if line.count("│") >= 3]
    named = [k for k in keys if k]  # a wrapped value continues on lines with an empty key cell
    assert "data.path" in named and "valid/accuracy" in named and "wall s" in named
    assert "optimizer.lr" in named or default["optimizer"]["lr"] == tabular["optimizer"]["lr"]
    assert len(named) == len(set(named))  # no key twice, none cut into pieces
    assert named.count("epochs") == 1 and "epochs run" in named  # the setting, then what the stopped run ran
    assert len(keys) > len(named)  # the long values (transform lists, descriptions) wrapped in their columns


def test_compare_leaves_out_epochs_run_when_every_run_ran_its_epochs(tmp_path):
    epochs = load_config("default").to_dict()["epochs"]
    first = _run_folder(tmp_path / "a", "default", epochs)
    second = _run_folder(tmp_path / "b", "default", epochs)
    config = yaml.safe_load((second / "config.yaml").read_text())
    config["optimizer"]["lr"] = 0.05
    (second / "config.yaml").write_text(yaml.safe_dump(config))
    named = [line.split("│")[1].strip() for line in _compare([first, second], 120) if line.count("│") >= 3]
    assert "optimizer.lr" in named and "epochs" not in named and "epochs run" not in named
