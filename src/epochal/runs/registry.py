"""The run registry: find the run folders under a root, list them with their key metrics, compare them.

A run folder is any folder holding a ``summary.json`` or a ``config.yaml`` (see
:mod:`epochal.runs.folder`). Nothing is indexed: the folders are the registry, so copying,
moving or deleting a run folder is all the bookkeeping there is. The trials of a hyperparameter
search are run folders too, under their study folder (``<root>/<study>/trials/trial_0003``); they
are listed with their study and trial number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from epochal.runs.folder import STUDY_FILE, TRIAL_FILE, read_json

__all__ = [
    "RunRecord",
    "compare_runs",
    "find_runs",
    "flatten",
    "list_runs",
    "load_run",
    "metric_direction",
    "run_row",
]


@dataclass
class RunRecord:
    """What a run folder says about its run.

    Attributes:
        path: the run folder.
        name: the folder's name.
        recipe: ``name`` in its config (the recipe it came from), or None.
        tags: ``tags`` in its config.
        status: ``running``, ``finished``, ``stopped`` (or ``unknown`` without a summary).
        epochs: epochs run.
        metrics: final validation metrics without the ``valid/`` prefix.
        best: best value of each validation metric, without the prefix.
        wall_s: training wall time in seconds.
        config: the resolved config (empty when ``config.yaml`` is missing).
        summary: the whole ``summary.json``.
        study: the study of a search's trial, else None.
        trial: the trial's number, else None.
        trial_state: ``complete``, ``pruned``, ``failed`` or ``running`` for a trial, else None.
    """

    path: Path
    name: str
    recipe: str | None = None
    tags: list[str] = field(default_factory=list)
    status: str = "unknown"
    epochs: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    best: dict[str, float] = field(default_factory=dict)
    wall_s: float | None = None
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    study: str | None = None
    trial: int | None = None
    trial_state: str | None = None


def _valid_only(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith("valid/")}


def load_run(path: str | Path) -> RunRecord:
    """Read one run folder.

    Raises:
        FileNotFoundError: when ``path`` is not a folder with ``summary.json`` or ``config.yaml``.
        ValueError: when one of them is not valid JSON/YAML (the message names the file).
    """
    import yaml

    from epochal.config.safe_yaml import YamlLimitError, load_yaml  # a copied run folder may be hostile

    path = Path(path)
    summary_path, config_path, trial_path = path / "summary.json", path / "config.yaml", path / TRIAL_FILE
    if not path.is_dir() or not (summary_path.is_file() or config_path.is_file() or trial_path.is_file()):
        raise FileNotFoundError(f"{path} is not a run folder (it has no summary.json or config.yaml)")
    summary = read_json(summary_path) if summary_path.is_file() else {}
    trial = read_json(trial_path) if trial_path.is_file() else {}
    config: dict[str, Any] = {}
    if config_path.is_file():
        try:
            config = load_yaml(config_path.read_text()) or {}
        except YamlLimitError as exc:
            raise ValueError(f"{config_path}: refusing to load it: {exc}") from None
        except yaml.YAMLError as exc:
            raise ValueError(f"{config_path} is not valid YAML: {next(iter(str(exc).splitlines()), '')}") from None
    best = {k: v.get("value") if isinstance(v, Mapping) else v for k, v in _valid_only(summary.get("best", {})).items()}
    return RunRecord(
        path=path,
        name=path.name,
        recipe=config.get("name"),
        tags=list(config.get("tags") or []),
        status=summary.get("status", "unknown"),
        epochs=summary.get("epochs"),
        metrics=_valid_only(summary.get("final", {})),
        best=best,
        wall_s=summary.get("wall_s"),
        config=config,
        summary=summary,
        study=trial.get("study"),
        trial=trial.get("number"),
        trial_state=trial.get("state"),
    )


def _study_trials(folder: Path) -> list[Path]:
    trials = folder / "trials"
    return sorted(p for p in trials.iterdir() if p.is_dir()) if trials.is_dir() else []


def find_runs(root: str | Path) -> list[RunRecord]:
    """Every run folder directly under ``root``, by name, and the trials of every study folder there.

    A root that is itself a run folder, or a study folder, counts: its run, or its trials.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"runs root {root} does not exist")
    if (root / "summary.json").is_file():
        folders = [root]
    elif (root / STUDY_FILE).is_file():
        folders = _study_trials(root)
    else:
        folders = []
        for child in sorted(p for p in root.iterdir() if p.is_dir()):
            folders.extend(_study_trials(child) if (child / STUDY_FILE).is_file() else [child])
    records = []
    for folder in folders:
        try:
            records.append(load_run(folder))
        except FileNotFoundError:
            continue
    return records


