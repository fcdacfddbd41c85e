"""``epochal sanity`` on recipes: the default recipe passes; shuffled labels fail with the cause named."""

from __future__ import annotations

import random

from epochal.data import get_dataset

from .test_cli import last_json, run_cli

FAST = ["--batch-size", "16", "--steps", "150"]


def test_the_default_recipe_passes(tmp_path):
    proc = run_cli("sanity", *FAST, "--json", cwd=tmp_path)
    result = last_json(proc)
    assert result["passed"] is True and result["failed"] == []
    checks = {c["name"]: c for c in result["checks"]}
    assert checks["overfit"]["passed"] is True and checks["overfit"]["value"]["accuracy"] == 1.0
    assert checks["overfit"]["value"]["last_loss"] <= 0.05
    assert checks["label_signal"]["value"]["z"] > 10
    assert checks["duplicates"]["value"] == {"duplicates": 0, "valid_samples": 400, "train_samples": 1600}
    assert result["settings"]["batch_size"] == 16
    assert not list(tmp_path.iterdir())  # a check writes no run folder


def test_shuffled_labels_fail_and_name_the_cause(tmp_path):
    root = get_dataset("cifar10-mini")
    files = sorted(p for p in root.rglob("*.jpg"))
    labels = [p.parent.name for p in files]
    random.Random(0).shuffle(labels)
    csv = tmp_path / "shuffled.csv"
    csv.write_text("path,label\n" + "".join(f"{p},{label}\n" for p, label in zip(files, labels)))
    proc = run_cli("sanity", "--data", csv, *FAST, "--skip", "overfit", check=False, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "FAIL label_signal" in proc.stdout and "labels look unrelated to the inputs" in proc.stdout
    assert "shuffled" in proc.stdout and proc.stdout.strip().endswith("sanity check FAILED: label_signal")
    assert "-    overfit" in proc.stdout and "not run: the overfit is skipped" in proc.stdout
