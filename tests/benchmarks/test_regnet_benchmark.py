"""benchmarks/regnet_throughput.py prints one JSON object, measured on CPU or skipped with a reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "regnet_throughput.py"


def _run(*args: str) -> dict:
    # One thread: the batches are tiny, and the test checks the script's output, not the speed.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_cpu_mode_measures_epochal():
    result = _run("--device", "cpu", "--batch-size", "8", "--image-size", "64", "--steps", "3")
    assert result["benchmark"] == "regnet_throughput" and result["model"] == "regnety_004"
    assert (result["device"], result["batch_size"], result["image_size"], result["steps"]) == ("cpu", 8, 64, 3)
    assert result["dtype"] == "bfloat16" and result["channels_last"] is True and result["target_ratio"] == 1.0
    assert "skipped" not in result
    eager = result["results"]["eager"]
    assert eager["epochal_img_s"] > 0
    if eager["timm_img_s"] is None:
        assert eager["ratio"] is None and "timm" in result["baseline"]
    else:
        assert eager["ratio"] == pytest.approx(eager["epochal_img_s"] / eager["timm_img_s"], rel=1e-3)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA; the GPU run is not a skip")
def test_gpu_mode_without_cuda_is_skipped_with_a_reason():
    result = _run()
    assert "CUDA is not available" in result["skipped"]
    assert "results" not in result
