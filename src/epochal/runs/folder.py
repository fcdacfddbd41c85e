"""Run folders: ``<root>/<YYYY-mm-dd_HH-MM-SS>-<name>/`` with a fixed inside layout.

::

    config.yaml        the resolved configuration
    metrics.jsonl      one JSON object per epoch
    summary.json       final and best metrics, wall time, throughput, versions, device, git, seed
    checkpoints/       last.pt, best.pt (and swa.pt/ema.pt, snapshot_<k>.pt with those callbacks)
    plots/             PNG figures
    tensorboard/       event files (only with the TensorBoard callback)
    trial.json         only in a search's trials: the study, the trial number, its parameters and state

A hyperparameter search (``epochal tune``) keeps its trials in a study folder, marked by
``study.json``: ``<root>/<study>/trials/trial_0003/``, each a run folder as above.
"""

from __future__ import annotations

import json
import os
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
    "checkpoint_position",
    "checkpoint_statement",
    "cpu_info",
    "create_run_dir",
    "environment_info",
    "final_checkpoint",
    "git_commit",
    "read_json",
    "remove_if_empty",
    "write_json_atomic",
]

#: The folders every run folder has; callbacks create their own (``tensorboard/``) when they are used.
SUBFOLDERS = ("checkpoints", "plots")
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


def checkpoint_position(path: str | Path) -> dict[str, int] | None:
    """Where the training stood when the checkpoint ``path`` was saved, or None when it cannot be read.

    Only the position records are read (the file is memory-mapped; its weights stay on disk).

    Returns:
        ``{"step", "epoch", "batch"}``: the optimizer step, the number of the last epoch that
        ended (from 1; 0 before the first ended) and the batch reached in the next epoch (0 at an
        epoch's end).
    """
    import torch

    try:
        payload = torch.load(path, mmap=True, weights_only=True, map_location="cpu")
        state, history = payload["state"], payload.get("history") or []
        ended = int(history[-1]["epoch"]) if history else 0
        if history and payload.get("version", 1) < 2:  # checkpoint version 1 numbered records from 0
            ended += 1
        return {"step": int(state["step"]), "epoch": ended, "batch": int(state["batch"])}
    except Exception:  # missing, empty, truncated or foreign: it holds no position we can name
        return None


def checkpoint_statement(run_dir: Path, checkpoint: Path) -> dict[str, Any]:
    """Which training position ``checkpoint`` holds, and whether it is what ``summary.json`` describes.

    Returns:
        ``{"epoch", "step", "batch"}`` of the checkpoint (epochs from 1; None when unreadable),
        ``final_epoch`` (the epoch that ``summary.json``'s ``final`` metrics are from), ``is_final``
        (the checkpoint holds the end of that epoch), ``final_weights`` (the checkpoint holds the
        weights the run ended with, see ``final_weights`` in the summary) and ``text``, the same in words.
    """
    position = checkpoint_position(checkpoint) or {"epoch": None, "step": None, "batch": None}
    try:
        summary = read_json(run_dir / "summary.json")
    except (OSError, ValueError):
        summary = {}
    final_epoch = (summary.get("final") or {}).get("epoch")
    weights = summary.get("final_weights") or {}
    is_final = position["batch"] == 0 and final_epoch is not None and position["epoch"] == final_epoch
    holds_final = weights.get("checkpoint") == f"checkpoints/{checkpoint.name}" or (
        weights.get("source") in ("last", "best") and weights.get("step") == position["step"])
    if position["step"] is None:
        where = "a position it does not record"
    elif position["batch"] == 0:
        where = f"the end of epoch {position['epoch']}, step {position['step']}"
    else:
        where = f"step {position['step']}, batch {position['batch']} of epoch {position['epoch'] + 1}"
    if final_epoch is None:
        relation = "the run has no summary of its final epoch"
    elif is_final:
        relation = f"the epoch that summary.json's final describes (epoch {final_epoch})"
    else:
        relation = f"not what summary.json's final describes (epoch {final_epoch})"
    ends = "; the weights the run ended with" if holds_final else ""
    return {**position, "final_epoch": final_epoch, "is_final": is_final, "final_weights": holds_final,
            "text": f"{checkpoint} ({where}): {relation}{ends}"}


def final_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint that holds a run's final weights when a callback replaced them at the end of the fit.

    SWA and EMA write their averaged weights to ``checkpoints/<kind>.pt`` and name that file in
    ``summary.json`` under ``final_weights``; None for other runs (or when the file is gone). Every
    run names its final weights there, but those of source ``last`` or ``best`` are the live
    model's, in ``last.pt``/``best.pt``: evaluation keeps choosing between those as before.
    """
    path = Path(run_dir) / "summary.json"
    try:
        entry = json.loads(path.read_text()).get("final_weights") if path.is_file() else None
    except (ValueError, OSError):
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("checkpoint"), str):
        return None
    if entry.get("source") in ("last", "best"):  # not replaced by a callback
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


def cpu_info() -> dict[str, Any]:
    """``{"capability", "cores"}``: the widest vector instructions torch's CPU kernels use here
    (``AVX512``, ``AVX2``, ...) and the cores this process may run on. Machines that share a name
    (one "2-core EPYC") differ in both, and CPU timings are not comparable across them."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"capability": torch.backends.cpu.get_cpu_capability(), "cores": cores}


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
        "cpu": cpu_info(),
    }
    if device is not None and str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info
