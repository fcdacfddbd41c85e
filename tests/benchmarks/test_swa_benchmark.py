"""benchmarks/swa_cifar.py: epochal's SWA equals torch.optim.swa_utils driven by hand, and the SWA experiment.

The first test is a short run on a few real images: the averaged weights and the recalibrated
BatchNorm statistics of epochal's ``SWA`` are bit-identical to those of ``AveragedModel`` +
``update_bn`` driven by hand over the same trajectory. The second (``slow``) is the measurement
reported in docs/results.md: SGD against SWA at 1.0, 1.25 and 1.5 budgets, torch's SWA and a
3-snapshot ensemble on 4,000 training and 2,000 held-out CIFAR-10 JPEG images.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "swa_cifar.py"


def _run(*args: str, timeout: int) -> dict:
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONHASHSEED": "0"}, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.realdata
def test_epochal_swa_is_bit_identical_to_torch_swa_utils_on_real_images(shared_dir):
    archive = shared_dir / "data" / "cifar10-jpeg-train.tar.gz"
    result = _run("--archive", str(archive), "--train", "200", "--valid", "100", "--widths", "8,8,8",
                  "--batch-size", "100", "--runs", "swa,torch", "--swa-budgets", "1.25", timeout=900)
    swa, reference = result["runs"]["swa_1.25B"], result["runs"]["torch_swa_1.25B"]
    assert swa["averaged"] == reference["averaged"] == 6  # epochs 9..14 of a 12-epoch budget
    assert result["max_abs_weight_difference_epochal_vs_torch"] == 0.0
    assert swa["accuracy"] == reference["accuracy"] and swa["loss"] == reference["loss"]


@pytest.mark.slow
@pytest.mark.realdata
def test_swa_experiment_on_cifar10_images(shared_dir):
    archive = shared_dir / "data" / "cifar10-jpeg-train.tar.gz"
    result = _run("--archive", str(archive), timeout=6 * 3600)
    print(json.dumps(result, indent=1))
    runs = result["runs"]
    assert runs["swa_1.25B"]["accuracy"] > runs["sgd_1.0B"]["accuracy"]
    assert runs["swa_1.25B"]["accuracy"] >= runs["torch_swa_1.25B"]["accuracy"]
    assert result["max_abs_weight_difference_epochal_vs_torch"] == 0.0
    assert len(runs["snapshot_ensemble_1.0B"]["members"]) == 3