def metric_direction(name: str) -> bool:
    """Whether higher is better for a metric name (losses and error rates are lower-is-better)."""
    from epochal.metrics import METRICS

    name = name.removeprefix("valid/").removeprefix("train/")
    if name in METRICS:
        entry = METRICS[name]
        return bool(getattr(entry, "higher_is_better", True) if isinstance(entry, type) else entry().higher_is_better)
    return not ("loss" in name or "error" in name)


def list_runs(
    root: str | Path,
    sort: str | None = None,
    recipe: str | None = None,
    tag: str | None = None,
    reverse: bool = False,
    study: str | None = None,
) -> list[RunRecord]:
    """Runs under ``root``, filtered and sorted.

    Args:
        root: the folder holding run folders.
        sort: a validation metric name (``accuracy``, ``loss`` ...) to sort by, best first (its
            direction decides); runs without it come last. None sorts by folder name (start time).
        recipe: keep runs whose config ``name`` is this.
        tag: keep runs whose config ``tags`` include this.
        reverse: reverse the order.
        study: keep the trials of this study.
    """
    runs = find_runs(root)
    if study is not None:
        runs = [r for r in runs if r.study == study]
    if recipe is not None:
        runs = [r for r in runs if r.recipe == recipe]
    if tag is not None:
        runs = [r for r in runs if tag in r.tags]
    if sort is None:
        runs.sort(key=lambda r: (r.study or r.name, r.name))  # a study's trials together, by number
    else:
        key = sort.removeprefix("valid/")
        higher = metric_direction(key)

        def order(r: RunRecord) -> tuple[int, float]:
            value = r.metrics.get(key)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                return (1, 0.0)
            return (0, -value if higher else value)

        runs.sort(key=order)
    return runs[::-1] if reverse else runs


def run_row(record: RunRecord) -> dict[str, Any]:
    """The JSON form of a run in listings."""
    return {
        "run_dir": str(record.path),
        "name": record.name,
        "recipe": record.recipe,
        "tags": record.tags,
        "status": record.status,
        "epochs": record.epochs,
        "wall_s": record.wall_s,
        "metrics": record.metrics,
        "best": record.best,
        "study": record.study,
        "trial": record.trial,
        "trial_state": record.trial_state,
    }


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted keys (lists stay values)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


_MISSING = "<missing>"


def compare_runs(paths: Sequence[str | Path] | Iterable[RunRecord]) -> dict[str, Any]:
    """Side by side: the config keys whose values differ, and every metric of every run.

    Returns:
        ``{"runs": [names], "run_dirs": [...], "config": {dotted key: [value per run]},
        "metrics": {name: [final value per run]}, "best": {name: [best per run]},
        "wall_s": [...], "epochs": [epochs run], "planned_epochs": [the recipe's epochs]}``; a
        key absent in a run shows as ``"<missing>"``.
    """
    records = [p if isinstance(p, RunRecord) else load_run(p) for p in paths]
    if len(records) < 2:
        raise ValueError(f"compare needs at least two runs, got {len(records)}")
    flats = [flatten(r.config) for r in records]
    keys = sorted(set().union(*flats))
    diff = {}
    for key in keys:
        values = [f.get(key, _MISSING) for f in flats]
        if any(v != values[0] for v in values[1:]):
            diff[key] = values
    names = sorted(set().union(*(r.metrics for r in records)))
    best_names = sorted(set().union(*(r.best for r in records)))
    return {
        "runs": [r.name for r in records],
        "run_dirs": [str(r.path) for r in records],
        "config": diff,
        "metrics": {n: [r.metrics.get(n) for r in records] for n in names},
        "best": {n: [r.best.get(n) for r in records] for n in best_names},
        "wall_s": [r.wall_s for r in records],
        "epochs": [r.epochs for r in records],
        "planned_epochs": [r.config.get("epochs") for r in records],
    }
