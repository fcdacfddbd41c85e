"""Ctrl-C and SIGTERM mid-epoch: a checkpoint of the exact position, and a resume to the same weights."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("interrupt_worker.py")


def _run(run_dir: Path, mode: str, out: Path) -> None:
    subprocess.run([sys.executable, str(WORKER), str(run_dir), mode, "0", str(out)],
                   check=True, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("full") / "full.pt"
    _run(out.parent / "run", "full", out)
    return torch.load(out, weights_only=True)



def _sigint_as_from_a_terminal() -> None:
    """In the child, before exec: SIGINT back to its default, which Python turns into KeyboardInterrupt.

    A test runner started as a background job inherits SIGINT ignored, and so would the child:
    the signal the test sends would then do nothing.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)

# 5 batches of 16 per epoch: step 2 is in the first epoch (before any epoch-end checkpoint), step 7 in the second
@pytest.mark.parametrize(("signum", "step"), [(signal.SIGINT, 2), (signal.SIGTERM, 7)], ids=["sigint", "sigterm"])
def test_signal_mid_epoch_saves_the_position_and_resumes_to_the_same_weights(tmp_path, uninterrupted, signum, step):
    run = tmp_path / "run"
    child = subprocess.Popen([sys.executable, str(WORKER), str(run), "signal", str(step), str(tmp_path / "never.pt")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=_sigint_as_from_a_terminal)
    try:
        assert child.stdout.readline().strip() == "READY"
        os.kill(child.pid, signum)
        stdout, stderr = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 128 + signum, stderr  # 130 for Ctrl-C, 143 for SIGTERM, as a shell reports
    last = run / "checkpoints" / "last.pt"
    epoch, batch = step // 5 + 1, step % 5
    assert stdout.split() == ["SAVED", str(last), str(epoch), str(batch)]
    assert f"{signal.Signals(signum).name}: stopping at the next batch boundary" in stderr
    state = torch.load(last, weights_only=True)["state"]
    assert (state["step"], state["epoch"], state["batch"]) == (step, epoch - 1, batch)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["steps"] == step
    assert not (tmp_path / "never.pt").exists()

    _run(run, "resume", tmp_path / "resumed.pt")
    resumed = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert resumed.keys() == uninterrupted.keys()
    for key in uninterrupted:
        assert torch.equal(resumed[key], uninterrupted[key]), key
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
