"""The benchmark scripts run end to end on a small input and print consistent JSON.

They are measured elsewhere (README, issue notes); these tests keep them from rotting between
measurements, so a GPU session spends its time measuring, not debugging the scripts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _run(script: str, *args: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True, text=True, timeout=600, env=env, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_loop_overhead_reports_the_ratio_of_the_two_loops():
    result = _run("loop_overhead.py", "--device", "cpu", "--samples", "256", "--batch-size", "32",
                  "--epochs", "1", "--repeats", "1", "--model", "mlp")
    assert (result["benchmark"], result["device"], result["model"], result["steps"]) == ("loop_overhead", "cpu",
                                                                                         "mlp", 8)
    assert result["plain_s"] > 0 and result["learner_s"] > 0
    assert result["ratio"] == pytest.approx(result["learner_s"] / result["plain_s"], rel=0.01)
    assert result["target_ratio"] == 1.05


@pytest.mark.realdata
def test_data_pipeline_measures_every_cpu_loader_against_the_plain_pipeline(shared_dir):
    archive = shared_dir / "data" / "cifar10-jpeg-train.tar.gz"
    result = _run("data_pipeline.py", "--archive", str(archive), "--limit", "200", "--epochs", "1",
                  "--batch-size", "64", "--workers", "1", "--baseline-workers", "0", "--threads", "1")
    assert result["benchmark"] == "data_pipeline" and result["images"] == 200
    assert set(result["loader_img_per_s"]) == {"cpu", "stream"}
    plain = result["plain_pillow_dataloader_img_per_s"]
    assert plain > 0 and result["pack_img_per_s"] > 0
    for name, rate in result["loader_img_per_s"].items():
        assert rate > 0
        assert result["speedup_vs_plain"][name] == pytest.approx(rate / plain, abs=0.06)
    assert "needs --device cuda" in result["gpu_inception_crop_224_img_per_s"]
    assert result["targets"] == {"speedup_vs_plain": 10, "gpu_inception_crop_224_img_per_s": 20_000}


def test_data_pipeline_names_a_missing_archive(tmp_path):
    missing = tmp_path / "nope.tar.gz"
    done = subprocess.run([sys.executable, str(BENCHMARKS / "data_pipeline.py"), "--archive", str(missing)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0 and str(missing) in done.stderr
