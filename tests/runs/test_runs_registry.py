"""The run registry: listing, filtering, sorting and comparing run folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from epochal.runs.registry import (
    compare_runs,
    find_runs,
    flatten,
    list_runs,
    load_run,
    metric_direction,
    run_row,
)


def make_run(
    root: Path,
    name: str,
    accuracy: float | None,
    loss: float,
    recipe: str = "default",
    tags=(),
    lr: float = 0.1,
    status: str = "finished",
) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    config = {
        "name": recipe,
        "tags": list(tags),
        "seed": 0,
        "optimizer": {"name": "sgd", "lr": lr},
        "model": {"name": "resnet"},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    final = {"valid/loss": loss, "train/loss": loss + 0.1}
    if accuracy is not None:
        final["valid/accuracy"] = accuracy
    summary = {
        "name": name,
        "status": status,
        "epochs": 3,
        "final": final,
        "best": {k: {"value": v, "epoch": 2} for k, v in final.items()},
        "wall_s": 12.5,
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def test_load_run_reads_summary_and_config(tmp_path):
    folder = make_run(tmp_path, "2024-01-01_00-00-00-a", 0.75, 0.6, tags=["x"])
    record = load_run(folder)
    assert record.recipe == "default" and record.tags == ["x"] and record.status == "finished"
    assert record.metrics == {"loss": 0.6, "accuracy": 0.75}
    assert record.best["accuracy"] == 0.75 and record.wall_s == 12.5 and record.epochs == 3
    row = run_row(record)
    assert row["run_dir"] == str(folder) and row["metrics"]["accuracy"] == 0.75


def test_load_run_rejects_a_plain_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        load_run(tmp_path)


def test_find_runs_skips_other_folders_and_missing_root(tmp_path):
    make_run(tmp_path, "r1", 0.5, 1.0)
    (tmp_path / "not-a-run").mkdir()
    assert [r.name for r in find_runs(tmp_path)] == ["r1"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_runs(tmp_path / "nope")


def test_list_runs_sorts_by_metric_direction_and_filters(tmp_path):
    make_run(tmp_path, "a", 0.5, 0.9, recipe="default", tags=["t1"])
    make_run(tmp_path, "b", 0.8, 0.4, recipe="cifar10")
    make_run(tmp_path, "c", 0.7, 0.3, recipe="default", tags=["t1", "t2"])
    make_run(tmp_path, "d", None, 0.2, recipe="default")
    assert [r.name for r in list_runs(tmp_path)] == ["a", "b", "c", "d"]
    assert [r.name for r in list_runs(tmp_path, sort="accuracy")] == ["b", "c", "a", "d"]  # missing last
    assert [r.name for r in list_runs(tmp_path, sort="valid/loss")] == ["d", "c", "b", "a"]
    assert [r.name for r in list_runs(tmp_path, sort="accuracy", reverse=True)] == ["d", "a", "c", "b"]
    assert [r.name for r in list_runs(tmp_path, recipe="default")] == ["a", "c", "d"]
    assert [r.name for r in list_runs(tmp_path, tag="t2")] == ["c"]


def test_metric_direction():
    assert metric_direction("accuracy") and metric_direction("valid/top5_accuracy") is True
    assert not metric_direction("loss") and not metric_direction("error_rate")


def test_compare_runs_shows_only_differing_config_keys(tmp_path):
    a = make_run(tmp_path, "a", 0.5, 0.9, lr=0.1)
    b = make_run(tmp_path, "b", 0.8, 0.4, lr=0.2, tags=["new"])
    result = compare_runs([a, b])
    assert result["runs"] == ["a", "b"]
    assert result["config"] == {"optimizer.lr": [0.1, 0.2], "tags": [[], ["new"]]}
    assert result["metrics"]["accuracy"] == [0.5, 0.8] and result["metrics"]["loss"] == [0.9, 0.4]
    with pytest.raises(ValueError, match="at least two"):
        compare_runs([a])


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": {}}) == {"a.b": 1, "a.c.d": [1, 2], "e": {}}


def make_study(root: Path, name: str, states: list[str]) -> Path:
    """A study folder as ``epochal tune`` leaves it: study.json and one run folder per trial."""
    study = root / name
    study.mkdir(parents=True)
    (study / "study.json").write_text(json.dumps({"study": name, "trials": []}))
    for number, state in enumerate(states):
        folder = study / "trials" / f"trial_{number:04d}"
        if state == "failed":  # refused before training: only its trial.json
            folder.mkdir(parents=True)
        else:
            make_run(study / "trials", folder.name, 0.5 + number / 10, 1.0)
        (folder / "trial.json").write_text(json.dumps({"study": name, "number": number, "state": state}))
    return study


def test_trials_of_study_folders_are_listed_with_their_study(tmp_path):
    make_run(tmp_path, "2024-01-01_00-00-00-a", 0.4, 1.0)
    make_study(tmp_path, "lr-search", ["complete", "pruned", "failed"])
    make_study(tmp_path, "other", ["complete"])
    rows = [run_row(r) for r in list_runs(tmp_path)]
    assert [(r["name"], r["study"], r["trial"], r["trial_state"]) for r in rows] == [
        ("2024-01-01_00-00-00-a", None, None, None),
        ("trial_0000", "lr-search", 0, "complete"),
        ("trial_0001", "lr-search", 1, "pruned"),
        ("trial_0002", "lr-search", 2, "failed"),
        ("trial_0000", "other", 0, "complete"),
    ]
    assert [r.trial for r in list_runs(tmp_path, study="lr-search", sort="accuracy")] == [1, 0, 2]
    assert [r.trial for r in find_runs(tmp_path / "lr-search")] == [0, 1, 2]  # a study folder as the root
