"""Run folders: naming, environment facts, summaries, the training lock, listing and comparing runs."""

from epochal.runs.folder import create_run_dir, environment_info, read_json, write_json_atomic
from epochal.runs.lock import RunLockedError, run_lock

__all__ = ["RunLockedError", "create_run_dir", "environment_info", "read_json", "run_lock", "write_json_atomic"]
