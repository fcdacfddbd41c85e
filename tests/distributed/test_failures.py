"""A rank that raises, dies or hangs ends the whole ``epochal train`` job, non-zero, naming the rank.

The jobs are the real command line under torchrun (``cli_worker.py`` only adds a failing callback
on one rank). Collectives wait at most ``EPOCHAL_DIST_TIMEOUT`` (5 s here), so a hung rank fails
its peer within seconds; the test's own timeout is only a backstop against a hang.
"""

from __future__ import annotations

import subprocess

import pytest
from ddp_helpers import HERE, LAUNCH_TIMEOUT_S, job_env, torchrun_command

CLI_WORKER = str(HERE / "cli_worker.py")


def failing_job(mode: str, recipe, out) -> subprocess.CompletedProcess:
    """``epochal train RECIPE --epochs 1`` on two processes whose rank 1 fails at step 2 in ``mode``."""
    command = torchrun_command(CLI_WORKER, mode, "1", "2", "train", str(recipe), "--epochs", "1", "--out", str(out),
                               "--no-progress")
    return subprocess.run(command, env=job_env(EPOCHAL_DIST_TIMEOUT="5"), capture_output=True, text=True,
                          timeout=LAUNCH_TIMEOUT_S)


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error: ")]


def test_a_rank_that_raises_ends_the_job_with_its_message(tiny_recipe, tmp_path):
    proc = failing_job("raise", tiny_recipe, tmp_path / "runs")
    assert proc.returncode != 0
    assert "error: rank 1: injected failure at step 2" in error_lines(proc)
    # torchrun's failure table shows epochal's message for the root cause, rank 1
    root_cause = proc.stderr.split("Root Cause")[-1]
    assert "rank      : 1" in root_cause and "injected failure at step 2" in root_cause
    (run,) = (tmp_path / "runs").iterdir()  # rank 0 recorded the failed run in its one folder
    assert '"status": "failed"' in (run / "summary.json").read_text()


def test_a_hung_rank_fails_its_peer_within_the_timeout_naming_it(tiny_recipe, tmp_path):
    proc = failing_job("hang", tiny_recipe, tmp_path / "runs")
    assert proc.returncode != 0
    (line,) = [line for line in error_lines(proc) if line.startswith("error: rank 0:")]
    assert "rank 1 stopped answering" in line and line.count("rank 0:") == 1


@pytest.mark.slow  # one more torchrun launch
def test_a_rank_that_dies_silently_ends_the_job(tiny_recipe, tmp_path):
    proc = failing_job("exit", tiny_recipe, tmp_path / "runs")
    assert proc.returncode != 0
    root_cause = proc.stderr.split("Root Cause")[-1]
    # torchrun names the dead rank and ends rank 0 (SIGTERM), usually before its collective notices
    assert "rank      : 1" in root_cause and "exitcode  : 3" in root_cause
    assert not [line for line in error_lines(proc) if line.startswith("error: rank 1")]  # it said nothing
