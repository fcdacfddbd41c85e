"""Run folders: naming, environment facts, summaries, listing and comparing runs."""

from epochal.runs.folder import create_run_dir, environment_info, read_json, write_json_atomic

__all__ = ["create_run_dir", "environment_info", "read_json", "write_json_atomic"]
