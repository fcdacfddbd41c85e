"""``epochal train --nproc 2`` re-runs itself under torchrun: one run folder, one report, the global batch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from ddp_helpers import LAUNCH_TIMEOUT_S, job_env

from epochal.distributed.launch import torchrun_command


def test_nproc_trains_once_on_two_processes_into_one_run_folder(tiny_recipe, tmp_path):
    out = tmp_path / "runs"
    command = [sys.executable, "-m", "epochal", "train", str(tiny_recipe), "--nproc", "2", "--epochs", "1",
               "--out", str(out), "--no-progress", "--json"]
    proc = subprocess.run(command, env=job_env(), capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-6000:]
    (run,) = out.iterdir()  # rank 0 created the folder and shared its path: exactly one
    result = json.loads(proc.stdout.strip().splitlines()[-1])  # rank 0 alone reports
    assert result["run_dir"] == str(run) and proc.stdout.count('"run_dir"') == 1
    summary = json.loads((run / "summary.json").read_text())
    assert summary["distributed"]["world_size"] == 2 and summary["distributed"]["backend"] == "gloo"
    # 63 training rows, 8 per rank on 2 ranks: 4 steps of a global batch of 16, the rate scaled x2 visibly
    assert summary["batch"]["global"] == 16 and summary["batch"]["lr_scaling"]["factor"] == 2.0
    assert summary["steps"] == 4
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"]


def test_torchrun_command_runs_the_module_on_one_machine():
    args = ["train", "r.yaml", "--epochs", "1"]
    command = torchrun_command(2, args)
    assert command[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m"]
    assert command[6:] == ["epochal", *args]
    with pytest.raises(ValueError, match="processes must be >= 1"):
        torchrun_command(0, args)
