"""Run folders: ``<root>/<YYYY-mm-dd_HH-MM-SS>-<name>/`` with a fixed inside layout.

::

    config.yaml        the resolved configuration
    metrics.jsonl      one JSON object per epoch
    summary.json       final and best metrics, wall time, throughput, versions, device, git, seed
    checkpoints/       last.pt, best.pt (and swa.pt/ema.pt, snapshot_<k>.pt with those callbacks)
    tensorboard/       event files
    plots/             PNG figures
    trial.json         only in a search's trials: the study, the trial number, its parameters and state

A hyperparameter search (``epochal tune``) keeps its trials in a study folder, marked by
``study.json``: ``<root>/<study>/trials/trial_0003/``, each a run folder as above.
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from epochal.runs.lock import LOCK_NAME
from epochal.utils import write_json_atomic

__all__ = [
    "STUDY_FILE",
    "SUBFOLDERS",
    "TRIAL_FILE",
    "create_run_dir",
    "environment_info",
    "final_checkpoint",
    "git_commit",
    "read_json",
    "remove_if_empty",
    "write_json_atomic",
]

SUBFOLDERS = ("checkpoints", "tensorboard", "plots")
#: The file that marks a study folder of a hyperparameter search.
STUDY_FILE = "study.json"
#: The file that makes a run folder a trial of a study.
TRIAL_FILE = "trial.json"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def create_run_dir(root: str | Path = "runs", name: str = "run", now: datetime | None = None) -> Path:
    """Create and return a new run folder under ``root`` (never reuses an existing one)."""
    stamp = (now or datetime.now()).strftime("%Y-%m-%d_%H-%M-%S")
    safe = _SAFE.sub("-", name).strip("-") or "run"
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for attempt in range(1000):
        folder = root / (f"{stamp}-{safe}" if attempt == 0 else f"{stamp}-{safe}-{attempt + 1}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        for sub in SUBFOLDERS:
            (folder / sub).mkdir()
        return folder
    raise FileExistsError(f"could not create a new run folder for {safe!r} under {root}")


def remove_if_empty(folder: str | Path) -> bool:
    """Delete ``folder`` when it holds no files at any depth (a run that failed before writing anything).

    The run folder's lock file does not count.

    Returns:
        True when it was removed; a folder with any other file in it is left untouched.
    """
    folder = Path(folder)
    lock = folder / LOCK_NAME
    if not folder.is_dir() or any((p.is_file() or p.is_symlink()) and p != lock for p in folder.rglob("*")):
        return False
    shutil.rmtree(folder)
    return True


def final_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint that holds a run's final weights when a callback replaced them at the end of the fit.

    SWA and EMA write their averaged weights to ``checkpoints/<kind>.pt`` and name that file in
    ``summary.json`` under ``final_weights``; None for other runs (or when the file is gone).
    """
    path = Path(run_dir) / "summary.json"
    try:
        entry = json.loads(path.read_text()).get("final_weights") if path.is_file() else None
    except (ValueError, OSError):
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("checkpoint"), str):
        return None
    checkpoint = Path(run_dir) / entry["checkpoint"]
    return checkpoint if checkpoint.is_file() else None


def read_json(path: str | Path) -> Any:
    """Read a JSON file, naming the file in the error when it is not valid JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The current git commit of ``cwd`` (None outside a repository or without git)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment_info(device: Any = None) -> dict[str, Any]:
    """Versions and hardware facts recorded in every summary."""
    import torch

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "platform": platform.platform(),
        "device": str(device) if device is not None else None,
        "git_commit": git_commit(),
    }
    if device is not None and str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info
