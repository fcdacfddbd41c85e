"""What ``epochal train --resume RUN`` checks before continuing a run, and what it says when it cannot.

A run can be continued when its ``checkpoints/last.pt`` holds a position short of the end. When
there is nothing to continue the error says why and gives the command to use instead: a run
killed before its first checkpoint starts again from its ``config.yaml``; a run that finished
(or stopped early) is trained longer in a new run folder, from its config with more epochs or
from its weights with a new schedule.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from epochal.config.errors import ConfigError

__all__ = ["check_not_finished", "check_resumable"]


def check_not_finished(run_dir: Path) -> None:
    """Raise, saying how to train longer, when ``run_dir`` finished (or stopped early) at its last checkpoint."""
    from epochal.runs import read_json
    from epochal.runs.folder import checkpoint_position

    try:
        summary = read_json(run_dir / "summary.json")
    except (OSError, ValueError):
        return  # no summary (killed before its first epoch ended): there is something to continue
    status = summary.get("status") if isinstance(summary, dict) else None
    if status not in ("finished", "stopped"):
        return
    position = checkpoint_position(run_dir / "checkpoints" / "last.pt")
    if position is None or position["step"] != summary.get("steps"):
        return  # last.pt is older than the summary's end (a copied or rolled-back checkpoint): resume it
    epochs = summary.get("epochs")
    if status == "finished":
        why = f"the run finished its {epochs} epoch{'s' * (epochs != 1)}"
    else:
        why = f"the run stopped early after epoch {epochs} ({summary.get('stop_reason') or 'a callback stopped it'})"
    config, root = shlex.quote(str(run_dir / "config.yaml")), shlex.quote(str(run_dir.parent))
    more = 2 * epochs if isinstance(epochs, int) and epochs > 0 else 10
    raise ConfigError(
        f"--resume {run_dir}: nothing to continue: {why}. To train longer, start a new run from its config "
        f"with more epochs: epochal train {config} --epochs {more} --out {root}; or continue from its weights "
        f"with a new schedule: epochal train {config} --set model.weights={shlex.quote(str(run_dir))} --out {root}"
    )


def check_resumable(run_dir: Path) -> None:
    """Raise, saying what to do, unless ``run_dir`` has a checkpoint to continue from."""
    if (run_dir / "checkpoints" / "last.pt").is_file():
        return
    others = sorted(p.name for p in (run_dir / "checkpoints").glob("*.pt"))
    if others:
        problem = (f"no checkpoints/last.pt to continue from (it has {', '.join(others)}; resume needs last.pt, "
                   "which model_checkpoint writes unless save_last is false)")
    else:
        problem = ("no checkpoint yet (the run stopped before its first checkpoint was written), so there is "
                   "nothing to continue")
    command = f"epochal train {shlex.quote(str(run_dir / 'config.yaml'))} --out {shlex.quote(str(run_dir.parent))}"
    raise ConfigError(
        f"--resume {run_dir}: {problem}; start the run again from its config, in a new run folder: {command}"
    )
