"""benchmarks/distillation_cifar.py: the script runs end to end on a few real images (realdata), and the
documented experiment's distilled student beats the student trained alone (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "distillation_cifar.py"


def _run(*args: str, timeout: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.realdata
def test_three_runs_on_one_held_out_split(shared_dir, tmp_path):
    archive = shared_dir / "data" / "cifar10-jpeg-train.tar.gz"
    result = _run("--archive", str(archive), "--images", "200", "--epochs", "1", "--teacher", "16,16,16",
                  "--student", "8,8,8", "--out", str(tmp_path), timeout=900)
    teacher, alone, distilled = result["teacher"], result["student_alone"], result["student_distilled"]
    assert result["benchmark"] == "distillation_cifar" and result["images"] == 200
    assert teacher["params"] > alone["params"] == distilled["params"]
    assert result["gain"] == pytest.approx(distilled["accuracy"] - alone["accuracy"])
    assert f"distillation={{teacher: {teacher['run_dir']}, temperature: 4.0, alpha: 0.9}}" in distilled["command"]
    assert "distillation" not in alone["command"]
    saved = (Path(distilled["run_dir"]) / "config.yaml").read_text()
    assert f"teacher: {teacher['run_dir']}" in saved
    for run in (teacher, alone, distilled):
        assert run["status"] == "finished" and run["epochs"] == 1 and 0 <= run["accuracy"] <= 1


@pytest.mark.slow
@pytest.mark.realdata
def test_the_distilled_student_beats_the_student_alone(shared_dir):
    """The experiment of docs/results.md (seeded: the numbers there are this run's)."""
    result = _run("--archive", str(shared_dir / "data" / "cifar10-jpeg-train.tar.gz"), timeout=7200)
    assert result["student_distilled"]["accuracy"] > result["student_alone"]["accuracy"]
    assert result["teacher"]["accuracy"] > result["student_distilled"]["accuracy"]
