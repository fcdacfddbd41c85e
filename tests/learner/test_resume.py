"""Exact resume: train N steps vs. train k steps, kill -9, resume, train to N."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("resume_worker.py")


def _run(run_dir: Path, mode: str, out: Path, kind: str, stop_step: int = 0, *extra: str) -> None:
    subprocess.run([sys.executable, str(WORKER), str(run_dir), mode, str(stop_step), str(out), kind, *extra],
                   check=True, capture_output=True, text=True, timeout=300)


# "torch": a plain torch DataLoader(shuffle=True) whose Dataset draws noise in __getitem__
@pytest.mark.parametrize("kind", ["array", "torch"])
def test_kill_9_mid_epoch_then_resume_is_bit_identical(tmp_path, kind):
    full_out, resumed_out = tmp_path / "full.pt", tmp_path / "resumed.pt"
    _run(tmp_path / "full", "full", full_out, kind)

    crash_dir = tmp_path / "crash"
    child = subprocess.Popen([sys.executable, str(WORKER), str(crash_dir), "crash", "9", str(tmp_path / "never.pt"),
                              kind], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "READY"  # step 9 (mid epoch 1 of 5-batch epochs) is saved
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert not (tmp_path / "never.pt").exists()
    checkpoint = torch.load(crash_dir / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["state"]["step"] == 9 and checkpoint["state"]["epoch"] == 1 and checkpoint["state"]["batch"] == 4

    _run(crash_dir, "resume", resumed_out, kind)
    full, resumed = torch.load(full_out, weights_only=True), torch.load(resumed_out, weights_only=True)
    assert full.keys() == resumed.keys()
    for key in full:
        assert torch.equal(full[key], resumed[key]), key

    lines = (crash_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1, 2]
    full_lines = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(a)["valid/loss"] for a in lines] == [json.loads(b)["valid/loss"] for b in full_lines]
    summary = json.loads((crash_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["mid_epoch_resume"]["exact"] is True
    assert summary["mid_epoch_resume"]["restarted"] == []


def test_kill_9_during_the_swa_phase_then_resume_gives_bit_identical_averaged_weights(tmp_path):
    full_out, resumed_out = tmp_path / "full.pt", tmp_path / "resumed.pt"
    _run(tmp_path / "full", "full", full_out, "array", 0, "swa")

    crash_dir = tmp_path / "crash"  # 5 steps per epoch; the SWA phase starts at step 10, averages every 2 steps
    child = subprocess.Popen([sys.executable, str(WORKER), str(crash_dir), "crash", "12", str(tmp_path / "never.pt"),
                              "array", "swa"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "READY"  # step 12 (mid epoch 2) is saved with one average
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    checkpoint = torch.load(crash_dir / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["state"]["step"] == 12 and checkpoint["state"]["batch"] == 2
    assert checkpoint["callbacks"]["swa"]["averaged"]["n_averaged"] == 1

    _run(crash_dir, "resume", resumed_out, "array", 0, "swa")
    full, resumed = torch.load(full_out, weights_only=True), torch.load(resumed_out, weights_only=True)
    assert int(full["swa.n_averaged"]) == 5 and full.keys() == resumed.keys()
    for key in full:
        assert torch.equal(full[key], resumed[key]), key
